"""./scripts/demo.sh, the README's first command, run as a user runs it: set-up, then seem_node in its
own process on the sequence shipped in demo/, prompted by a text command and a click; what it leaves
in --out (tiny reference checkpoint: its masks are meaningless but real model outputs)."""
import json
import subprocess
import sys

import cv2

from conftest import REPO, reference_path
from ros_harness import ros_environment

TINY = reference_path("tiny")
MODEL = ["--checkpoint", str(TINY / "tiny_seem.pt"), "--config", str(TINY / "tiny_config.yaml")]


def test_demo_runs_the_node_on_a_sequence_and_writes_video_objects_labels_and_a_bag(tmp_path):
    out = tmp_path / "demo"
    run = subprocess.run([str(REPO / "scripts" / "demo.sh"), *MODEL, "--out", str(out)], cwd=REPO,
                         env=ros_environment(), capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    frames = 12  # demo/zebras_pan
    video = cv2.VideoCapture(str(out / "overlay.mp4"))
    shown = 0
    while video.read()[0]:
        shown += 1
    assert shown == frames
    lines = [json.loads(line) for line in (out / "objects.jsonl").read_text().splitlines()]
    per_frame = [{line["id"] for line in lines if line["frame"] == f} for f in range(frames)]
    assert set.intersection(*per_frame), "no object was tracked in every frame"
    assert {line["label"] for line in lines} == {"the zebra", "object"}  # the command's object and the click
    assert len(list((out / "labels").glob("*.png"))) == frames
    assert (out / "bag" / "metadata.yaml").exists() and list((out / "bag").glob("*.mcap"))
    log = (out / "seem_node.log").read_text()
    assert "click applied" in log and "shut down:" in log  # prompted across processes, stopped cleanly


def test_demo_explains_a_bad_source_or_click_with_exit_code_2(tmp_path):
    demo = [sys.executable, "-m", "seem_ros.tools.demo"]
    dog = str(reference_path("davis", "JPEGImages", "480p", "dog"))
    for args, says in (([str(tmp_path / "missing.mp4")], "does not exist"),
                       ([dog, "--click", "5000,1"], "outside the 854x480 frames")):
        run = subprocess.run([*demo, *args, *MODEL, "--out", str(tmp_path / "out")], cwd=REPO, env=ros_environment(),
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 2 and says in run.stderr, run.stderr
        assert not (tmp_path / "out").exists()

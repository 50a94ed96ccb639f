"""Nothing a user owns is deleted (issue 15, item 3): `seem-ros track --out` (and the demo, which
claims its folder the same way) refuses a folder holding files it did not write, replaces only
what its marker lists, and a non-editable install carries the .msg files its bags need."""
import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from conftest import REPO, reference_path
from seem_ros.tools.recording import MARKER, OutputFolderRefused, claim_output_folder

DOG = reference_path("davis", "JPEGImages", "480p", "dog")


def _track(out, *extra):
    tiny = reference_path("tiny")
    return subprocess.run([sys.executable, "-m", "seem_ros.tools.cli", "track", str(DOG), "--text", "the dog",
                           "--max-frames", "1", "--out", str(out), *extra, "--checkpoint", str(tiny / "tiny_seem.pt"),
                           "--config", str(tiny / "tiny_config.yaml")],
                          cwd=REPO, capture_output=True, text=True, timeout=600)


def _users_folder(path):
    (path / "labels").mkdir(parents=True)
    (path / "labels" / "hand_made.png").write_bytes(b"a user's label")
    (path / "notes.txt").write_text("mine")
    return {p.relative_to(path): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def test_a_users_folder_is_refused_and_left_as_it_was(tmp_path):
    before = _users_folder(tmp_path)
    run = _track(tmp_path)
    assert run.returncode == 2, run.stderr
    assert "did not write" in run.stderr and "--overwrite" in run.stderr
    assert {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_overwrite_writes_beside_a_users_files_and_never_replaces_one(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    run = _track(tmp_path, "--overwrite")
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "notes.txt").read_text() == "mine" and (tmp_path / "overlay.mp4").exists()
    clash = tmp_path / "clash"
    _users_folder(clash)
    run = _track(clash, "--overwrite")  # its labels/ is the user's: not replaced, not mixed into
    assert run.returncode == 2 and "labels" in run.stderr
    assert (clash / "labels" / "hand_made.png").read_bytes() == b"a user's label"
    assert sorted(p.name for p in (clash / "labels").iterdir()) == ["hand_made.png"]


def test_an_earlier_run_is_replaced_and_only_what_its_marker_lists(tmp_path):
    assert _track(tmp_path).returncode == 0
    marker = json.loads((tmp_path / MARKER).read_text())
    assert sorted(marker["outputs"]) == sorted(["overlay.mp4", "labels", "objects.jsonl", "bag"])
    (tmp_path / "labels" / "999999.png").write_bytes(b"stale")  # inside an output: part of that output
    run = _track(tmp_path)
    assert run.returncode == 0, run.stderr
    assert not (tmp_path / "labels" / "999999.png").exists()
    assert sorted(p.name for p in (tmp_path / "labels").iterdir()) == ["000000.png"]
    (tmp_path / "my_analysis.csv").write_text("kept")  # a user's file added afterwards: refused again
    assert _track(tmp_path).returncode == 2 and (tmp_path / "my_analysis.csv").read_text() == "kept"


def test_a_marker_cannot_name_what_lies_outside_the_folder(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (tmp_path / "precious").mkdir()
    (out / MARKER).write_text(json.dumps({"outputs": ["../precious", "/etc", "labels"]}))
    claim_output_folder(str(out))
    assert (tmp_path / "precious").is_dir()
    (out / MARKER).write_text("not json")
    with pytest.raises(OutputFolderRefused, match="unreadable"):
        claim_output_folder(str(out))


def test_a_wheel_carries_the_message_files_its_bags_register(tmp_path):
    """`pip install .` (not editable, no ROS): the .msg files ship inside the package."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("setup.py", "setup.cfg", "package.xml", "msg", "resource", "launch", "config", "seem_ros"):
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy
        copy(REPO / name, source / name, **({"ignore": shutil.ignore_patterns("__pycache__")} if copy is
                                            shutil.copytree else {}))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path / "wheel"), str(source)], check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "wheel").glob("seem_ros-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {f"seem_ros/msg/{p.name}" for p in (REPO / "msg").glob("*.msg")} <= set(names)
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = ("import seem_ros, sys; from seem_ros.tools.bag_recording import interface_message_dir, typestore; "
             "typestore(); print(seem_ros.__file__); print(interface_message_dir())")
    run = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(site), "AMENT_PREFIX_PATH": ""})
    assert run.returncode == 0, run.stderr
    module, folder = run.stdout.split()
    assert module.startswith(str(site)) and folder == str(site / "seem_ros" / "msg")


def test_the_demo_refuses_a_users_folder_before_starting_anything(tmp_path):
    before = _users_folder(tmp_path)
    tiny = reference_path("tiny")
    run = subprocess.run([sys.executable, "-m", "seem_ros.tools.demo", str(DOG), "--out", str(tmp_path), "--checkpoint",
                          str(tiny / "tiny_seem.pt"), "--config", str(tiny / "tiny_config.yaml")],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "did not write" in run.stderr and "--overwrite" in run.stderr, run.stderr
    assert {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before

"""`seem-ros segment`, `info` and `download` as a user runs them (real processes; the tiny reference
checkpoint): overlay, mask PNGs and JSON; versions and caches; offline downloads; exit codes."""
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, reference_path


def _segment(*args, cwd=REPO):
    tiny = reference_path("tiny")
    return subprocess.run([sys.executable, "-m", "seem_ros.tools.cli", "segment", *args, "--checkpoint",
                           str(tiny / "tiny_seem.pt"), "--config", str(tiny / "tiny_config.yaml")],
                          cwd=cwd, capture_output=True, text=True, timeout=300)


def test_text_and_clicks_give_an_overlay_masks_and_json(tmp_path):
    image = reference_path("images", "zebras1.jpg")
    out = tmp_path / "result" / "out.png"
    done = _segment(str(image), "--text", "the zebra", "--point", "100,80", "--point", "5,5,0", "--box",
                    "50,40,300,200", "-o", str(out))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    h, w = np.asarray(Image.open(image)).shape[:2]
    assert report["size"] == [h, w] and report["overlay"] == str(out)
    assert [o["label"] for o in report["objects"]] == ["the zebra", "object"]
    assert Image.open(out).size == (w, h)
    for obj in report["objects"]:
        mask = np.asarray(Image.open(obj["mask"]))
        assert mask.shape == (h, w) and set(np.unique(mask)) <= {0, 255}
        assert int((mask == 255).sum()) == obj["pixels"] and 0.0 <= obj["score"] <= 1.0


def test_everything_with_a_vocabulary(tmp_path):
    done = _segment(str(reference_path("images", "penguin.jpeg")), "--everything", "--vocabulary",
                    "penguin,snow,sky", "-o", str(tmp_path / "all.png"))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    # random weights: which segments pass the panoptic thresholds means nothing, only their labels
    assert {o["label"] for o in report["objects"]} <= {"penguin", "snow", "sky"}
    assert (tmp_path / "all.png").is_file() and len(report["objects"]) == len(list(tmp_path.glob("all_*.png")))


@pytest.mark.parametrize("args, code, message", [
    (["--point", "1,2,3"], 2, "label is 1 (positive) or 0 (negative)"),
    (["--point", "1"], 2, "expected x,y or x,y,0"),
    (["--box", "1,2,3"], 2, "expected x0,y0,x1,y1"),
    ([], 2, "nothing to segment"),
    (["--point", "5,5,0"], 2, "negative points alone cannot prompt"),
    (["--point", "5000,5"], 2, "outside the 1024x535 image"),
    (["--everything", "--text", "cat"], 2, "without --text"),
])
def test_bad_arguments_exit_with_2_and_say_why(tmp_path, args, code, message):
    done = _segment(str(reference_path("images", "zebras1.jpg")), *args, "-o", str(tmp_path / "o.png"))
    assert done.returncode == code and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_an_unreadable_image_exits_with_1(tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    done = _segment(str(broken), "--text", "x", "-o", str(tmp_path / "o.png"))
    assert done.returncode == 1 and "cannot read" in done.stderr and "Traceback" not in done.stderr


def test_info_lists_versions_and_the_engine_cache(tmp_path):
    cache = tmp_path / "cache"
    (cache / "engines").mkdir(parents=True)
    (cache / "engines" / "seem_encoder_focalt_v1_x_512x704_fp32.onnx").write_bytes(b"x" * 1000)
    done = subprocess.run([sys.executable, "-m", "seem_ros.tools.cli", "info"], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env={"SEEM_ROS_CACHE_DIR": str(cache), "HF_HUB_CACHE": str(tmp_path / "hub"),
                                            "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    lines = {line.split()[0]: line for line in done.stdout.splitlines() if line and not line.startswith(" ")}
    assert set(lines) == {"python", "torch", "GPU", "onnxruntime", "tensorrt", "checkpoints", "engine"}
    assert "checkpoints   0 in" in done.stdout
    assert "engine cache  1 files" in done.stdout and "seem_encoder_focalt_v1_x_512x704_fp32.onnx" in done.stdout


def test_download_offline_says_which_file_its_sha256_and_where_to_put_it(tmp_path):
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub"), "PATH": "/usr/bin:/bin",
           "SEEM_ROS_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-m", "seem_ros.tools.cli", "download"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env=env)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "seem_focalt_v1.pt" in done.stderr
    assert "675e86a033a3cc4bc6fa906e4c7e1878dd11728ef8858a457a4a45cf3f2987b2" in done.stderr
    assert f"place it at {tmp_path / 'seem_focalt_v1.pt'}" in done.stderr
    unknown = subprocess.run([sys.executable, "-m", "seem_ros.tools.cli", "download", "seem_unknown.pt"], cwd=REPO,
                             capture_output=True, text=True, timeout=120, env=env)
    assert unknown.returncode == 2 and "released: seem_focall_v1.pt" in unknown.stderr

"""`seem-ros build-engine` as a user runs it: a real process, its exit code, what it leaves in the
cache, and a node configured with the same settings loading the graphs without exporting them."""
import json
import subprocess
import sys

import pytest
import torch

from conftest import REPO, reference_path, tiny_backend_config
from seem_ros.runtime.backends import create_predictor


def _run(*args, cache):
    return subprocess.run([sys.executable, "-m", "seem_ros.tools.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env={"SEEM_ROS_CACHE_DIR": str(cache), "PATH": "/usr/bin:/bin"})


def _tiny():
    tiny = reference_path("tiny")
    return ["--checkpoint", str(tiny / "tiny_seem.pt"), "--config", str(tiny / "tiny_config.yaml")]


def test_build_engine_exports_ahead_of_time_what_the_node_then_loads(tmp_path):
    done = _run("build-engine", *_tiny(), "--canvas", "512x704", "--backend", "onnxruntime", "--visual-slots", "8",
                cache=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "exporting the encoder" in done.stderr and "exporting the decoder" in done.stderr
    files = sorted((tmp_path / "engines").glob("*.onnx"))
    assert [f.name.split("_")[1] for f in files] == ["decoder", "encoder"]
    assert "_512x704_t4x77_v8x1024_fp32_" in files[0].name
    assert json.loads(files[0].with_name(files[0].name + ".json").read_text())["slots"] == "t4x77_v8x1024"
    assert all(str(f) in done.stdout for f in files)
    stamps = {f: f.stat().st_mtime_ns for f in files}
    again = _run("build-engine", *_tiny(), "--canvas", "512x704", "--backend", "onnxruntime", "--visual-slots", "8",
                 cache=tmp_path)
    assert again.returncode == 0 and "exporting" not in again.stderr
    create_predictor(tiny_backend_config(backend="onnxruntime", engine_cache_dir=str(tmp_path / "engines"),
                                         canvas=(512, 704), decoder_slots=(4, 8)))
    assert {f: f.stat().st_mtime_ns for f in files} == stamps  # the node's configure exported nothing


@pytest.mark.parametrize("args, message", [
    (["--canvas", "500x704"], "must be positive multiples of 32"),
    (["--canvas", "big"], "expected HxW"),
    (["--canvas", "512x704", "--visual-slots", "0"], "must be at least 1"),
    (["--canvas", "512x704", "--precision", "int8"], "invalid choice: 'int8'"),
    ([], "the following arguments are required: --canvas"),
])
def test_bad_arguments_exit_with_2_and_say_why(tmp_path, args, message):
    done = _run("build-engine", *_tiny(), *args, cache=tmp_path)
    assert done.returncode == 2 and message in done.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without CUDA / TensorRT")
def test_a_failure_exits_with_1_and_a_message_not_a_traceback(tmp_path):
    done = _run("build-engine", *_tiny(), "--canvas", "512x704", cache=tmp_path)
    assert done.returncode == 1
    assert "seem-ros build-engine: device 'cuda' requested but CUDA is not available" in done.stderr
    assert "Traceback" not in done.stderr
    missing = _run("build-engine", "--checkpoint", str(tmp_path / "none.pt"), "--canvas", "512x704",
                   "--backend", "onnxruntime", cache=tmp_path)
    assert missing.returncode == 1 and "none.pt" in missing.stderr and "Traceback" not in missing.stderr

"""Parameters that pass validation and break every frame, and launch lines that cannot configure
(issue 15, items 4 and 10). What the node does with them across processes: test_defects_node.py."""
import re

import pytest

from conftest import REPO
from launch_file import declared_arguments, launched_node
from seem_ros.node.parameters import PARAMETERS, from_launch_text, parameter_errors
from seem_ros.weights import CheckpointError, resolve_checkpoint


def readme_launch_lines():
    """Every `ros2 launch seem_ros seem.launch.py ...` line of the README (continuations joined):
    [(line, {argument: value})]."""
    text = (REPO / "README.md").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if "ros2 launch seem_ros seem.launch.py" in line]
    return [(line, dict(re.findall(r"(\w+):=(\S+)", line.split("seem.launch.py", 1)[1].split("#")[0])))
            for line in lines]


def _errors(**changed):
    values = {name: default for name, (default, _) in PARAMETERS.items()}
    values.update(changed)
    return parameter_errors(values.__getitem__)


def test_the_defaults_pass():
    assert _errors() == []


@pytest.mark.parametrize("changed, named", [
    ({"input_canvas": "512x0"}, "input_canvas"), ({"input_canvas": "0x512"}, "input_canvas"),
    ({"input_canvas": "500x700"}, "input_canvas"), ({"input_short_side": 0}, "input_short_side"),
    ({"input_short_side": -512}, "input_short_side"), ({"score_threshold": float("nan")}, "score_threshold"),
    ({"track_min_score": float("nan")}, "track_min_score"), ({"track_min_score": 1.5}, "track_min_score"),
    ({"track_reidentify_score": float("nan")}, "track_reidentify_score"),
    ({"reground_below": -0.1}, "reground_below"), ({"detection_threshold": float("nan")}, "detection_threshold"),
    ({"stats_period": float("nan")}, "stats_period"), ({"max_image_aspect_ratio": float("nan")}, "max_image_aspect"),
    ({"decoder_visual_slots": 0}, "decoder_visual_slots"), ({"precision": "int8"}, "precision"),
    ({"backend": "openvino"}, "backend"), ({"device": "gpu"}, "device"),
    ({"precision": "fp16"}, "precision fp16 runs on CUDA"),  # torch on the CPU would compute fp32 and say fp16
])
def test_a_value_that_would_break_frames_is_refused_naming_the_parameter(changed, named):
    errors = _errors(**changed)
    assert len(errors) == 1 and named in errors[0], errors


def test_fp16_where_it_runs_passes():
    assert _errors(precision="fp16", device="cuda") == []
    assert _errors(precision="fp16", device="cuda:1", backend="tensorrt") == []


def test_a_checkpoint_path_that_does_not_exist_is_an_error_not_a_download(tmp_path, monkeypatch):
    import huggingface_hub

    def no_download(*args, **kwargs):
        raise AssertionError("a path must never be downloaded")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_download)
    typo = str(tmp_path / "models" / "seem_focalt_v1.pt")  # the name of a released file
    with pytest.raises(CheckpointError, match=re.escape(typo) + " does not exist"):
        resolve_checkpoint(typo)
    with pytest.raises(CheckpointError, match="does not exist"):
        resolve_checkpoint("~/nowhere/seem_focalt_v1.pt")


def test_a_bare_released_name_is_fetched_and_says_so(monkeypatch, caplog):
    import huggingface_hub
    monkeypatch.chdir(REPO / "test")  # no such file here
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda repo, name, cache_dir=None: f"/cache/{name}")
    with caplog.at_level("INFO"):
        assert resolve_checkpoint("seem_focalt_v1.pt") == "/cache/seem_focalt_v1.pt"
    assert "fetching the released one from huggingface.co/xdecoder/SEEM" in caplog.text


def test_every_readme_launch_line_uses_declared_arguments_only(monkeypatch):
    lines = readme_launch_lines()
    assert len(lines) >= 3 and any("backend:=tensorrt" in line for line, _ in lines)  # the Jetson line among them
    declared = declared_arguments(monkeypatch)
    for line, arguments in lines:
        assert set(arguments) <= set(declared), f"{line}: undeclared {sorted(set(arguments) - set(declared))}"


def test_launch_arguments_become_typed_node_parameters(monkeypatch):
    given = {"backend": "tensorrt", "device": "cuda", "precision": "fp16", "input_canvas": "512x704",
             "checkpoint": "/data/models/seem_focalt_v1.pt", "max_objects": "8", "score_threshold": "0.5",
             "track_follow_memory": "true", "vocabulary": "[cup, table]"}
    _, overrides = launched_node(monkeypatch, given)
    assert {name: overrides[name] for name in given} == {
        "backend": "tensorrt", "device": "cuda", "precision": "fp16", "input_canvas": "512x704",
        "checkpoint": "/data/models/seem_focalt_v1.pt", "max_objects": 8, "score_threshold": 0.5,
        "track_follow_memory": True, "vocabulary": ["cup", "table"]}
    assert all(type(overrides[name]) is type(PARAMETERS[name][0]) for name in overrides)
    with pytest.raises(ValueError, match="max_objects"):
        from_launch_text("max_objects", "eight")

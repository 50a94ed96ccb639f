"""Shared fixtures: the reference data in ../shared/seem_reference and the tiny official checkpoint."""
import dataclasses
import json
import os
import pathlib

import numpy as np
import pytest
import torch
import yaml

REPO = pathlib.Path(__file__).resolve().parents[1]
REFERENCE = pathlib.Path(os.environ.get("SEEM_REFERENCE", REPO.parent / "shared" / "seem_reference"))


def reference_path(*parts) -> pathlib.Path:
    path = REFERENCE.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"reference fixture {path} is missing (set SEEM_REFERENCE to the seem_reference folder)")
    return path


@pytest.fixture(scope="session")
def cases_index():
    return json.loads(reference_path("cases", "cases.json").read_text())


@pytest.fixture(scope="session")
def tiny_config():
    return yaml.safe_load(reference_path("tiny", "tiny_config.yaml").read_text())


@pytest.fixture(scope="session")
def tiny_model(tiny_config):
    from seem_ros.weights import load_seem
    torch.set_num_threads(int(os.environ.get("SEEM_TEST_THREADS", "2")))  # benchmarks/noise_table.py varies it
    return load_seem(str(reference_path("tiny", "tiny_seem.pt")), tiny_config)


@pytest.fixture(scope="module")
def ros():
    """rclpy and a client node shared by a module's tests (the module calls
    ros_harness.apply_ros_environment() before rclpy is imported); each test starts the nodes it
    tests under names of its own."""
    import rclpy
    rclpy.init()
    node = rclpy.create_node("test_client")
    yield node
    node.destroy_node()
    rclpy.shutdown()


def load_case(name: str):
    return np.load(reference_path("cases", f"{name}.npz"))


def track_frames(tracker, predictor, count: int):
    """Steps a tracker through frames 0..count-1 of a scripted predictor (set_image(t)): per frame
    {id: FrameObject}."""
    out = []
    for t in range(count):
        predictor.set_image(t)
        out.append({o.id: o for o in tracker.step(predictor)})
    return out


def held_tensors(value):
    """Every tensor in a value: dataclass fields, lists, tuples and dicts followed."""
    if isinstance(value, torch.Tensor):
        return [value]
    if dataclasses.is_dataclass(value):
        value = [getattr(value, field.name) for field in dataclasses.fields(value)]
    elif isinstance(value, dict):
        value = list(value.values())
    elif not isinstance(value, (list, tuple)):
        return []
    return [tensor for item in value for tensor in held_tensors(item)]

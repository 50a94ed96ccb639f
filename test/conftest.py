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


def tiny_backend_config(**kwargs):
    """A BackendConfig for the tiny reference checkpoint, without the class-embedding cache."""
    from seem_ros.runtime.backends import BackendConfig
    tiny = reference_path("tiny")
    return BackendConfig(str(tiny / "tiny_seem.pt"), str(tiny / "tiny_config.yaml"), embedding_cache_dir="", **kwargs)


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


def davis_results(predictor) -> list:
    """Every object of the shared DAVIS sequences prompted on each of frames 1..9 by its previous
    frame's ground truth, and the sequence's name as a text prompt: the MaskResults in order (the
    reduced-precision tests compare them between precisions)."""
    from PIL import Image
    from seem_ros.inference.visual_prompt import VisualPrompt
    from seem_ros.tools.evaluation import read_davis
    results = []
    with torch.inference_mode():
        for sequence in read_davis(str(reference_path("davis"))):
            for t in range(1, len(sequence.frames)):
                predictor.set_image(np.asarray(Image.open(sequence.frames[t]).convert("RGB")))
                truths = [sequence.truth(t - 1, obj) for obj in sequence.objects]
                queries = [predictor.visual_query(VisualPrompt(mask=truth)) for truth in truths
                           if truth is not None and truth.any()]
                queries.append(predictor.text_query(sequence.name.split("-")[0]))
                results += predictor.decode(queries)
    return results


def pixel_agreement(masks: list, reference: list):
    """-> (the share of all mask pixels that agree, each mask's share)."""
    per_mask = np.array([float((a == b).mean()) for a, b in zip(masks, reference)])
    overall = 1 - sum(int((a != b).sum()) for a, b in zip(masks, reference)) / sum(a.size for a in reference)
    return overall, per_mask

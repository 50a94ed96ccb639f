"""State-dict layout of every released config, and the strict checkpoint loader's errors."""
import json
import os

import pytest
import torch

from conftest import reference_path
from seem_ros.model.seem import SEEM
from seem_ros.weights import CheckpointError, config_for, load_seem, verify_known_checkpoint

MANIFESTS = {
    "focalt_v1": "focalt_unicl_lang_v1",
    "focall_v1": "focall_unicl_lang_v1",
    "focalt_v0": "focalt_unicl_lang_v0",
    "samvitb_v1": "samvitb_unicl_lang_v1",
    "samvitl_v1": "samvitl_unicl_lang_v1",
    "davitd3_v1": "davitd3_unicl_lang_v1",
}


def manifest(name):
    entries = json.loads(reference_path("manifests", f"{name}.state_dict_manifest.json").read_text())
    return {k: (tuple(v[0]), v[1]) for k, v in entries.items()}


def model_layout(variant):
    with torch.device("meta"):  # no memory for 0.2-0.4 B parameters
        model = SEEM(config_for(variant))
    return {k: (tuple(t.shape), str(t.dtype).replace("torch.", "")) for k, t in model.state_dict().items()}


@pytest.mark.parametrize("variant", sorted(MANIFESTS))
def test_state_dict_equals_official_manifest(variant):
    assert model_layout(variant) == manifest(MANIFESTS[variant])


def test_tiny_checkpoint_keys_equal_its_manifest(tiny_model):
    expected = json.loads(reference_path("tiny", "tiny_manifest.json").read_text())
    assert {k: list(v.shape) for k, v in tiny_model.state_dict().items()} == {k: v[0] for k, v in expected.items()}


@pytest.fixture
def tiny_state():
    return torch.load(reference_path("tiny", "tiny_seem.pt"), weights_only=True)


def test_missing_key_is_named(tmp_path, tiny_state, tiny_config):
    del tiny_state["sem_seg_head.predictor.pn_indicator.weight"]
    path = tmp_path / "broken.pt"
    torch.save(tiny_state, path)
    with pytest.raises(CheckpointError, match=r"1 missing keys: sem_seg_head\.predictor\.pn_indicator\.weight"):
        load_seem(str(path), tiny_config)


def test_misshaped_and_unexpected_keys_are_named(tmp_path, tiny_state, tiny_config):
    tiny_state["backbone.norm0.weight"] = torch.zeros(5)
    tiny_state["model.extra"] = torch.zeros(1)
    path = tmp_path / "broken.pt"
    torch.save(tiny_state, path)
    with pytest.raises(CheckpointError) as err:
        load_seem(str(path), tiny_config)
    assert "backbone.norm0.weight: checkpoint (5,) vs model (32,)" in str(err.value)
    assert "unexpected keys: model.extra" in str(err.value)


def test_wrong_config_for_checkpoint(tiny_config):
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_seem(str(reference_path("tiny", "tiny_seem.pt")), "focalt_v1")


def test_corrupt_file(tmp_path, tiny_config):
    path = tmp_path / "corrupt.pt"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_seem(str(path), tiny_config)


def test_pickled_objects_are_refused(tmp_path, tiny_config):
    path = tmp_path / "pickle.pt"
    torch.save({"weights": torch.zeros(1), "hook": os.getcwd}, path)  # weights_only must refuse a function
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_seem(str(path), tiny_config)


def test_released_name_with_wrong_content_fails_sha256(tmp_path):
    path = tmp_path / "seem_samvitb_v1.pt"
    path.write_bytes(b"\0" * 1024)
    with pytest.raises(CheckpointError, match="sha256 .* does not match the released seem_samvitb_v1.pt"):
        verify_known_checkpoint(str(path))


def test_released_name_with_wrong_size_is_reported(tmp_path):
    path = tmp_path / "seem_focalt_v1.pt"
    path.write_bytes(b"\0" * 10)
    with pytest.raises(CheckpointError, match="10 bytes, expected 658792514"):
        verify_known_checkpoint(str(path))


def test_unreachable_hub_says_where_to_put_the_file(tmp_path, monkeypatch):
    import huggingface_hub.constants
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # read once at import: without this the hub is tried (and waited for) all the same
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError) as err:
        load_seem("seem_focalt_v1.pt", "focalt_v1", cache_dir=str(tmp_path / "cache"))
    message = str(err.value)
    assert "675e86a033a3cc4bc6fa906e4c7e1878dd11728ef8858a457a4a45cf3f2987b2" in message
    assert str(tmp_path / "seem_focalt_v1.pt") in message


def test_v0_checkpoints_are_not_run_as_v1():
    from seem_ros.inference.predictor import SeemPredictor
    with torch.device("meta"):
        model = SEEM(config_for("focalt_v0"))
    with pytest.raises(NotImplementedError, match="only SEEM v1"):
        SeemPredictor(model)


def test_a_released_file_is_hashed_once_per_identity(tmp_path, monkeypatch):
    import seem_ros.weights as checkpoint
    monkeypatch.setenv("SEEM_ROS_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "released.pt"
    path.write_bytes(b"weights" * 1000)
    monkeypatch.setitem(checkpoint.KNOWN_CHECKPOINTS, "released.pt", (checkpoint.sha256_of(str(path)), 7000))
    hashed = []
    real = checkpoint.sha256_of
    monkeypatch.setattr(checkpoint, "sha256_of", lambda p: hashed.append(p) or real(p))
    for _ in range(3):
        verify_known_checkpoint(str(path))
    assert len(hashed) == 1  # remembered in SEEM_ROS_CACHE_DIR/checksums.json
    path.write_bytes(b"WEIGHTS" * 1000)  # same size, new content: a new identity (mtime)
    os.utime(path, ns=(1, 1))
    with pytest.raises(CheckpointError, match="does not match the released released.pt"):
        verify_known_checkpoint(str(path))
    assert len(hashed) == 2
    (tmp_path / "cache" / "checksums.json").write_text("{damaged")
    with pytest.raises(CheckpointError, match="does not match"):
        verify_known_checkpoint(str(path))  # a damaged store is rebuilt, not fatal


def test_checkpoints_are_read_memory_mapped(tiny_config, monkeypatch):
    loads = []
    real = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(k) or real(*a, **k))
    load_seem(str(reference_path("tiny", "tiny_seem.pt")), tiny_config)
    assert loads == [{"map_location": "cpu", "weights_only": True, "mmap": True}]

"""Inference backends on the tiny reference checkpoint (the exported graphs: test_engine_export.py)."""
import pytest
import torch

from conftest import reference_path
from seem_ros.runtime.backends import BackendConfig, BackendError, create_predictor


def config(**kwargs):
    kwargs.setdefault("embedding_cache_dir", "")
    return BackendConfig(str(reference_path("tiny", "tiny_seem.pt")), str(reference_path("tiny", "tiny_config.yaml")),
                         **kwargs)


def _has_tensorrt() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.parametrize("kwargs, message", [
    (dict(backend="openvino"), "unknown backend 'openvino'"),
    (dict(precision="int8"), "precision must be one of fp32, fp16, bf16"),
    (dict(backend="tensorrt"), "backend 'tensorrt' runs on a GPU: set device to cuda"),
    pytest.param(dict(backend="tensorrt", device="cuda"), "needs TensorRT's Python package", marks=pytest.mark.skipif(
        _has_tensorrt() or not torch.cuda.is_available(), reason="TensorRT is installed, or no CUDA to get that far")),
])
def test_bad_backend_settings_are_explained(kwargs, message):
    with pytest.raises(BackendError, match=message):
        create_predictor(config(**kwargs))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without CUDA")
def test_cuda_without_gpu_is_explained():
    with pytest.raises(BackendError, match="CUDA is not available"):
        create_predictor(config(device="cuda"))


def test_class_embeddings_are_cached_between_starts(tmp_path, tiny_model):
    first = create_predictor(config(embedding_cache_dir=str(tmp_path), vocabulary=("cup", "table")))
    cached = list(tmp_path.glob("class_embeddings_*.pt"))
    assert len(cached) == 1
    torch.save(first.class_embeddings.cpu() * 0 + 7, cached[0])  # prove the second start reads the file
    second = create_predictor(config(embedding_cache_dir=str(tmp_path), vocabulary=("cup", "table")))
    assert torch.equal(second.class_embeddings, torch.full_like(first.class_embeddings, 7.0))
    cached[0].write_bytes(b"damaged")
    third = create_predictor(config(embedding_cache_dir=str(tmp_path), vocabulary=("cup", "table")))
    assert torch.allclose(third.class_embeddings, first.class_embeddings)
    assert first.class_names == ["cup", "table"] and first.num_thing_classes == 2

"""Inference backends on the tiny reference checkpoint."""
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import reference_path
from seem_ros.runtime.backends import BackendConfig, BackendError, create_predictor


def config(**kwargs):
    kwargs.setdefault("embedding_cache_dir", "")
    return BackendConfig(str(reference_path("tiny", "tiny_seem.pt")), str(reference_path("tiny", "tiny_config.yaml")),
                         **kwargs)


def test_onnxruntime_encoder_matches_torch(tmp_path):
    rgb = np.asarray(Image.open(reference_path("images", "zebras1.jpg")).convert("RGB"))
    outputs = {}
    for backend in ("torch", "onnxruntime"):
        predictor = create_predictor(config(backend=backend, engine_cache_dir=str(tmp_path)))
        predictor.set_image(rgb)
        outputs[backend] = (predictor.features, predictor.predict_text(["zebra"])[0])
    (torch_features, torch_text), (ort_features, ort_text) = outputs["torch"], outputs["onnxruntime"]
    assert (torch_features["mask_features"] - ort_features["mask_features"]).abs().max() < 1e-4
    for a, b in zip(torch_features["multi_scale"], ort_features["multi_scale"]):
        assert (a - b).abs().max() < 1e-4
    assert (torch_text.low_res_logits - ort_text.low_res_logits).abs().max() < 1e-3
    assert list(tmp_path.glob("seem_encoder_512x992.onnx"))  # exported once per input size, kept in the cache


def _has_tensorrt_provider() -> bool:
    import onnxruntime
    return "TensorrtExecutionProvider" in onnxruntime.get_available_providers()


@pytest.mark.parametrize("kwargs, message", [
    (dict(backend="openvino"), "unknown backend 'openvino'"),
    (dict(precision="int8"), "precision must be fp32 or fp16"),
    pytest.param(dict(backend="tensorrt"), "backend 'tensorrt' needs TensorRT", marks=pytest.mark.skipif(
        _has_tensorrt_provider(), reason="this onnxruntime has TensorRT: nothing to explain")),
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

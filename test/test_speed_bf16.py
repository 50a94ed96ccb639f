"""precision bf16: the image encoder (backbone + pixel decoder, most of a frame's work) held in
bf16, the decoder in fp32; its masks against fp32 on the shared DAVIS frames, and its refusal
where the CPU has no native bf16 or the backend cannot run it."""
import copy

import numpy as np
import pytest
import torch

from conftest import davis_results, pixel_agreement, tiny_backend_config
from seem_ros.inference.predictor import SeemPredictor
from seem_ros.node.parameters import PARAMETERS, parameter_errors
from seem_ros.runtime import backends
from seem_ros.runtime.backends import BackendError, create_predictor, describe_backend


def test_a_bf16_image_encoder_agrees_with_fp32_on_the_davis_frames(tiny_model):
    """bf16 keeps 8 significant bits (unit roundoff 2^-8 = 3.9e-3): features move by about 1e-2
    relative, masks at the pixels whose fp32 logit is that close to 0. Measured where the CPU has
    bf16 or not (torch then emulates it, with the same rounding)."""
    held = copy.deepcopy(tiny_model)
    held.hold_image_encoder_in(torch.bfloat16)
    image = torch.zeros(1, 3, 64, 96)
    mask_features, levels = held.encode_image(image)
    assert mask_features.dtype == torch.float32 and {x.dtype for x in levels} == {torch.float32}
    assert held.decoder.class_embed.dtype == torch.float32  # the decoder stays fp32
    overall, agreement = pixel_agreement([r.mask for r in davis_results(SeemPredictor(held))],
                                         [r.mask for r in davis_results(SeemPredictor(tiny_model))])
    print(f"bf16 image encoder vs fp32, {len(agreement)} masks on DAVIS frames: pixel agreement overall {overall:.5f}, "
          f"per mask min {agreement.min():.4f}, {np.mean(agreement >= 0.995):.3f} of masks >= 0.995")
    assert overall >= 0.995  # here 0.99651


def test_bf16_is_refused_with_the_reason_on_a_cpu_without_native_bf16(monkeypatch):
    monkeypatch.setattr(backends, "cpu_flags", lambda: ["sse4_2", "avx2", "avx512f"])
    with pytest.raises(BackendError, match="this CPU has no native bf16 arithmetic .*avx512_bf16.*use precision fp32"):
        create_predictor(tiny_backend_config(precision="bf16"))


def test_bf16_holds_the_image_encoder_in_bf16_where_the_cpu_has_it(monkeypatch):
    monkeypatch.setattr(backends, "cpu_flags", lambda: ["avx2", "avx512_bf16"])
    cfg = tiny_backend_config(precision="bf16")
    predictor = create_predictor(cfg)
    assert predictor.model.image_encoder_dtype == torch.bfloat16
    assert describe_backend(cfg, predictor)[0] == "torch cpu bf16 image encoder, fp32 decoder"


def test_this_machines_bf16_support_is_read_from_its_cpu_flags():
    native = bool({"avx512_bf16", "amx_bf16", "bf16"} & set(backends.cpu_flags()))
    print(f"this CPU computes bf16 natively: {native}")
    assert (backends.bf16_unsupported("cpu") == "") == native


@pytest.mark.parametrize("backend", ["onnxruntime", "tensorrt"])
def test_bf16_with_an_exported_graph_backend_is_refused_at_configure(backend):
    with pytest.raises(BackendError, match=f"precision bf16 is for the torch backend; {backend} runs fp32 or fp16"):
        create_predictor(tiny_backend_config(precision="bf16", backend=backend))
    values = {name: default for name, (default, _) in PARAMETERS.items()}
    values.update(precision="bf16", backend=backend)
    assert any("precision bf16 is for the torch backend" in e for e in parameter_errors(values.get))

"""torch_compile: the image encoder (and on CUDA the fixed-slot frame decoder inside its CUDA graph)
through torch.compile, against the eager code. Noise model: inductor fuses and reorders the
reductions (LayerNorm, matmuls), which moves fp32 results in the last bits (~6e-6 measured on the
tiny model's features, magnitudes up to ~5)."""
import copy

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import reference_path, tiny_backend_config
from seem_ros.inference.predictor import SeemPredictor
from seem_ros.inference.visual_prompt import VisualPrompt
from seem_ros.node.parameters import PARAMETERS, parameter_errors
from seem_ros.runtime.backends import BackendError, create_predictor, describe_backend
from seem_ros.runtime.cuda_graphs import CudaGraphEncoder, CudaGraphSlotDecoder
from seem_ros.runtime.onnx_graphs import default_slots

TOLERANCE = 5e-5


def _zebras() -> np.ndarray:
    return np.asarray(Image.open(reference_path("images", "zebras1.jpg")).convert("RGB"))


def test_a_compiled_image_encoder_serves_the_cpu_predictor_as_eager_does():
    cfg = tiny_backend_config(compile=True, canvas=(384, 576))
    compiled = create_predictor(cfg)
    eager = create_predictor(tiny_backend_config(canvas=(384, 576)))
    assert describe_backend(cfg, compiled)[0] == "torch cpu fp32, compiled (torch.compile)"
    results = []
    for predictor in (compiled, eager):
        with torch.inference_mode():
            predictor.set_image(_zebras())
            results.append((predictor.features,
                            predictor.decode([predictor.visual_query(VisualPrompt(points=[(150, 120, 1)])),
                                              predictor.text_query("zebra")])))
    (features, masks), (eager_features, eager_masks) = results
    for ours, expected in zip([features.mask_features, *features.multi_scale],
                              [eager_features.mask_features, *eager_features.multi_scale]):
        assert float((ours - expected).abs().max()) <= TOLERANCE
    for ours, expected in zip(masks, eager_masks):
        assert float((ours.low_res_logits - expected.low_res_logits).abs().max()) <= 20 * TOLERANCE
        assert (ours.mask != expected.mask).mean() <= 1e-3  # only pixels whose logit is within noise of 0


def test_a_model_moved_to_the_cpu_runs_its_eager_encoder_not_the_one_compiled_for_cuda(tiny_model):
    """An inactive node keeps its model on the CPU and answers services there: the CUDA graph
    runners hand CPU inputs to the eager code, so nothing is compiled again inside a service call."""
    compiled_calls = []
    encoder = CudaGraphEncoder(tiny_model, lambda image: compiled_calls.append(image) or tiny_model.encode_image(image))
    image = torch.zeros(1, 3, 64, 96)
    with torch.inference_mode():
        mask_features, levels = encoder(image)
        expected, _ = tiny_model.encode_image(image)
    assert compiled_calls == [] and torch.equal(mask_features, expected)


@pytest.mark.parametrize("backend", ["onnxruntime", "tensorrt"])
def test_torch_compile_with_an_exported_graph_backend_is_refused_at_configure(backend):
    with pytest.raises(BackendError, match=f"torch_compile is for the torch backend; {backend} runs its own graphs"):
        create_predictor(tiny_backend_config(compile=True, backend=backend))
    values = {name: default for name, (default, _) in PARAMETERS.items()}
    values.update(torch_compile=True, backend=backend)
    assert any("torch_compile is for the torch backend" in e for e in parameter_errors(values.get))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (the compiled graphs inside CUDA graphs)")
def test_compiled_encoder_and_decoder_in_cuda_graphs_equal_eager(tiny_model):
    model = copy.deepcopy(tiny_model).cuda()
    slots = default_slots(model, visual=4, text=2)
    encoder = CudaGraphEncoder(model, torch.compile(model.encode_image, dynamic=False))
    decoder = CudaGraphSlotDecoder(model, slots, compiled=True)
    outputs = []
    for image_encoder, slot_decoder in ((encoder, decoder), (model.encode_image, None)):
        predictor = SeemPredictor(model, image_encoder=image_encoder)
        if slot_decoder is not None:
            predictor.engine.run_slots = slot_decoder.decode_slots
        with torch.inference_mode():
            predictor.set_image(_zebras())
            predictor.lock_canvas()
            outputs.append([r.low_res_logits for r in predictor.decode(
                [predictor.text_query("zebra"), predictor.visual_query(VisualPrompt(points=[(150, 120, 1)]))])])
    assert not encoder.failed and not decoder.failed, (encoder.failed, decoder.failed)
    for ours, expected in zip(*outputs):
        diff = float((ours - expected).abs().max())
        print(f"compiled in CUDA graphs vs eager: max |logit diff| {diff:.2g}")
        assert diff <= 1e-3  # cuDNN and inductor choose their own kernels: TF32 off, fp32 reassociation only

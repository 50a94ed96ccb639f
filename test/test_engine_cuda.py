"""The frame engine on CUDA (skipped without a GPU): the same masks as on the CPU in fp32, close ones
under fp16 autocast, and the image encoder and the fixed-slot decoder replayed from CUDA graphs
(equal to eager, safe across replays, released on deactivate)."""
import copy
import gc

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import reference_path
from seem_ros.inference.predictor import SeemPredictor
from seem_ros.inference.visual_prompt import VisualPrompt
from seem_ros.model.visual_sampler import DeterministicSampling
from seem_ros.runtime.backends import BackendConfig, inference_context, move_predictor
from seem_ros.runtime.cuda_graphs import CudaGraphEncoder, CudaGraphSlotDecoder
from seem_ros.runtime.onnx_graphs import default_slots
from seem_ros.tracking.tracker import ObjectTracker

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def _rgb(name):
    return np.asarray(Image.open(reference_path("images", name)).convert("RGB"))


@pytest.fixture(autouse=True)
def strict_fp32():
    """TF32 off, so that fp32 on the GPU can be compared with the CPU."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _track(model, device, precision="fp32", frames=("zebras1.jpg", "zebras2.jpg", "zebras1.jpg"), encoder=None,
           decoder=None):
    predictor = SeemPredictor(model.to(device), ["zebra", "grass"], rng=DeterministicSampling(), image_encoder=encoder)
    if decoder is not None:
        predictor.engine.run_slots = decoder.decode_slots
    tracker = ObjectTracker()
    ids = [tracker.add("zebra", text="the zebra").id,
           tracker.add("object", visual=VisualPrompt(points=[(150, 120, 1)])).id,
           tracker.add("striped", text="striped animal", visual=VisualPrompt(box=(50, 40, 250, 180))).id]
    masks = []
    with torch.inference_mode(), inference_context(BackendConfig("", device=device, precision=precision)):
        for i, name in enumerate(frames):
            predictor.set_image(_rgb(name))
            if i == 0:  # as the node's frame worker does (input_canvas auto): one shape for the stream
                predictor.lock_canvas()
            if i == 1:
                tracker.refine(ids[1], VisualPrompt(points=[(150, 120, 1), (10, 10, 0)]))
            out = {o.id: o for o in tracker.step(predictor)}
            masks.append([out[i].mask for i in ids])
    return masks


def test_engine_on_cuda_matches_the_cpu(tiny_model):
    on_cpu = _track(copy.deepcopy(tiny_model), "cpu")
    on_gpu = _track(copy.deepcopy(tiny_model), "cuda")
    differing = [int((a != b).sum()) for f_cpu, f_gpu in zip(on_cpu, on_gpu) for a, b in zip(f_cpu, f_gpu)]
    print(f"CUDA fp32 vs CPU, differing mask pixels per object and frame: {differing}")
    assert max(differing) <= 20


def test_engine_under_fp16_autocast_agrees_with_fp32(tiny_model):
    fp32 = _track(copy.deepcopy(tiny_model), "cuda")
    fp16 = _track(copy.deepcopy(tiny_model), "cuda", "fp16")
    agreement = [float((a == b).mean()) for f32, f16 in zip(fp32, fp16) for a, b in zip(f32, f16)]
    print(f"CUDA fp16 autocast vs fp32, pixel agreement per object and frame: min {min(agreement):.4f}")
    assert min(agreement) > 0.9


def test_cuda_graph_encoder_equals_eager_and_keeps_earlier_features(tiny_model):
    model = copy.deepcopy(tiny_model).cuda()
    graphs = CudaGraphEncoder(model)
    first_rgb = _rgb("zebras1.jpg")
    second_rgb = np.ascontiguousarray(np.asarray(Image.fromarray(_rgb("zebras2.jpg")).resize(first_rgb.shape[1::-1])))
    images = [model.normalize_and_pad(torch.from_numpy(rgb.copy()).permute(2, 0, 1)) for rgb in (first_rgb, second_rgb)]
    with torch.inference_mode():
        eager = [model.encode_image(x) for x in images]
        first = graphs(images[0])
        second = graphs(images[1])  # replays into the same buffers: `first` must not change
        for (mf, ms), (emf, ems) in zip((first, second), eager):
            assert torch.allclose(mf, emf, atol=1e-5) and all(torch.allclose(a, b, atol=1e-5) for a, b in zip(ms, ems))
    assert len(graphs.graphs) == 1  # one shape, one graph


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_cuda_graph_decoder_equals_eager(tiny_model, precision):
    """The fixed-slot decoder replayed from a CUDA graph: the same masks as the eager engine, one
    graph for every frame (texts, clicks, a refinement with memory, a followed mask)."""
    eager = _track(copy.deepcopy(tiny_model), "cuda", precision)
    model = copy.deepcopy(tiny_model).cuda()
    decoder = CudaGraphSlotDecoder(model, default_slots(model, visual=4, text=2))
    replayed = _track(model, "cuda", precision, encoder=CudaGraphEncoder(model), decoder=decoder)
    assert not decoder.failed, decoder.failed
    assert len(decoder.graphs) == 1
    agreement = [float((a == b).mean()) for e, r in zip(eager, replayed) for a, b in zip(e, r)]
    print(f"CUDA graph decoder vs eager ({precision}): pixel agreement min {min(agreement):.5f}")
    assert min(agreement) >= (0.9999 if precision == "fp32" else 0.99)


def test_deactivate_frees_the_cuda_graphs_too(tiny_model):
    torch.cuda.synchronize()
    gc.collect()
    torch.cuda.empty_cache()
    baseline = torch.cuda.memory_allocated()
    model = copy.deepcopy(tiny_model).cuda()
    predictor = SeemPredictor(model, ["zebra", "grass"], rng=DeterministicSampling(), image_encoder=CudaGraphEncoder(model))
    predictor.engine.run_slots = CudaGraphSlotDecoder(model, default_slots(model, visual=2, text=1)).decode_slots
    with torch.inference_mode():
        predictor.set_image(_rgb("zebras1.jpg"))
        predictor.decode([predictor.text_query("the zebra"), predictor.visual_query(VisualPrompt(points=[(9, 9, 1)]))])
    assert torch.cuda.memory_allocated() > baseline
    move_predictor(predictor, "cpu")
    gc.collect()
    torch.cuda.empty_cache()
    print(f"GPU memory: {baseline} B before, {torch.cuda.memory_allocated()} B after deactivate")
    assert torch.cuda.memory_allocated() <= baseline  # (cuBLAS workspaces are released too)

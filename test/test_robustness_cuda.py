"""seem_node's GPU duties, checked at the model level (the GPU machines have no ROS): the
segment_image paths on CUDA, visual prompts above the sampler's point limit, the frame worker
surviving a real CUDA out-of-memory error, deactivate releasing every GPU tensor (model, caches,
tracker state) and activate restoring them, and tracking under fp16 autocast. Skipped without CUDA."""
import copy
import gc
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import load_case, reference_path
from ros_harness import PublishedFrames, camera_frame
from seem_ros.inference.coco_classes import COCO_PANOPTIC_CLASSES
from seem_ros.inference.official_layout import OfficialLayoutPredictor
from seem_ros.inference.visual_prompt import VisualPrompt
from seem_ros.node.frame_worker import FrameCounts, FrameWorker
from seem_ros.node.one_shot import segment_once
from seem_ros.node.shared_model import SharedModel
from seem_ros.ros_in.latest_frame import ImageSize, LatestFrame
from seem_ros.ros_in.prompt_messages import ParsedPrompt
from seem_ros.runtime.backends import BackendConfig, inference_context, move_predictor
from seem_ros.runtime.torch_thread import TorchThread
from seem_ros.throttled_log import ThrottledLog
from seem_ros.tracking.tracker import ObjectTracker

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

VOCABULARY = ["zebra", "grass", "sky"]


def _rgb(name="zebras1.jpg"):
    return np.asarray(Image.open(reference_path("images", name)).convert("RGB"))


@pytest.fixture
def predictors(tiny_model):
    """The tiny model on the CPU and on the GPU, COCO vocabulary (the official embeddings), same seeds."""
    embeddings = torch.from_numpy(load_case("text_class_embeddings")["default_text_embeddings"])
    cpu = OfficialLayoutPredictor(copy.deepcopy(tiny_model), class_embeddings=embeddings)
    gpu = OfficialLayoutPredictor(copy.deepcopy(tiny_model).cuda(), class_embeddings=embeddings)
    return cpu, gpu


def _iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


def test_segment_image_paths_on_cuda(predictors):
    cpu, gpu = predictors
    rgb = _rgb()
    everything = segment_once(gpu, rgb, None)  # used to call .numpy() on a CUDA tensor
    on_cpu = segment_once(cpu, rgb, None)
    assert everything and abs(len(everything) - len(on_cpu)) <= 1
    for obj in everything:
        assert obj.mask.shape == rgb.shape[:2] and obj.label in COCO_PANOPTIC_CLASSES
    matched = [max(_iou(obj.mask, other.mask) for other in on_cpu if other.label == obj.label) if any(
        other.label == obj.label for other in on_cpu) else 0.0 for obj in everything]
    print(f"panoptic segments on CUDA vs CPU: {len(everything)} vs {len(on_cpu)}, IoU of matches {matched}")
    assert np.mean(matched) > 0.9
    box = VisualPrompt(box=(40, 30, 200, 160), image_hw=rgb.shape[:2])
    boxed = segment_once(gpu, rgb, ParsedPrompt("box", "", box, None, 0, True))
    assert len(boxed) == 1 and boxed[0].mask.any()


def test_visual_prompts_beyond_the_point_limit_on_cuda(predictors):
    """A box or scribble covers thousands of pixels: the official sampler draws 512 of them with a
    CPU generator, which must also work when the mask is on the GPU (same draws as on the CPU)."""
    cpu, gpu = predictors
    rgb = _rgb()
    prompts = [VisualPrompt(box=(40, 30, 300, 200)), VisualPrompt(scribbles=[[(20, 20), (300, 150), (100, 250)]])]
    results = {}
    for name, predictor in (("cpu", cpu), ("gpu", gpu)):
        predictor.rng.generator.manual_seed(3)
        predictor.set_image(rgb)
        results[name] = predictor.predict_visual(prompts)
    for on_cpu, on_gpu in zip(results["cpu"], results["gpu"]):
        assert _iou(on_cpu.mask, on_gpu.mask) > 0.98


def _tracked_frames(predictor, tracker, frames, cfg):
    outputs = []
    for rgb in frames:
        with inference_context(cfg):
            predictor.set_image(rgb)
            outputs.append({o.id: o for o in tracker.step(predictor)})
    return outputs


def _every_kind_of_object(predictor, tracker):
    reference_rgb = _rgb("zebras2.jpg")
    reference_mask = np.zeros(reference_rgb.shape[:2], bool)
    reference_mask[40:120, 60:200] = True
    with torch.no_grad():
        reference = predictor.encode_reference(reference_rgb, reference_mask)
    ids = [tracker.add("zebra", text="the zebra").id,
           tracker.add("object", visual=VisualPrompt(points=[(150, 120, 1)])).id,
           tracker.add("striped", text="striped animal", visual=VisualPrompt(box=(50, 40, 250, 180))).id,
           tracker.add("example", reference=reference).id]
    return ids


def test_deactivate_releases_every_gpu_tensor_and_activate_restores(tiny_model):
    torch.cuda.synchronize()
    gc.collect()
    torch.cuda.empty_cache()
    baseline = torch.cuda.memory_allocated()
    predictor = OfficialLayoutPredictor(copy.deepcopy(tiny_model).cuda(), VOCABULARY)
    tracker = ObjectTracker()
    ids = _every_kind_of_object(predictor, tracker)
    cfg = BackendConfig("", device="cuda")
    before = _tracked_frames(predictor, tracker, [_rgb(), _rgb("zebras2.jpg")], cfg)
    assert set(before[-1]) == set(ids)
    tracker.refine(ids[1], VisualPrompt(points=[(150, 120, 1), (20, 20, 0)]))  # memory on the GPU
    assert torch.cuda.memory_allocated() > baseline

    move_predictor(predictor, "cpu")  # what on_deactivate does
    tracker.to("cpu")
    gc.collect()
    torch.cuda.empty_cache()
    print(f"GPU memory: {baseline} B before, {torch.cuda.memory_allocated()} B after deactivate")
    assert torch.cuda.memory_allocated() == baseline

    move_predictor(predictor, "cuda")  # what on_activate does
    tracker.to("cuda")
    after = _tracked_frames(predictor, tracker, [_rgb("zebras2.jpg")], cfg)[0]
    assert set(after) == set(ids) and all(o.mask.shape == (after[ids[0]].mask.shape) for o in after.values())


def test_frame_worker_survives_cuda_out_of_memory(tiny_model):
    predictor = OfficialLayoutPredictor(copy.deepcopy(tiny_model).cuda(), VOCABULARY)
    tracker = ObjectTracker()
    tracker.add("zebra", text="the zebra")
    mailbox, counts = LatestFrame(), FrameCounts()
    published = PublishedFrames()
    model = SharedModel(predictor, BackendConfig("", device="cuda"), TorchThread().start("test_torch"))
    worker = FrameWorker(mailbox, model, tracker, published,
                         ImageSize(), counts, ThrottledLog(SimpleNamespace(warning=print, error=print, debug=print)))
    worker.start()
    try:
        torch.cuda.empty_cache()  # cached blocks would feed the model past the hog below
        free, _ = torch.cuda.mem_get_info()
        hog = torch.empty(free - (16 << 20), dtype=torch.uint8, device="cuda")  # leave 16 MB
        mailbox.put(camera_frame(_rgb(), "starved"))
        _wait_for(lambda: counts.snapshot()["failed"] == 1)
        assert "OutOfMemoryError" in counts.last_failure
        del hog  # whoever held the memory lets it go (PyTorch's cache would otherwise keep it)
        torch.cuda.empty_cache()
        mailbox.put(camera_frame(_rgb(), "fed"))
        _wait_for(lambda: [frame_id for frame_id, _ in published] == ["fed"])
        assert counts.snapshot()["processed"] == 1
    finally:
        assert worker.stop(timeout=10)


def _wait_for(condition, timeout=60.0):
    import time
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_tracking_under_fp16_autocast_agrees_with_fp32(tiny_model):
    frames = [_rgb(), _rgb("zebras2.jpg"), _rgb()]
    masks = {}
    for precision in ("fp32", "fp16"):
        predictor = OfficialLayoutPredictor(copy.deepcopy(tiny_model).cuda(), VOCABULARY)
        tracker = ObjectTracker()
        ids = _every_kind_of_object(predictor, tracker)
        outputs = _tracked_frames(predictor, tracker, frames, BackendConfig("", device="cuda", precision=precision))
        masks[precision] = [[out[i].mask for i in ids] for out in outputs]
    agreement = [(a == b).mean() for f32, f16 in zip(masks["fp32"], masks["fp16"]) for a, b in zip(f32, f16)]
    print(f"fp16 autocast vs fp32 tracking, pixel agreement per object and frame: min {min(agreement):.4f}")
    assert min(agreement) > 0.9  # H100: 0.952 with the tiny random-weight model

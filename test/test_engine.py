"""The frame engine (seem_ros/inference/frame_engine.py) against the official outputs and against
itself: every single-object parity case through the engine (replaying the official draws), object
queries that never reach prompt outputs, objects that do not influence one another, attention masks
predicted at each level's size, and the tracker's one pass per frame."""
import copy

import numpy as np
import pytest
import torch
from PIL import Image
from torch.nn import functional as F

from conftest import held_tensors, load_case, reference_path
from noise_model import assert_close, assert_masks_from_logits
from parity_prompts import DEMO_PROMPTS, DOG, EVAL_CASES, eval_prompt, every_kind_of_object
from replay import ReplayedRandomness
from seem_ros.inference.frame_slots import ObjectQuery
from seem_ros.inference.postprocess import upsample_and_crop
from seem_ros.inference.predictor import SeemPredictor
from seem_ros.inference.visual_prompt import VisualPrompt
from seem_ros.model.visual_sampler import DeterministicSampling
from seem_ros.tracking.tracker import ObjectTracker


def _rgb(path):
    return np.asarray(Image.open(reference_path(path)).convert("RGB"))


def _replaying(tiny_model, name, image=None, image_key="input/image_uint8_hwc"):
    case = load_case(name)
    rng = ReplayedRandomness(case)
    predictor = SeemPredictor(tiny_model, rng=rng)
    predictor.set_image(image if image is not None else case[image_key].astype(np.uint8))
    return case, rng, predictor


def _close(ours: torch.Tensor, official: np.ndarray, what: str) -> None:
    assert_close(ours, official, what)
    assert_masks_from_logits(ours, official, what)


@pytest.mark.parametrize("name", sorted(DEMO_PROMPTS))
def test_visual_prompt_cases_through_the_engine(tiny_model, name):
    case, rng, predictor = _replaying(tiny_model, name)
    with torch.no_grad():
        result = predictor.decode([predictor.visual_query(DEMO_PROMPTS[name](case))])[0]
    _close(result.low_res_logits, case["rec/pred_calls/0/out/prev_mask"][0, 0], name)
    rng.assert_all_used()


@pytest.mark.parametrize("name, rounds", [(name, 1) for name in EVAL_CASES] + [("d_multiround_point", 3)])
def test_interactive_rounds_with_memory_through_the_engine(tiny_model, name, rounds):
    case, rng, predictor = _replaying(tiny_model, name, _rgb(DOG))
    engine, frame = predictor.engine, predictor.frame
    pos, neg = predictor.prompt_masks([eval_prompt(case)])
    memory = None
    with torch.no_grad():
        for r in range(rounds):
            if r:
                pos = [torch.from_numpy(case[f"rec/pred_calls/{r}/extra_in/spatial_query_pos_mask/0"]).bool()]
                neg = [torch.from_numpy(case[f"rec/pred_calls/{r}/extra_in/spatial_query_neg_mask/0"]).bool()]
            query = ObjectQuery(spatial=engine.spatial_prompts(frame, pos, neg)[0], memory=memory)
            logits = engine.decode(frame, [query]).logits[0]
            _close(logits, case[f"rec/pred_calls/{r}/out/prev_mask"][0, 0], f"{name} round {r}")
            memory = logits
    rng.assert_all_used()


@pytest.mark.parametrize("name", ["e_refimg_river_PATCHED", "g_video_refimg_f0_to_f1_PATCHED",
                                  "g_video_refimg_f0_to_f2_PATCHED"])
def test_example_region_cases_through_the_engine(tiny_model, name):
    case, rng, predictor = _replaying(tiny_model, name, image_key="input/imageA_uint8_hwc")
    pos, neg = predictor.prompt_masks([VisualPrompt(mask=case["input/maskA"][0, 0] > 0)])
    with torch.no_grad():
        reference = predictor.encode_reference_masks(pos, neg)
        predictor.set_image(case["input/imageB_uint8_hwc"].astype(np.uint8))
        result = predictor.decode([predictor.reference_query(reference)])[0]
    _close(result.low_res_logits, case["rec/pred_calls/1/out/prev_mask"][0, 0], name)
    rng.assert_all_used()


@pytest.mark.parametrize("name, text, image", [("b_grounding_zebra", "zebra", "images/zebras1.jpg"),
                                               ("b_grounding_dog_left", "the dog on the left", "images/corgi2.jpg")])
def test_text_cases_through_the_engine(tiny_model, name, text, image):
    case, rng, predictor = _replaying(tiny_model, name, _rgb(image))
    with torch.no_grad():
        result = predictor.decode([predictor.text_query(text)])[0]
    _close(result.low_res_logits, case["rec/pred_calls/0/out/pred_gmasks"][0][case["derived/matched_id"]][0], name)


# ---------------------------------------------------------------- the engine against itself

@pytest.fixture
def frame_objects(tiny_model):
    """Every kind of object on one frame, with deterministic draws."""
    predictor = SeemPredictor(copy.deepcopy(tiny_model), rng=DeterministicSampling())
    with torch.no_grad():
        queries = every_kind_of_object(predictor)
    return predictor, queries


def test_object_queries_do_not_change_any_prompt_output(frame_objects):
    predictor, queries = frame_objects
    with torch.no_grad():
        prompts_only = predictor.engine.decode(predictor.frame, queries)
        with_everything = predictor.engine.decode(predictor.frame, queries, class_embeddings=predictor.class_embeddings)
    assert with_everything.object_masks is not None
    assert torch.equal(prompts_only.logits, with_everything.logits)  # exactly
    assert torch.equal(prompts_only.match, with_everything.match)


def test_each_object_gets_what_it_gets_alone(frame_objects):
    predictor, queries = frame_objects
    with torch.no_grad():
        together = predictor.engine.decode(predictor.frame, queries)
        for i, query in enumerate(queries):
            alone = predictor.engine.decode(predictor.frame, [query])
            diff = float((alone.logits[0] - together.logits[i]).abs().max())
            print(f"object {i}: max |diff| alone vs with {len(queries) - 1} others {diff:.2g}")
            # float rounding of longer padded rows, nothing more
            assert_close(together.logits[i], alone.logits[0], f"object {i} with others")
            assert_masks_from_logits(together.logits[i], alone.logits[0], f"object {i} with others")
            assert float((alone.match[0] - together.match[i]).abs()) <= 1e-5


def test_a_frame_without_objects_decodes_to_nothing(tiny_model):
    predictor = SeemPredictor(tiny_model, rng=DeterministicSampling())
    predictor.set_image(_rgb("images/zebras1.jpg"))
    assert predictor.decode([]) == []
    assert ObjectTracker().step(predictor) == []


def test_attention_masks_predicted_at_each_level_equal_the_downsampled_stride_4_masks(tiny_model):
    """Bilinear resizing and the channel product commute: projecting the resized mask features
    gives the official resized mask logits, up to float rounding, and the same attention masks."""
    predictor = SeemPredictor(tiny_model)
    predictor.set_image(_rgb("images/zebras1.jpg"))
    dec, frame = tiny_model.decoder, predictor.frame
    with torch.no_grad():
        mask_embed = dec.mask_embed(dec.decoder_norm(dec.query_feat.weight))  # (Q, D) real query states
        stride4 = torch.einsum("qc,chw->qhw", mask_embed, frame.mask_features[0])
        for size, level_features in zip(frame.sizes, frame.level_mask_features):
            official = F.interpolate(stride4[None], size, mode="bilinear", align_corners=False)[0].flatten(1)
            direct = mask_embed @ level_features
            diff = float((official - direct).abs().max())
            flipped = int(((official.sigmoid() < 0.5) != (direct.sigmoid() < 0.5)).sum())
            print(f"level {size}: max |diff| {diff:.2g}, attention mask entries differing {flipped}")
            assert_close(direct, official, f"level {size} mask logits")
            assert_masks_from_logits(direct, official, f"level {size} attention mask")


def test_the_tracker_decodes_a_frame_in_one_pass(tiny_model, monkeypatch):
    predictor = SeemPredictor(copy.deepcopy(tiny_model), rng=DeterministicSampling())
    calls = []
    decode = predictor.engine.decode
    monkeypatch.setattr(predictor.engine, "decode", lambda *a, **k: calls.append(len(a[1])) or decode(*a, **k))
    tracker = ObjectTracker()
    ids = [tracker.add("zebra", text="the zebra").id,
           tracker.add("object", visual=VisualPrompt(points=[(120, 90, 1)])).id,
           tracker.add("striped", text="striped animal", visual=VisualPrompt(box=(30, 20, 200, 150))).id]
    for name in ("zebras1.jpg", "zebras2.jpg", "zebras1.jpg"):
        predictor.set_image(_rgb(f"images/{name}"))
        if name == "zebras2.jpg":  # a refinement with memory in the same pass
            tracker.refine(ids[1], VisualPrompt(points=[(120, 90, 1), (10, 10, 0)]))
        assert {o.id for o in tracker.step(predictor)} == set(ids)
    assert calls == [3, 3, 3]


def test_moving_the_tracker_moves_every_tensor_its_objects_hold(tiny_model):
    """What deactivate relies on to free the GPU: after tracker.to(device) no tensor a tracked
    object holds (previous logits and input-size mask, example-region and appearance tokens) is
    left on the old device."""
    predictor = SeemPredictor(copy.deepcopy(tiny_model), rng=DeterministicSampling())
    tracker = ObjectTracker()
    example = _rgb("images/zebras1.jpg")
    region = np.zeros(example.shape[:2], bool)
    region[60:200, 80:300] = True
    tracker.add("zebra", text="the zebra")
    tracker.add("object", visual=VisualPrompt(points=[(120, 90, 1)]))
    tracker.add("example", reference=predictor.encode_reference(example, region))
    for name in ("zebras1.jpg", "zebras2.jpg"):
        predictor.set_image(_rgb(f"images/{name}"))
        tracker.step(predictor)
    held = held_tensors(list(tracker._objects.values()))
    assert any(t.dtype == torch.bool and t.dim() == 2 for t in held)  # an input-size mask is among them
    tracker.to("meta")
    assert [t.shape for t in held_tensors(list(tracker._objects.values())) if t.device.type != "meta"] == []


def test_follow_query_prompts_with_the_previous_mask(tiny_model):
    """Mask propagation from the device logits prompts with the previous mask itself."""
    predictor = SeemPredictor(copy.deepcopy(tiny_model), rng=DeterministicSampling())
    predictor.set_image(_rgb("images/zebras1.jpg"))
    with torch.no_grad():
        first = predictor.decode([predictor.visual_query(VisualPrompt(box=(40, 30, 250, 180)))])[0]
        f = predictor.features
        query = predictor.follow_query(first)
    previous = upsample_and_crop(first.low_res_logits[None], f.padded_hw, f.input_hw)[0] > 0
    # the prompt's mean feature is taken over the previous mask's pixels
    assert previous.any() and query.spatial.pos_query.shape[0] == 1
    assert query.spatial.level_tokens[2].shape[0] == min(int(previous.sum()), 512)


def test_a_canvas_gives_every_frame_of_a_stream_one_input_size(tiny_model):
    predictor = SeemPredictor(copy.deepcopy(tiny_model), rng=DeterministicSampling())
    first = _rgb("images/zebras1.jpg")
    with torch.no_grad():
        predictor.set_image(first)
        official = predictor.decode([predictor.text_query("the zebra")])[0]
        canvas = predictor.lock_canvas()
        predictor.set_image(first)  # the canvas is the first frame's own padding: nothing changes
        assert torch.equal(predictor.decode([predictor.text_query("the zebra")])[0].low_res_logits,
                           official.low_res_logits)
        for name in ("images/zebras2.jpg", "images/penguin.jpeg", DOG):  # other sizes and aspects
            rgb = _rgb(name)
            predictor.set_image(rgb)
            f = predictor.features
            assert f.padded_hw == canvas and f.input_hw[0] <= canvas[0] and f.input_hw[1] <= canvas[1]
            result = predictor.decode([predictor.text_query("the animal")])[0]
            assert result.mask.shape == rgb.shape[:2]
    with pytest.raises(ValueError, match="multiples of 32"):
        SeemPredictor(tiny_model, canvas=(500, 700))


def test_the_frame_worker_locks_the_canvas_on_the_first_frame(tiny_model):
    import time
    from types import SimpleNamespace
    from ros_harness import PublishedFrames, camera_frame
    from seem_ros.node.frame_worker import FrameCounts, FrameWorker
    from seem_ros.node.shared_model import SharedModel
    from seem_ros.runtime.torch_thread import TorchThread
    from seem_ros.ros_in.latest_frame import ImageSize, LatestFrame
    from seem_ros.runtime.backends import BackendConfig
    from seem_ros.throttled_log import ThrottledLog
    predictor = SeemPredictor(copy.deepcopy(tiny_model), rng=DeterministicSampling())
    mailbox, padded = LatestFrame(), []
    logger = SimpleNamespace(info=lambda text: None, warning=print, error=print, debug=print)
    published = PublishedFrames(on_publish=lambda: padded.append(predictor.features.padded_hw))
    model = SharedModel(predictor, BackendConfig(""), TorchThread().start("test_torch"))
    worker = FrameWorker(mailbox, model, ObjectTracker(), published,
                         ImageSize(), FrameCounts(), ThrottledLog(logger), lock_canvas=True)
    worker.start()
    try:
        for count, name in enumerate(("images/zebras1.jpg", "images/penguin.jpeg"), start=1):
            mailbox.put(camera_frame(_rgb(name)))
            deadline = time.monotonic() + 60
            while len(padded) < count and time.monotonic() < deadline:
                time.sleep(0.02)
    finally:
        assert worker.stop(timeout=10)
    assert len(padded) == 2 and padded[0] == padded[1] == predictor.canvas

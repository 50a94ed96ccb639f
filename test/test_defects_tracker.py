"""Tracker edges (issue 15, item 12): an edit arriving mid-frame is not undone by that frame's
write-back, merged category tracks end with a `removed` report, categories are bounded and each new
noun encodes only its own class embedding, corrections survive a camera resolution change, and
pairwise mask IoU is exact without full-resolution float matrices."""
import tracemalloc

import numpy as np
import pytest
import torch

from conftest import track_frames
from seem_ros.inference.predictor import MaskResult
from seem_ros.inference.visual_prompt import VisualPrompt, merge_prompts
from seem_ros.tracking.association import mask_iou
from seem_ros.tracking.objects import REMOVED
from seem_ros.tracking.tracker import MAX_CATEGORIES, ObjectTracker
from test_tracking_categories import DetectingPredictor, _box

H, W = 40, 60


class _EditingMidFrame:
    """Finds every object where it was prompted; while a frame is decoded, `edit` runs (an edit
    that arrives from another thread while the frame is segmented)."""

    def __init__(self, edit):
        self.edit = edit

    def set_image(self, t):
        pass

    def visual_query(self, prompt, memory=None, text=""):
        return ("prompt", text)

    def follow_queries(self, previous, texts, memories=None):
        return [("propagation", text) for text in texts]

    def appearance(self, results):
        return [f"appearance of {r.label}" for r in results]

    def decode(self, queries):
        self.edit()
        return [MaskResult(_box(5, 5), 0.95, torch.zeros(1), text, (H, W)) for _, text in queries]


def test_a_reset_arriving_mid_frame_is_not_undone_by_the_frames_appearance():
    tracker = ObjectTracker(reidentify_every=1)
    dog = tracker.add("the dog", text="the dog", visual=VisualPrompt(points=[(8, 8, 1)])).id
    predictor = _EditingMidFrame(tracker.reset)
    predictor.set_image(0)
    tracker.step(predictor)
    obj = tracker._objects[dog]
    assert obj.appearance is None and obj.last is None and obj.visual is None  # the reset stands, whole


def test_a_merged_category_track_ends_with_a_removed_report():
    predictor = DetectingPredictor([[_box(5, 5)], [_box(5, 5), _box(5, 6)], [_box(5, 5), _box(5, 5)]],
                                   [["a"], ["a", "b"], ["a", "b"]])
    tracker = ObjectTracker(merge_iou=0.5)
    tracker.add_category("cup", "cups")
    frames = track_frames(tracker, predictor, 3)
    newer = max(frames[1])
    assert frames[2][newer].status == REMOVED and not frames[2][newer].mask.any()
    assert newer not in tracker.labels()


def test_categories_are_bounded_and_a_refused_command_changes_nothing():
    from seem_ros.node.applier import PromptApplier
    from seem_ros.prompts.queue import PromptQueue
    from seem_ros.ros_in.image_conversion import ImageLimits

    class _Log:
        logger = type("L", (), {"info": lambda self, m: None})()

        def warning(self, message):
            pass
    tracker = ObjectTracker()
    for i in range(MAX_CATEGORIES):
        tracker.add_category(f"thing{i}", f"things {i}")
    with pytest.raises(ValueError, match="stop tracking one first"):
        tracker.add_category("cup", "cups")
    applier = PromptApplier(PromptQueue(), tracker, None, None, _Log(), ImageLimits())
    outcome = applier._handlers["command"]  # applied as the applier applies a ~/command
    with pytest.raises(ValueError, match="would exceed"):
        outcome("track the dog and the cups")
    assert tracker.labels() == {}  # "the dog" was not added either


def test_a_new_category_encodes_only_its_own_embedding(tiny_model, monkeypatch):
    import copy
    from seem_ros.inference.predictor import SeemPredictor
    predictor = SeemPredictor(copy.deepcopy(tiny_model))
    encoded = []
    language = predictor.model.language
    original = language.class_embeddings
    monkeypatch.setattr(language, "class_embeddings", lambda names: encoded.append(list(names)) or original(names))
    predictor.set_image(np.zeros((64, 96, 3), np.uint8))
    with torch.no_grad():
        predictor.decode_and_detect([], ["cup"], 0.5)
        predictor.decode_and_detect([], ["cup", "dog"], 0.5)
        predictor.decode_and_detect([], ["dog", "cup"], 0.5)
    assert encoded == [["cup", "background"], ["dog"]]
    together = original(["dog", "cup", "background"])
    assert torch.allclose(torch.stack([predictor._category_embeddings[n] for n in ("dog", "cup", "background")]),
                          together, atol=1e-6)


def test_a_correction_after_a_camera_resolution_change_is_merged_on_the_new_size():
    base = VisualPrompt(points=[(10, 20, 1)], mask=_box(5, 5), image_hw=(H, W))
    correction = VisualPrompt(points=[(30, 30, 0)], image_hw=(2 * H, 2 * W))
    merged = merge_prompts(base, correction)  # raised a broadcasting error on the masks
    assert merged.image_hw == (2 * H, 2 * W) and merged.mask.shape == (2 * H, 2 * W)
    assert merged.mask.sum() == 4 * _box(5, 5).sum()
    assert list(merged.points) == [(20.0, 40.0, 1), (30, 30, 0)]
    only_mask = merge_prompts(VisualPrompt(mask=_box(5, 5)), VisualPrompt(mask=np.ones((2 * H, 2 * W), bool)))
    assert only_mask.mask.shape == (2 * H, 2 * W)


def test_pairwise_mask_iou_is_exact_and_small_at_full_resolution():
    rng = np.random.default_rng(0)
    small = [rng.random((37, 53)) > 0.6 for _ in range(4)] + [np.zeros((37, 53), bool), _box(0, 0)[:37, :53]]
    dense_a = np.stack([m.reshape(-1) for m in small]).astype(np.float64)
    inter = dense_a @ dense_a.T
    union = dense_a.sum(1)[:, None] + dense_a.sum(1)[None] - inter
    np.testing.assert_array_equal(mask_iou(small, small), np.where(union > 0, inter / np.maximum(union, 1), 0.0))
    masks = [np.zeros((1080, 1920), bool) for _ in range(30)]
    for i, m in enumerate(masks):
        m[30 * i:30 * i + 200, 50 * i:50 * i + 300] = True
    tracemalloc.start()
    iou = mask_iou(masks, masks)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert np.allclose(np.diag(iou), 1.0) and iou[0, 29] == 0.0
    assert peak < 32 * 2 ** 20, f"{peak / 2 ** 20:.0f} MB for 30 1080p masks"  # float matrices: ~250 MB each side

"""Tracked objects' states (seem_ros/tracking/tracker.py): tracked, lost, found again with the same
id, removed; weak masks; what found each mask. A predictor double returns known masks, so that the
bookkeeping is checked against exact ground truth (the model path: test_tracking_eval.py)."""
import numpy as np
import pytest
import torch

from conftest import track_frames
from seem_ros.inference.predictor import MaskResult
from seem_ros.inference.visual_prompt import VisualPrompt
from seem_ros.tracking.objects import LOST, REMOVED, TRACKED
from seem_ros.tracking.tracker import ObjectTracker

H, W = 40, 60


def _box(top, left, size=8):
    mask = np.zeros((H, W), bool)
    mask[top:top + size, left:left + size] = True
    return mask


class ScriptedPredictor:
    """frames[t][label] = (mask, score), absent label = not in view. Queries say what was asked."""

    def __init__(self, frames, click_labels):
        self.frames = frames
        self.click_labels = click_labels  # first click (x, y) -> label
        self.t = -1
        self.asked = []

    def set_image(self, t):
        self.t = t

    def text_query(self, text):
        return ("grounding", text, False)

    def visual_query(self, prompt, memory=None, text=""):
        x, y, _ = prompt.points[0]
        return ("prompt" if memory is None else "refinement", self.click_labels[(x, y)], memory is not None)

    def reference_query(self, reference):
        return ("reference", reference, False)

    def follow_queries(self, previous, texts, memories=None):
        memories = memories or [None] * len(previous)
        return [("propagation", p.label, m is not None) for p, m in zip(previous, memories)]

    def appearance(self, results):
        return [r.label for r in results]  # reference_query(label) finds the label wherever it is

    def decode(self, queries):
        self.asked.append(queries)
        results = []
        for _, label, _ in queries:
            mask, score = self.frames[self.t].get(label, (np.zeros((H, W), bool), 0.9))
            results.append(MaskResult(mask, score, torch.zeros(1), label, (H, W)))
        return results


def test_an_object_out_of_view_is_lost_then_found_again_with_its_id():
    cup = _box(5, 5)
    frames = [{"cup": (cup, 0.9)}] * 2 + [{}] * 4 + [{"cup": (_box(6, 7), 0.8)}]
    predictor = ScriptedPredictor(frames, {(8, 8): "cup"})
    tracker = ObjectTracker(lost_after=3, remove_after=0, follow_memory=True)
    cup_id = tracker.add("cup", visual=VisualPrompt(points=[(8, 8, 1)])).id
    seen = [frame[cup_id] for frame in track_frames(tracker, predictor, len(frames))]
    assert [o.status for o in seen] == [TRACKED, TRACKED, TRACKED, TRACKED, LOST, LOST, TRACKED]
    assert [bool(o.mask.any()) for o in seen] == [True, True, False, False, False, False, True]  # no stale mask
    assert np.array_equal(seen[-1].mask, _box(6, 7))
    # while out of view it is searched where it was last seen (its last confident mask prompts, with
    # memory), and once lost by its appearance (the reference tokens of its first confident frame)
    assert [q[0] for q in predictor.asked[1:]] == [("propagation", "cup", True)] * 4 + [
        ("reference", "cup", False), ("propagation", "cup", True)]
    obj = tracker._objects[cup_id]
    assert (obj.age, obj.hits, obj.misses) == (7, 3, 0)
    assert np.array_equal(obj.last.mask, _box(6, 7))


def test_an_object_not_found_for_remove_after_frames_is_removed_with_a_last_report():
    frames = [{"cup": (_box(5, 5), 0.9), "plate": (_box(20, 30), 0.9)}] + [{"plate": (_box(20, 30), 0.9)}] * 5
    predictor = ScriptedPredictor(frames, {(8, 8): "cup", (33, 23): "plate"})
    tracker = ObjectTracker(lost_after=2, remove_after=3)
    cup = tracker.add("cup", visual=VisualPrompt(points=[(8, 8, 1)])).id
    plate = tracker.add("plate", visual=VisualPrompt(points=[(33, 23, 1)])).id
    out = track_frames(tracker, predictor, len(frames))
    assert [f[cup].status for f in out[:4]] == [TRACKED, TRACKED, LOST, REMOVED]
    assert all(cup not in f for f in out[4:]) and all(f[plate].status == TRACKED for f in out)
    assert set(tracker.labels()) == {plate}


def test_a_mask_scoring_below_min_score_counts_as_not_found():
    frames = [{"the cup": (_box(5, 5), 0.9)}, {"the cup": (_box(5, 5), 0.2)}, {"the cup": (_box(9, 9), 0.7)}]
    predictor = ScriptedPredictor(frames, {})
    tracker = ObjectTracker(lost_after=1, min_score=0.5)
    cup = tracker.add("cup", text="the cup").id
    out = [f[cup] for f in track_frames(tracker, predictor, len(frames))]
    assert [(o.status, bool(o.mask.any()), o.score) for o in out] == [
        (TRACKED, True, 0.9), (LOST, False, 0.2), (TRACKED, True, 0.7)]
    assert np.array_equal(tracker._objects[cup].last.mask, _box(9, 9))  # the weak mask never became its memory


def test_each_mask_says_what_found_it():
    frames = [{"cup": (_box(5, 5), 0.9), "the dog": (_box(20, 20), 0.8)}] * 3
    predictor = ScriptedPredictor(frames, {(8, 8): "cup"})
    tracker = ObjectTracker()
    cup = tracker.add("cup", visual=VisualPrompt(points=[(8, 8, 1)])).id
    dog = tracker.add("dog", text="the dog").id
    modes = []
    for t in range(3):
        if t == 2:
            tracker.refine(cup, VisualPrompt(points=[(8, 8, 1), (30, 30, 0)]))
        predictor.set_image(t)
        modes.append({o.id: o.mode for o in tracker.step(predictor)})
    assert [m[cup] for m in modes] == ["prompt", "propagation", "refinement"]
    assert [m[dog] for m in modes] == ["grounding"] * 3


@pytest.mark.parametrize("kwargs, says", [(dict(lost_after=0), "lost_after must be at least 1"),
                                          (dict(remove_after=-1), "lost_after must be at least 1"),
                                          (dict(reidentify_every=-1), "reidentify_every must be at least 0")])
def test_bad_track_settings_are_refused(kwargs, says):
    with pytest.raises(ValueError, match=says):
        ObjectTracker(**kwargs)


# ---------------------------------------------------------------- corrections while tracking

def test_corrections_accumulate_with_the_objects_own_prompt_and_memory():
    frames = [{"cup": (_box(5, 5), 0.9)}] * 3
    predictor = ScriptedPredictor(frames, {(8, 8): "cup"})
    tracker = ObjectTracker()
    cup = tracker.add("cup", visual=VisualPrompt(points=[(8, 8, 1)])).id
    predictor.set_image(0)
    tracker.step(predictor)
    tracker.refine(cup, VisualPrompt(points=[(10, 10, 0)]))  # a negative click inside it
    tracker.refine(cup, VisualPrompt(points=[(14, 5, 1)]))  # then a positive one next to it
    obj = tracker._objects[cup]
    assert obj.refinement.points == [(8, 8, 1), (10, 10, 0), (14, 5, 1)]  # nothing lost, its own click kept
    memory = obj.last
    predictor.set_image(1)
    tracker.step(predictor)
    assert predictor.asked[-1] == [("refinement", "cup", True)]
    assert tracker._objects[cup].following and tracker._objects[cup].last is not memory


def test_a_negative_click_on_an_object_without_a_prompt_of_its_own_uses_its_mask():
    frames = [{"region": (_box(5, 5), 0.9)}] * 2
    predictor = ScriptedPredictor(frames, {})
    tracker = ObjectTracker()
    region = tracker.add("region", reference="tokens").id
    with pytest.raises(ValueError, match="negative clicks alone cannot prompt it"):
        tracker.refine(region, VisualPrompt(points=[(6, 6, 0)]))  # no mask yet: refused, nothing changed
    assert tracker._objects[region].reference == "tokens" and tracker._objects[region].revision == 0
    predictor.frames[0]["tokens"] = predictor.frames[0]["region"]
    predictor.set_image(0)
    tracker.step(predictor)
    tracker.refine(region, VisualPrompt(points=[(6, 6, 0)]))
    prompt = tracker._objects[region].refinement
    assert np.array_equal(prompt.mask, _box(5, 5)) and prompt.points == [(6, 6, 0)]
    assert tracker._objects[region].reference is None


def test_a_negative_click_changes_a_tracked_objects_mask_from_the_next_frame(tiny_model):
    """The real model: two trackers follow the same clicked object; one gets a negative click
    inside it mid-stream, and its next frame differs while the frame before does not."""
    import copy
    from PIL import Image
    from conftest import reference_path
    from seem_ros.inference.predictor import SeemPredictor
    from seem_ros.model.visual_sampler import DeterministicSampling
    rgb = np.asarray(Image.open(reference_path("images", "zebras1.jpg")).convert("RGB"))
    predictor = SeemPredictor(copy.deepcopy(tiny_model), rng=DeterministicSampling())
    plain, corrected = ObjectTracker(), ObjectTracker()
    ids = [t.add("zebra", visual=VisualPrompt(box=(60, 40, 300, 220))).id for t in (plain, corrected)]
    logits = []
    with torch.no_grad():
        for frame in range(3):
            predictor.set_image(rgb)
            if frame == 2:
                mask = corrected._objects[ids[1]].last.mask
                y, x = np.argwhere(mask)[len(np.argwhere(mask)) // 2]
                corrected.refine(ids[1], VisualPrompt(points=[(float(x), float(y), 0)]))
            for tracker, object_id in zip((plain, corrected), ids):
                tracker.step(predictor)
            logits.append([t._objects[i].last.low_res_logits for t, i in zip((plain, corrected), ids)])
    assert torch.equal(logits[1][0], logits[1][1])  # the same until the correction
    assert not torch.equal(logits[2][0], logits[2][1])
    assert corrected._objects[ids[1]].status == "tracked"


def test_a_refinement_message_may_hold_only_negative_clicks():
    from geometry_msgs.msg import Point
    from seem_ros.msg import SegmentationPrompt
    from seem_ros.ros_in.prompt_messages import PromptError, parse_prompt
    msg = SegmentationPrompt(object_id=7, negative_points=[Point(x=3.0, y=4.0)])
    parsed = parse_prompt(msg, (20, 30))
    assert parsed.object_id == 7 and parsed.visual.points == [(3.0, 4.0, 0)]
    with pytest.raises(PromptError, match="not only negative clicks"):
        parse_prompt(SegmentationPrompt(negative_points=[Point(x=3.0, y=4.0)]), (20, 30))


def test_a_click_where_a_lost_object_was_last_seen_revives_it_and_elsewhere_adds_one():
    from seem_ros.node.applier import PromptApplier
    from seem_ros.prompts.queue import PromptQueue
    from seem_ros.ros_in.latest_frame import ImageSize
    from seem_ros.throttled_log import ThrottledLog
    frames = [{"cup": (_box(5, 5), 0.9)}] + [{}] * 3 + [{"cup": (_box(5, 5), 0.9)}]
    predictor = ScriptedPredictor(frames, {(8, 8): "cup", (50.0, 30.0): "plate"})
    tracker = ObjectTracker(lost_after=2, remove_after=0)
    cup = tracker.add("cup", visual=VisualPrompt(points=[(8, 8, 1)])).id
    for t in range(3):
        predictor.set_image(t)
        tracker.step(predictor)
    assert tracker._objects[cup].status == LOST
    size = ImageSize()
    size.set((H, W))
    logged = []
    log = ThrottledLog(type("Logger", (), {"info": logged.append, "warning": logged.append,
                                           "error": logged.append, "debug": logged.append})())
    applier = PromptApplier(PromptQueue(), tracker, size, lambda *a: None, log)
    outcome = applier._click((9.0, 7.0, "rqt click"))  # inside its last mask
    assert outcome.applied and outcome.ids == [cup] and "lost object" in outcome.message
    assert tracker._objects[cup].refinement.points == [(8, 8, 1), (9.0, 7.0, 1)]
    elsewhere = applier._click((50.0, 30.0, "rqt click"))
    assert elsewhere.applied and elsewhere.ids != [cup] and len(tracker) == 2
    predictor.set_image(3)
    assert tracker.step(predictor)[0].mode == "refinement"


def test_text_objects_are_grounded_every_k_frames_and_follow_their_mask_between():
    scores = [0.9, 0.9, 0.9, 0.9, 0.2, 0.9, 0.9]
    frames = [{"the cup": (_box(5, 5 + t), s)} for t, s in enumerate(scores)]
    predictor = ScriptedPredictor(frames, {})
    tracker = ObjectTracker(ground_every=3, reground_below=0.5, follow_memory=True)
    cup = tracker.add("cup", text="the cup").id
    modes = []
    for t in range(len(frames)):
        predictor.set_image(t)
        modes.append(tracker.step(predictor)[0].mode)
    # frame 4 scores 0.2: frame 5 is grounded at once, then the count starts again
    assert modes == ["grounding", "propagation", "propagation", "grounding", "propagation", "grounding",
                     "propagation"]
    followed = [q for queries in predictor.asked for q in queries if q[0] == "propagation"]
    assert followed and all(label == "the cup" and memory for _, label, memory in followed)
    assert tracker._objects[cup].since_grounding == 1


def test_grounding_every_frame_is_the_default():
    frames = [{"the cup": (_box(5, 5), 0.9)}] * 3
    predictor = ScriptedPredictor(frames, {})
    tracker = ObjectTracker()
    tracker.add("cup", text="the cup")
    for t in range(3):
        predictor.set_image(t)
        assert tracker.step(predictor)[0].mode == "grounding"
    with pytest.raises(ValueError, match="ground_every"):
        ObjectTracker(ground_every=0)


class ReenteringPredictor:
    """One object whose masks per frame are `positions[t]` (None: out of view). Mask propagation
    finds it only where its previous mask overlaps it; its appearance (reference tokens) finds it
    anywhere, with `reference_score`."""

    def __init__(self, positions, reference_score=0.85):
        self.positions, self.reference_score, self.t = positions, reference_score, -1
        self.asked = []

    def set_image(self, t):
        self.t = t

    def visual_query(self, prompt, memory=None, text=""):
        return "prompt", None

    def follow_queries(self, previous, texts, memories=None):
        return [("propagation", p.mask) for p in previous]

    def appearance(self, results):
        return ["the object's tokens"] * len(results)

    def reference_query(self, reference):
        assert reference == "the object's tokens"
        return "reidentification", None

    def decode(self, queries):
        self.asked.append([kind for kind, _ in queries])
        now = self.positions[self.t]
        results = []
        for kind, previous in queries:
            found = now is not None and (kind != "propagation" or (previous & now).any())
            score = self.reference_score if kind == "reidentification" else 0.9
            results.append(MaskResult(now if found else np.zeros((H, W), bool), score, torch.zeros(1), "", (H, W)))
        return results


def _reentering(reidentify_every, reference_score=0.85):
    # in view at one place, out of view for 5 frames, back at a place that does not overlap the old one
    positions = [_box(5, 5)] * 2 + [None] * 5 + [_box(25, 40)] * 3
    predictor = ReenteringPredictor(positions, reference_score)
    tracker = ObjectTracker(lost_after=2, remove_after=0, reidentify_every=reidentify_every)
    object_id = tracker.add("cup", visual=VisualPrompt(points=[(8, 8, 1)])).id
    return [frame[object_id] for frame in track_frames(tracker, predictor, len(positions))], predictor.asked


def test_a_lost_object_is_reidentified_by_its_appearance_where_it_reenters():
    seen, asked = _reentering(reidentify_every=3)
    # lost after 2 empty frames; then searched by appearance every 3rd frame, by its last mask between
    assert [kinds[0] for kinds in asked] == ["prompt", "propagation", "propagation", "propagation",
                                             "reidentification", "propagation", "propagation",
                                             "reidentification", "propagation", "propagation"]
    assert [o.status for o in seen] == [TRACKED] * 3 + [LOST] * 4 + [TRACKED] * 3
    assert [o.mode for o in seen[7:]] == ["reidentification", "propagation", "propagation"]
    assert all(np.array_equal(o.mask, _box(25, 40)) for o in seen[7:])  # followed from where it came back


def test_without_reidentification_or_with_a_weak_match_a_lost_object_stays_lost():
    never, asked = _reentering(reidentify_every=0)
    assert "reidentification" not in {kind for kinds in asked for kind in kinds}
    assert [o.status for o in never[-3:]] == [LOST] * 3
    weak, _ = _reentering(reidentify_every=3, reference_score=0.6)  # below reidentify_min_score 0.8
    assert [o.status for o in weak[-3:]] == [LOST] * 3 and not any(o.mask.any() for o in weak[-3:])

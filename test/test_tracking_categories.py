"""Category commands ("track the cups"): how commands are read, the optimal assignment, detections
matched to tracks by mask IoU, new instances, duplicates merged into the older id, with a predictor
double that returns known masks; and the real model's detection path in the same decoder pass."""
import itertools

import numpy as np
import pytest
import torch

from conftest import track_frames
from seem_ros.inference.predictor import MaskResult
from seem_ros.prompts.text_commands import read_phrase
from seem_ros.tracking.association import match_by_iou, optimal_assignment
from seem_ros.tracking.tracker import ObjectTracker

H, W = 40, 60


@pytest.mark.parametrize("phrase, category, noun", [
    ("the cups", True, "cup"), ("all people", True, "person"), ("every dog", True, "dog"),
    ("person", True, "person"), ("cups", True, "cup"), ("the red cups", True, "red cup"), ("boxes", True, "box"),
    ("the red cup", False, "the red cup"), ("a person on the left", False, "a person on the left"),
    ("the dog", False, "the dog"), ("the glass", False, "the glass"),
])
def test_how_a_phrase_is_read(phrase, category, noun):
    reading = read_phrase(phrase)
    assert (reading.category, reading.noun) == (category, noun)


def test_the_assignment_is_optimal():
    rng = np.random.default_rng(0)
    for rows, cols in ((3, 3), (2, 4), (5, 3), (4, 4)):
        cost = rng.random((rows, cols))
        pairs = optimal_assignment(cost)
        assert len(pairs) == min(rows, cols) and len({r for r, _ in pairs}) == len({c for _, c in pairs}) == len(pairs)
        best = min(sum(cost[r, c] for r, c in zip(perm_rows, perm_cols))
                   for perm_rows in itertools.permutations(range(rows), min(rows, cols))
                   for perm_cols in itertools.combinations(range(cols), min(rows, cols)))
        assert sum(cost[r, c] for r, c in pairs) == pytest.approx(best)
    assert optimal_assignment(np.zeros((0, 3))) == []


def _box(top, left, size=8):
    mask = np.zeros((H, W), bool)
    mask[top:top + size, left:left + size] = True
    return mask


def test_detections_are_matched_by_iou_not_by_order():
    tracks = [_box(0, 0), _box(20, 30)]
    detections = [_box(21, 31), _box(30, 50), _box(1, 1)]
    pairs, new, unmatched = match_by_iou(detections, tracks, min_iou=0.3)
    assert sorted(pairs) == [(0, 1), (2, 0)] and new == [1] and unmatched == []


class DetectingPredictor:
    """frames[t] = instance masks of the category, detected in that (arbitrary) order. A followed
    track gets, as mask propagation would, its own instance's new mask (the instance whose mask
    in the previous frame was the track's), or nothing when that instance is gone."""

    def __init__(self, frames, identities=None):
        self.frames, self.t = frames, -1
        self.identities = identities or [list(range(len(f))) for f in frames]  # per frame: instance names

    def set_image(self, t):
        self.t = t

    def _result(self, mask):
        return MaskResult(mask, 0.9, torch.zeros(1), "", (H, W))

    def follow_queries(self, previous, texts, memories=None):
        return [("propagation", p) for p in previous]

    def _propagated(self, last):
        before = dict(zip(self.identities[self.t - 1], self.frames[self.t - 1])) if self.t else {}
        now = dict(zip(self.identities[self.t], self.frames[self.t]))
        own = [name for name, mask in before.items() if np.array_equal(mask, last.mask)]
        return self._result(now[own[0]] if own and own[0] in now else np.zeros((H, W), bool))

    def decode_and_detect(self, queries, categories, threshold):
        return ([self._propagated(q[1]) for q in queries],
                [(0, self._result(m)) for m in self.frames[self.t]])


def _ids_by_position(objects):
    return {tuple(np.argwhere(o.mask)[0]): o.id for o in objects if o.mask.any()}


def test_every_instance_gets_an_id_that_persists_while_they_move_and_cross():
    # two cups moving towards each other, crossing (overlapping) and swapping sides, detected in
    # changing order: each keeps its id (matched to its own propagated mask by IoU)
    frames = [[_box(10, 10 + 4 * t), _box(10, 40 - 4 * t)][::(-1) ** t] for t in range(8)]
    predictor = DetectingPredictor(frames, [["a", "b"][::(-1) ** t] for t in range(8)])
    tracker = ObjectTracker(max_objects=4)
    assert tracker.add_category("cup", "the cups") and not tracker.add_category("Cup", "cups")
    history = []
    for t in range(len(frames)):
        predictor.set_image(t)
        objects = tracker.step(predictor)
        assert all(o.label == "the cups" and o.status == "tracked" for o in objects)
        history.append({o.id: int(np.argwhere(o.mask)[0][1]) for o in objects})
    assert len(history[0]) == 2 and all(set(h) == set(history[0]) for h in history)  # no new ids, none lost
    left, right = sorted(history[0], key=history[0].get)
    assert [h[left] for h in history] == [10 + 4 * t for t in range(8)]  # the left cup, moving right
    assert [h[right] for h in history] == [40 - 4 * t for t in range(8)]


def test_a_new_instance_starts_a_track_and_a_vanished_one_becomes_lost():
    frames = [[_box(5, 5)], [_box(5, 5), _box(25, 40)], [_box(25, 40)], [_box(25, 40)], [_box(25, 40)]]
    predictor = DetectingPredictor(frames, [["a"], ["a", "b"], ["b"], ["b"], ["b"]])
    tracker = ObjectTracker(lost_after=2, remove_after=0)
    tracker.add_category("cup", "cups")
    seen = track_frames(tracker, predictor, len(frames))
    first, second = sorted(seen[1])
    assert list(seen[0]) == [first] and seen[1][second].mode == "detection"
    # the first cup is gone: neither detected nor found by propagation -> lost after 2 frames, same id
    assert [seen[t][first].status for t in (2, 3, 4)] == ["tracked", "lost", "lost"]
    assert seen[2][first].mode == "propagation" and not seen[3][first].mask.any()
    assert all(seen[t][second].status == "tracked" and seen[t][second].mode == "detection" for t in (2, 3, 4))


def test_an_instance_back_in_view_gets_its_old_id():
    cup = _box(5, 5)
    frames = [[cup, _box(25, 40)], [_box(25, 40)], [_box(25, 40)], [_box(25, 40)], [_box(6, 6), _box(25, 40)]]
    predictor = DetectingPredictor(frames, [["a", "b"], ["b"], ["b"], ["b"], ["a", "b"]])
    tracker = ObjectTracker(lost_after=2, remove_after=0)
    tracker.add_category("cup", "cups")
    seen = track_frames(tracker, predictor, len(frames))
    first = min(seen[0])
    assert [seen[t][first].status for t in range(5)] == ["tracked", "tracked", "lost", "lost", "tracked"]
    assert seen[4][first].mode == "detection" and np.array_equal(seen[4][first].mask, _box(6, 6))
    assert len(seen[4]) == 2  # no new id for it


def test_duplicate_tracks_are_merged_into_the_older_id():
    # a second detection of one cup starts a track; both tracks then follow that cup
    predictor = DetectingPredictor([[_box(5, 5)], [_box(5, 5), _box(5, 6)], [_box(5, 5), _box(5, 5)]],
                                   [["a"], ["a", "b"], ["a", "b"]])
    tracker = ObjectTracker(merge_iou=0.5)
    tracker.add_category("cup", "cups")
    ids = []
    for t in range(3):
        predictor.set_image(t)
        ids.append(sorted(o.id for o in tracker.step(predictor) if o.status != "removed"))
    older = ids[0][0]
    assert len(ids[1]) == 2  # the duplicate appears as a new instance for one frame
    assert ids[2] == [older] and list(tracker.labels()) == [older]


def test_removing_a_category_removes_its_tracks_and_stops_detection():
    predictor = DetectingPredictor([[_box(5, 5), _box(25, 40)]] * 2)
    tracker = ObjectTracker()
    tracker.add_category("cup", "the cups")
    predictor.set_image(0)
    assert len(tracker.step(predictor)) == 2
    assert len(tracker.remove_label("the cups")) == 2 and tracker.categories() == {}
    predictor.set_image(1)
    assert tracker.step(predictor) == []


def test_the_real_model_detects_categories_in_the_same_decoder_pass(tiny_model, monkeypatch):
    import copy
    from PIL import Image
    from conftest import reference_path
    from seem_ros.inference.predictor import SeemPredictor
    from seem_ros.model.visual_sampler import DeterministicSampling
    predictor = SeemPredictor(copy.deepcopy(tiny_model), rng=DeterministicSampling())
    passes = []
    decode = predictor.engine.decode
    monkeypatch.setattr(predictor.engine, "decode", lambda *a, **k: passes.append(k) or decode(*a, **k))
    tracker = ObjectTracker(detection_threshold=0.0)  # random weights: take every query's best class
    tracker.add_category("zebra", "zebras")
    tracker.add("grass", text="the grass")
    with torch.no_grad():
        predictor.set_image(np.asarray(Image.open(reference_path("images", "zebras1.jpg")).convert("RGB")))
        objects = tracker.step(predictor)
    assert len(passes) == 1 and passes[0]["class_embeddings"].shape[0] == 2  # "zebra" + background
    assert [o.label for o in objects].count("the grass") == 0 and "grass" in [o.label for o in objects]
    zebras = [o for o in objects if o.label == "zebras"]
    assert zebras and all(o.mode == "detection" and o.mask.any() for o in zebras)
    assert len({o.id for o in objects}) == len(objects)

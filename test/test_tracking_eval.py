"""Tracking evaluation (seem_ros/tools/evaluation.py, `seem-ros eval-tracking`): the DAVIS
metrics against hand-computed values, the official video cases through the tracker's own code
path (draws replayed), and the command run as a user runs it on the shared DAVIS frames."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import REPO, load_case, reference_path
from noise_model import assert_close
from replay import ReplayedRandomness
from seem_ros.inference.predictor import MaskResult, SeemPredictor
from seem_ros.inference.visual_prompt import VisualPrompt
from seem_ros.tools.evaluation import boundary_f_measure, read_davis, region_similarity
from seem_ros.tracking.tracker import ObjectTracker


def _square(size, top, left, side):
    mask = np.zeros((size, size), bool)
    mask[top:top + side, left:left + side] = True
    return mask


def test_region_similarity_is_the_iou():
    a, b = _square(100, 10, 10, 20), _square(100, 10, 20, 20)  # 200 px shared of 600
    assert region_similarity(a, b) == pytest.approx(200 / 600)
    assert region_similarity(a, a) == 1.0 and region_similarity(a, ~a) == 0.0
    empty = np.zeros_like(a)
    assert region_similarity(empty, empty) == 1.0 and region_similarity(a, empty) == 0.0


def test_boundary_f_measure_tolerates_the_davis_distance_only():
    truth = _square(200, 50, 50, 80)  # diagonal 283 px: tolerance ceil(0.008 * 283) = 3 px
    assert boundary_f_measure(truth, truth) == 1.0
    assert boundary_f_measure(_square(200, 52, 52, 80), truth) == 1.0  # 2 px off: within tolerance
    far = boundary_f_measure(_square(200, 60, 60, 80), truth)  # 10 px off: only crossings match
    assert 0.0 < far < 0.25
    empty = np.zeros_like(truth)
    assert boundary_f_measure(empty, empty) == 1.0 and boundary_f_measure(empty, truth) == 0.0


def test_the_mask_propagation_case_through_the_tracker(tiny_model):
    """g_video_maskprop: frame 0's mask prompts frame 1; the tracker's first step of a visual object."""
    case = load_case("g_video_maskprop_f0_to_f1")
    rng = ReplayedRandomness(case)
    predictor = SeemPredictor(tiny_model, rng=rng)
    tracker = ObjectTracker(reidentify_every=0)  # no appearance memory: its draws are not in the case
    tracker.add("object", visual=VisualPrompt(mask=case["input/rand_shape"][0, 0] > 0))
    with torch.no_grad():
        predictor.set_image(case["input/image_uint8_hwc"].astype(np.uint8))
        (frame_object,) = tracker.step(predictor)
    logits = tracker._objects[frame_object.id].last.low_res_logits
    assert_close(logits, case["rec/pred_calls/0/out/prev_mask"][0, 0], "mask logits")
    rng.assert_all_used()


@pytest.mark.parametrize("name", ["g_video_refimg_f0_to_f1_PATCHED", "g_video_refimg_f0_to_f2_PATCHED"])
def test_the_example_region_video_cases_through_the_tracker(tiny_model, name):
    """g_video_refimg: frame 0 and its mask are an example region for a later frame."""
    case = load_case(name)
    rng = ReplayedRandomness(case)
    predictor = SeemPredictor(tiny_model, rng=rng)
    with torch.no_grad():
        predictor.set_image(case["input/imageA_uint8_hwc"].astype(np.uint8))
        pos, neg = predictor.prompt_masks([VisualPrompt(mask=case["input/maskA"][0, 0] > 0)])
        tracker = ObjectTracker()
        tracker.add("object", reference=predictor.encode_reference_masks(pos, neg))
        predictor.set_image(case["input/imageB_uint8_hwc"].astype(np.uint8))
        (frame_object,) = tracker.step(predictor)
    logits = tracker._objects[frame_object.id].last.low_res_logits
    assert_close(logits, case["rec/pred_calls/1/out/prev_mask"][0, 0], "mask logits")
    rng.assert_all_used()


def test_an_objects_appearance_finds_it_as_the_official_example_region_does(tiny_model):
    """Re-identification: an object's appearance is its mask's reference tokens on a frame of its
    own; searched by it in a later frame, it gets the official example-region output."""
    case = load_case("g_video_refimg_f0_to_f1_PATCHED")
    rng = ReplayedRandomness(case)
    predictor = SeemPredictor(tiny_model, rng=rng)
    with torch.no_grad():
        predictor.set_image(case["input/imageA_uint8_hwc"].astype(np.uint8))
        mask = case["input/maskA"][0, 0] > 0
        (appearance,) = predictor.appearance([MaskResult(mask, 1.0, torch.zeros(1), "", mask.shape)])
        predictor.set_image(case["input/imageB_uint8_hwc"].astype(np.uint8))
        (found,) = predictor.decode([predictor.reference_query(appearance)])
    assert_close(found.low_res_logits, case["rec/pred_calls/1/out/prev_mask"][0, 0], "mask logits")
    rng.assert_all_used()
    # the tracker keeps it: computed outside no_grad too, no autograd graph may hold the frame's features
    # (on an H100 one kept 6.4 MB on the GPU after deactivate)
    keeper = SeemPredictor(tiny_model)
    keeper.set_image(case["input/imageA_uint8_hwc"].astype(np.uint8))
    (kept,) = keeper.appearance([MaskResult(mask, 1.0, torch.zeros(1), "", mask.shape)])
    assert not any(t.requires_grad for t in (kept.pos_query, kept.neg_query, *kept.level_tokens))


def test_davis_sequences_are_read_with_their_ground_truth():
    sequences = read_davis(str(reference_path("davis")), max_frames=4)
    assert [s.name for s in sequences] == ["blackswan", "car-roundabout", "cows", "dog"]
    # DAVIS 2016: one object marked 255 in every frame
    assert all(len(s.frames) == len(s.labels) == 4 and s.objects == [255] and s.truth(0, 255).any()
               for s in sequences)
    with pytest.raises(FileNotFoundError, match="not a DAVIS-layout folder"):
        read_davis(str(reference_path("images")))


def _eval(*args):
    tiny = reference_path("tiny")
    return subprocess.run([sys.executable, "-m", "seem_ros.tools.cli", "eval-tracking", "--checkpoint",
                           str(tiny / "tiny_seem.pt"), "--config", str(tiny / "tiny_config.yaml"), *args],
                          cwd=REPO, capture_output=True, text=True, timeout=600)


def test_eval_tracking_prints_the_three_mode_table_on_the_shared_davis_frames():
    done = _eval("--davis", str(reference_path("davis")), "--sequences", "dog,blackswan", "--max-frames", "4")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert any("these numbers mean nothing" in line for line in lines)  # the tiny random-weight checkpoint
    for mode in ("referring", "propagation", "tracker"):
        rows = [line.split() for line in lines if line.split()[1:2] == [mode]]
        assert [r[0] for r in rows] == ["blackswan", "dog", "mean"]
        assert all(0.0 <= float(v) <= 1.0 for r in rows for v in r[2:5])  # J, F, J&F
    summary = json.loads(lines[-1])
    assert set(summary) == {"referring", "propagation", "tracker"}
    assert all(0.0 <= s["JF"] <= 1.0 and s["fps"] > 0 and set(s["sequences"]) == {"blackswan", "dog"}
               for s in summary.values())
    assert "dog" in done.stderr and "J&F" in done.stderr  # progress, a line per sequence and mode


def test_eval_tracking_explains_bad_input():
    bad_mode = _eval("--davis", str(reference_path("davis")), "--modes", "referring,magic")
    assert bad_mode.returncode == 2 and "unknown magic" in bad_mode.stderr
    not_davis = _eval("--davis", str(reference_path("images")))
    assert not_davis.returncode == 1 and "not a DAVIS-layout folder" in not_davis.stderr
    assert "Traceback" not in not_davis.stderr

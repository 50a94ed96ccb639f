"""Text + clicks on one object do what they say (issue 15, item 2).

SEEM v1's attention layout keeps the grounding queries away from the spatial prompt: the official
composition call (evaluate_grounding_sptial) returns the text-only mask whatever the prompt. The
engine composes the two as the prompt's candidate masks (its spatial queries) chosen by the text,
from the same official call's outputs; clicks on a text object become its visual half, from the
next frame on (mode refinement), and the corrected mask is followed afterwards."""
import copy

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import load_case, reference_path, track_frames
from noise_model import assert_close, assert_masks_from_logits
from replay import ReplayedRandomness
from seem_ros.inference.predictor import MaskResult, SeemPredictor
from seem_ros.inference.visual_prompt import VisualPrompt
from seem_ros.model.visual_sampler import DeterministicSampling
from seem_ros.tracking.tracker import ObjectTracker


def _rgb(*path):
    return np.asarray(Image.open(reference_path(*path)).convert("RGB"))


def test_the_official_v1_composition_gives_the_text_only_mask():
    """Why composing inside the v1 decoder cannot work: with a scribble, the official grounding
    outputs are those of the text alone (same image, same text), within float noise."""
    composed, text_only = load_case("f_composition_zebra_scribble"), load_case("b_grounding_zebra")
    assert_close(composed["rec/pred_calls/0/out/pred_gmasks"], text_only["rec/pred_calls/0/out/pred_gmasks"],
                 "grounding masks with and without the scribble")


def test_text_and_a_scribble_give_the_official_calls_prompt_mask_that_the_text_chooses(tiny_model):
    case = load_case("f_composition_zebra_scribble")
    rng = ReplayedRandomness(case)
    predictor = SeemPredictor(tiny_model, rng=rng)
    predictor.set_image(case["input/image_uint8_hwc"].astype(np.uint8))
    with torch.no_grad():
        composed = predictor.engine.decode(predictor.frame, [
            predictor.visual_query(VisualPrompt(mask=case["input/rand_shape"][0, 0] > 0), text="zebra")])
    rng.assert_all_used()
    # the official call's spatial queries (the scribble's candidates) and their caption embeddings
    candidates, captions = case["rec/pred_calls/0/out/pred_smasks"][0], case["rec/pred_calls/0/out/pred_stexts"][0]
    sentence = case["rec/text_tok/0/class_emb"][0]
    cosine = captions @ sentence / (np.linalg.norm(captions, axis=-1) * np.linalg.norm(sentence))
    chosen = int(np.argmax(cosine))
    assert_close(composed.logits[0], candidates[chosen], "composed mask")
    assert_masks_from_logits(composed.logits[0], candidates[chosen], "composed mask")
    assert_close(composed.match[0], cosine[chosen], "text match of the chosen candidate")
    # and not the text-only answer the official call returns
    text_only = case["rec/pred_calls/0/out/pred_gmasks"][0]
    assert min(np.abs(composed.logits[0].numpy() - mask).max() for mask in text_only) > 1.0


def test_text_and_clicks_differ_from_the_text_alone_and_follow_the_click(tiny_model):
    """The issue's check: for 4 clicks, text + click == text alone exactly (clicks dropped). Now each
    is one of the click's own candidates, as the click alone gives them."""
    predictor = SeemPredictor(copy.deepcopy(tiny_model), rng=DeterministicSampling())
    predictor.set_image(_rgb("images", "zebras1.jpg"))
    with torch.no_grad():
        text_alone = predictor.decode([predictor.text_query("zebra")])[0]
        for point in [(160, 100), (400, 250), (600, 300), (300, 350)]:
            click = VisualPrompt(points=[(*point, 1)])
            composed = predictor.decode([predictor.visual_query(click, text="zebra")])[0]
            assert not torch.equal(composed.low_res_logits, text_alone.low_res_logits), point
            assert not np.array_equal(composed.mask, text_alone.mask), point


class _ComposingDouble:
    """A predictor double for the tracker's bookkeeping: records what each object asks and answers
    a text + visual query with its prompt's mask minus its negative clicks (what a trained model
    does), a text-only query with the text's mask."""

    def __init__(self, text_mask):
        self.text_mask = text_mask
        self.asked = []

    def set_image(self, t):
        pass

    def text_query(self, text):
        return ("grounding", text, None, None)

    def visual_query(self, prompt, memory=None, text=""):
        mask = np.asarray(prompt.mask if prompt.mask is not None else self.text_mask).copy()
        for x, y, positive in prompt.points:
            if not positive:
                mask[y - 2:y + 3, x - 2:x + 3] = False
        return ("refinement" if memory is not None else "prompt", text, mask, memory)

    def follow_queries(self, previous, texts, memories=None):
        return [("propagation", text, p.mask, None) for p, text in zip(previous, texts)]

    def appearance(self, results):
        return [None for _ in results]

    def decode(self, queries):
        self.asked.append(queries)
        return [MaskResult(self.text_mask if mask is None else mask, 0.9, torch.zeros(1), text, self.text_mask.shape)
                for _, text, mask, _ in queries]


def test_a_negative_click_on_a_text_object_cuts_its_mask_from_the_next_frame_and_the_cut_holds():
    text_mask = np.zeros((40, 60), bool)
    text_mask[10:30, 10:50] = True
    predictor = _ComposingDouble(text_mask)
    tracker = ObjectTracker(reidentify_every=0)
    ((_, (dog, _)),) = tracker.add_texts(["the dog"])
    track_frames(tracker, predictor, 2)
    tracker.refine(dog, VisualPrompt(points=[(30, 20, 0)], image_hw=(40, 60)))
    frames = track_frames(tracker, predictor, 4)
    assert [f[dog].mode for f in frames] == ["refinement", "propagation", "propagation", "propagation"]
    assert all(not f[dog].mask[18:23, 28:33].any() for f in frames)  # cut on the next frame, and it holds
    assert all(f[dog].mask[12, 12] for f in frames)  # the rest of the object stays
    refinement = predictor.asked[2][0]
    assert refinement[1] == "the dog" and refinement[3] is not None  # with its text and its last mask as memory
    assert all(q[0][1] == "the dog" for q in predictor.asked[3:])  # followed with its text choosing


@pytest.mark.parametrize("label", [0, 1])
def test_refining_keeps_the_objects_own_label_and_text(label):
    text_mask = np.ones((40, 60), bool)
    tracker = ObjectTracker(reidentify_every=0)
    ((_, (dog, _)),) = tracker.add_texts(["the dog"])
    track_frames(tracker, _ComposingDouble(text_mask), 1)
    tracker.refine(dog, VisualPrompt(points=[(30, 20, label)], image_hw=(40, 60)))
    assert tracker._objects[dog].text == "the dog" and tracker.labels()[dog] == "the dog"


"""Text commands, prompt messages, the frame mailbox, mask encodings and the object tracker."""
import math

import numpy as np
import pytest
from geometry_msgs.msg import Point

from conftest import load_case
from seem_ros.inference.predictor import SeemPredictor
from seem_ros.inference.visual_prompt import VisualPrompt
from seem_ros.msg import Scribble, SegmentationPrompt
from seem_ros.prompts.text_commands import CommandError, parse_command
from seem_ros.ros_in.latest_frame import LatestFrame
from seem_ros.ros_in.prompt_messages import PromptError, parse_prompt, project_to_pixel
from seem_ros.ros_out.encoding import decode_rle, encode_rle, label_image
from seem_ros.tracking.objects import FrameObject
from seem_ros.tracking.places import bounding_box
from seem_ros.tracking.tracker import ObjectTracker


@pytest.mark.parametrize("text, action, phrases", [
    ("segment the red cup", "add", ["the red cup"]),
    ("Track the person and the dog.", "add", ["the person", "the dog"]),
    ("the mug, the spoon", "add", ["the mug", "the spoon"]),
    ("stop tracking the cup", "remove", ["the cup"]),
    ("clear", "clear", []),
    ("  Reset! ", "clear", []),
])
def test_commands(text, action, phrases):
    command = parse_command(text)
    assert (command.action, command.phrases) == (action, phrases)


@pytest.mark.parametrize("text, message", [("", "empty command"), ("   ", "empty command"),
                                           ("x" * 10000, "10000 characters long"), ("segment ,", "nothing to segment")])
def test_bad_commands(text, message):
    with pytest.raises(CommandError, match=message):
        parse_command(text)


def test_latest_frame_keeps_only_the_newest():
    box = LatestFrame()
    for i in range(5):
        box.put(i)
    assert box.take(timeout=0) == 4
    assert (box.received, box.replaced) == (5, 4)
    assert box.take(timeout=0.01) is None


def test_rle_round_trip_and_boxes():
    rng = np.random.default_rng(0)
    for mask in (rng.random((7, 9)) > 0.5, np.ones((3, 4), bool), np.zeros((3, 4), bool)):
        runs = encode_rle(mask)
        assert sum(runs) == mask.size
        np.testing.assert_array_equal(decode_rle(runs, *mask.shape), mask)
    mask = np.zeros((10, 10), bool)
    mask[2:5, 3:8] = True
    assert bounding_box(mask) == (3, 2, 5, 3)
    assert encode_rle(mask)[:2] == [23, 5]


def test_label_image_puts_higher_scores_on_top():
    a, b = np.zeros((4, 4), bool), np.zeros((4, 4), bool)
    a[:, :3], b[:, 2:] = True, True
    labels = label_image((4, 4), [FrameObject(7, "a", a, 0.9), FrameObject(300, "b", b, 0.5)], {7: 1, 300: 2})
    assert labels.dtype == np.uint16
    assert labels[0].tolist() == [1, 1, 1, 2]


def _prompt(**fields):
    msg = SegmentationPrompt()
    for key, value in fields.items():
        setattr(msg, key, value)
    return msg


def test_prompt_message_to_model_prompt():
    scribble = Scribble(points=[Point(x=1.0, y=2.0), Point(x=5.0, y=6.0)], positive=False)
    parsed = parse_prompt(_prompt(text=" the  cup ", positive_points=[Point(x=3.0, y=4.0)], boxes=[1.0, 1.0, 8.0, 9.0],
                                  scribbles=[scribble]), (20, 30))
    assert parsed.text == "the cup" and parsed.label == "the cup" and parsed.track
    assert parsed.visual.points == [(3.0, 4.0, 1)] and parsed.visual.box == (1.0, 1.0, 8.0, 9.0)
    assert parsed.visual.negative_scribbles == [[(1.0, 2.0), (5.0, 6.0)]]


@pytest.mark.parametrize("fields, message", [
    (dict(positive_points=[Point(x=math.nan, y=1.0)]), "not a finite pixel position"),
    (dict(positive_points=[Point(x=31.0, y=1.0)]), "outside the 30x20 image"),
    (dict(boxes=[1.0, 2.0, 3.0]), "4 values per box"),
    (dict(negative_points=[Point(x=1.0, y=1.0)]), "not only negative"),
    (dict(text="x" * 10000), "10000 characters long"),
    (dict(), "empty prompt"),
])
def test_bad_prompt_messages(fields, message):
    with pytest.raises(PromptError, match=message):
        parse_prompt(_prompt(**fields), (20, 30))


def test_projection_of_clicked_points():
    k = (500.0, 0.0, 320.0, 0.0, 500.0, 240.0, 0.0, 0.0, 1.0)
    assert project_to_pixel((0.1, -0.2, 2.0), k) == pytest.approx((345.0, 190.0))
    with pytest.raises(PromptError, match="behind the camera"):
        project_to_pixel((0.0, 0.0, -1.0), k)
    with pytest.raises(PromptError, match="no intrinsics"):
        project_to_pixel((0.0, 0.0, 1.0), (0.0,) * 9)


@pytest.fixture
def predictor(tiny_model):
    return SeemPredictor(tiny_model)


def test_tracker_follows_objects_across_frames(predictor):
    frames = [load_case(name)["input/image_uint8_hwc"].astype(np.uint8)
              for name in ("g_video_maskprop_f0_to_f1", "c_eval_point")]
    tracker = ObjectTracker(max_objects=3)
    text_id = tracker.add("dog", text="the dog").id
    click_id = tracker.add("object", visual=VisualPrompt(points=[(400, 250, 1)])).id
    once_id = tracker.add("box", visual=VisualPrompt(box=(10, 10, 60, 60)), track=False).id
    with pytest.raises(ValueError, match="max_objects = 3"):
        tracker.add("fourth", text="a cat")
    predictor.set_image(frames[0])
    first = {o.id: o for o in tracker.step(predictor)}
    assert set(first) == {text_id, click_id, once_id}
    assert all(o.mask.shape == frames[0].shape[:2] for o in first.values())
    predictor.set_image(frames[1])
    second = {o.id: o for o in tracker.step(predictor)}
    assert set(second) == {text_id, click_id}  # the one-frame object is gone
    # a clicked object is followed by its own latest mask, which prompts the next frame
    clicked = tracker._objects[click_id]
    assert first[click_id].mask.any() and clicked.last is not None and clicked.following
    # a refinement is decoded with the object's previous mask logits as memory: what the predictor
    # gives for that prompt and that memory alone (same random draws; other rows change nothing)
    refinement = VisualPrompt(points=[(100, 100, 0), (400, 250, 1)])
    memory = clicked.last
    tracker.refine(click_id, refinement)
    predictor.rng.generator.manual_seed(11)
    third = {o.id: o for o in tracker.step(predictor)}
    predictor.rng.generator.manual_seed(11)
    expected = predictor.decode([predictor.visual_query(refinement, memory=memory)])[0]
    assert set(third) == {text_id, click_id}
    assert (third[click_id].mask != expected.mask).sum() <= 2
    assert third[click_id].score == pytest.approx(expected.score, abs=1e-4)
    predictor.rng.generator.manual_seed(11)
    without_memory = predictor.decode([predictor.visual_query(refinement)])[0]
    assert (without_memory.mask != expected.mask).sum() > 100  # the memory really changes the mask
    assert tracker._objects[click_id].refinement is None  # consumed: the next frame follows the mask
    with pytest.raises(KeyError, match="no tracked object with id 42"):
        tracker.refine(42, VisualPrompt(points=[(1, 1, 1)]))
    assert tracker.remove_label("The dog") == [text_id]
    tracker.reset()  # a clicked object only exists through its masks: dropped
    assert tracker.labels() == {}

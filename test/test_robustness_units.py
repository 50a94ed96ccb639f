"""The logic under the node's robustness, without a ROS graph: the prompt queue's order and counts,
the applier's all-or-nothing requests, sequence gaps, label values, edits while a frame is being
segmented (with a predictor test double that returns known masks), the frame worker's stop,
throttled logging (with rclpy's real logger), diagnostics levels, image limits and the ONNX
Runtime fallback warning."""
import io
import threading
import time
from concurrent.futures import Future
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from ros_harness import PublishedFrames, camera_frame
from seem_ros.inference.predictor import MaskResult
from seem_ros.inference.visual_prompt import VisualPrompt
from seem_ros.msg import SegmentationPrompt
from seem_ros.node.applier import PromptApplier
from seem_ros.node.frame_worker import FrameCounts, FrameWorker
from seem_ros.node.shared_model import SharedModel
from seem_ros.prompts.queue import PromptQueue, PromptRequest
from seem_ros.ros_in.image_conversion import ImageConversionError, ImageLimits, compressed_to_rgb, image_to_rgb
from seem_ros.ros_in.latest_frame import ImageSize, LatestFrame
from seem_ros.ros_in.sequence_gaps import SequenceGaps
from seem_ros.ros_out.diagnostics import NodeCounts, assess
from seem_ros.ros_out.encoding import LabelSlots
from seem_ros.runtime import backends
from seem_ros.runtime.backends import BackendConfig
from seem_ros.runtime.torch_thread import TorchThread
from seem_ros.throttled_log import ThrottledLog, message_kind
from seem_ros.tracking.tracker import ObjectTracker
from geometry_msgs.msg import Point


class RecordingLogger:
    def __init__(self):
        self.lines = []

    def __getattr__(self, level):
        return lambda text: self.lines.append((level, text))


# ---------------------------------------------------------------- prompt queue

def test_queue_releases_settled_requests_in_reception_order():
    queue = PromptQueue(capacity=10, settle_s=0.05)
    # an executor hands over the click (received second) before the clear (received first)
    queue.put(PromptRequest("click", stamp_ns=2_000))
    queue.put(PromptRequest("command", "clear", stamp_ns=1_000))
    assert queue.take_settled(timeout=0.0) == []  # not settled yet: an earlier one may still come
    assert [r.kind for r in queue.take_settled(timeout=1.0)] == ["command", "click"]


def test_queue_full_drops_and_counts_and_the_counts_add_up():
    queue = PromptQueue(capacity=2, settle_s=0.0)
    assert queue.put(PromptRequest("a")) and queue.put(PromptRequest("b"))
    assert not queue.put(PromptRequest("c"))
    queue.count_refused()
    taken = queue.take_settled(timeout=0.1)
    queue.finished(True)
    queue.finished(False)
    counts = queue.snapshot()
    assert len(taken) == 2
    assert (counts.received, counts.applied, counts.refused, counts.dropped) == (4, 1, 2, 1)
    assert counts.received == counts.applied + counts.refused + counts.dropped + queue.pending()


def _applier(max_objects=16):
    queue = PromptQueue(settle_s=0.0)
    tracker = ObjectTracker(max_objects)
    size = ImageSize()
    log = ThrottledLog(RecordingLogger())
    applier = PromptApplier(queue, tracker, size, lambda rgb, mask: None, log)
    return queue, tracker, size, applier


def _prompt(**fields):
    msg = SegmentationPrompt()
    for key, value in fields.items():
        setattr(msg, key, value)
    return msg


def test_refused_requests_change_nothing():
    queue, tracker, size, applier = _applier(max_objects=3)
    size.set((48, 64))
    zebra = applier.apply(PromptRequest("command", "segment the zebra")).ids[0]
    before = tracker.labels()
    refused = [
        applier.apply(PromptRequest("prompt", (_prompt(object_id=zebra, positive_points=[Point(x=1.0, y=1.0)]), True))),
        applier.apply(PromptRequest("prompt", (_prompt(text="a horse", positive_points=[Point(x=99.0, y=1.0)]), True))),
        applier.apply(PromptRequest("command", "track the cat, the dog and the bird")),  # 4 objects > 3
        applier.apply(PromptRequest("command", "stop tracking the unicorn")),
        applier.apply(PromptRequest("prompt", (_prompt(text="x", label="y" * 301), False))),
    ]
    assert not any(o.applied for o in refused), [o.message for o in refused]
    assert "exceed max_objects = 3" in refused[2].message
    assert tracker.labels() == before
    assert queue.snapshot().refused == 5


def test_pixel_prompts_wait_for_a_frame_in_order():
    queue, tracker, size, applier = _applier()
    applier.start()
    try:
        queue.put(PromptRequest("click", (500.0, 20.0, "click"), needs_image_size=True))
        queue.put(PromptRequest("command", "segment the later thing"))  # after the click: waits with it
        time.sleep(0.3)
        assert tracker.labels() == {} and queue.pending() == 2
        size.set((48, 64))
        deadline = time.monotonic() + 5
        while queue.pending() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert list(tracker.labels().values()) == ["the later thing"]
        assert queue.snapshot().refused == 1  # the click is outside the 64x48 frame it applies to
    finally:
        assert applier.stop(timeout=5)


def test_stopping_the_applier_answers_every_waiting_caller():
    queue, tracker, size, applier = _applier()
    waiting = PromptRequest("click", (5.0, 5.0, "click"), reply=Future(), needs_image_size=True)
    queue.put(waiting)
    applier.start()
    time.sleep(0.2)  # held: no frame yet
    assert applier.stop(timeout=5)
    outcome = waiting.reply.result(timeout=1)
    assert not outcome.applied and "shutting down" in outcome.message


# ---------------------------------------------------------------- sequence gaps and label values

def test_sequence_gaps_count_missed_and_late_messages_per_publisher():
    gaps = SequenceGaps()
    assert [gaps.observe("a", s) for s in (1, 2, 5, 6)] == [0, 0, 2, 0]
    assert gaps.observe("b", 40) == 0  # a publisher seen for the first time: nothing known before
    assert gaps.observe("a", 4) == -1  # counted as missed, then came after all
    assert gaps.observe("a", None) == 0  # middleware without sequence numbers
    # no publisher identity (Jazzy): two publishers' numbers cannot be told apart, so none are compared
    assert [gaps.observe(None, s) for s in (1, 9, 1)] == [0, 0, 0]
    assert gaps.missed == 1 and gaps.unattributed == 3


def test_label_values_stay_small_and_stable_for_ids_of_any_size():
    slots = LabelSlots()
    first = slots.update([70000, 70001, 70002])
    assert sorted(first.values()) == [1, 2, 3]
    second = slots.update([70000, 70002, 99999])  # 70001 gone: its value is reused
    assert second[70000] == first[70000] and second[70002] == first[70002]
    assert second[99999] == first[70001]


# ---------------------------------------------------------------- edits while a frame is segmented

class BlockingPredictor:
    """A test double: returns known masks, and blocks inside the decoder until released. Its queries
    are tuples saying what was asked."""

    def __init__(self):
        self.entered, self.release = threading.Event(), threading.Event()
        self.decoded = []

    def visual_query(self, prompt, memory=None, text=""):
        return "visual", prompt, memory

    def follow_queries(self, previous, texts, memories=None):
        return [("follow", p) for p in previous]

    def appearance(self, results):
        return ["appearance"] * len(results)

    def text_query(self, text):
        return "text", text

    def decode(self, queries):
        self.decoded.append(list(queries))
        self.entered.set()
        assert self.release.wait(5)
        mask = np.zeros((8, 8), bool)
        mask[2:5, 2:5] = True
        return [MaskResult(mask, 0.9, torch.zeros(2, 2)) for _ in queries]


def test_edits_made_while_a_frame_is_segmented_are_kept():
    tracker = ObjectTracker()
    clicked = tracker.add("object", visual=VisualPrompt(points=[(3, 3, 1)])).id
    doomed = tracker.add("doomed", visual=VisualPrompt(points=[(6, 6, 1)])).id
    predictor = BlockingPredictor()
    frame = []
    worker = threading.Thread(target=lambda: frame.extend(tracker.step(predictor)))
    worker.start()
    assert predictor.entered.wait(5)
    refinement = VisualPrompt(points=[(3, 3, 1), (7, 7, 0)])
    tracker.refine(clicked, refinement)  # arrives mid-frame
    tracker.remove_label("doomed")
    added = tracker.add("late", text="the late thing").id
    predictor.release.set()
    worker.join(5)
    assert [o.id for o in frame] == [clicked]  # removed mid-frame: not published; added: from the next frame
    obj = tracker._objects[clicked]
    # the edit stands (the clicks so far: the object's own and the new negative one), the new mask is its memory
    assert obj.refinement.points == [(3, 3, 1), (7, 7, 0)] and obj.last is not None
    memory, pending = obj.last, obj.refinement
    tracker.step(predictor)
    refined, late = predictor.decoded[-1]
    assert refined[0] == "visual" and refined[1] is pending and refined[2] is memory  # with memory
    assert late == ("text", "the late thing")
    assert set(tracker.labels()) == {clicked, added} and doomed not in tracker.labels()


# ---------------------------------------------------------------- frame worker

class SlowPredictor:
    """A test double whose image encoder takes 0.4 s."""

    def set_image(self, rgb):
        time.sleep(0.4)


def test_the_frame_worker_stops_within_a_stage_and_counts_the_frame_abandoned():
    mailbox, counts = LatestFrame(), FrameCounts()
    published = PublishedFrames()
    model = SharedModel(SlowPredictor(), BackendConfig(""), TorchThread().start("test_torch"))
    worker = FrameWorker(mailbox, model, ObjectTracker(), published,
                         ImageSize(), counts, ThrottledLog(RecordingLogger()))
    worker.start()
    mailbox.put(camera_frame(np.zeros((4, 4, 3), np.uint8)))
    time.sleep(0.1)  # inside set_image
    start = time.monotonic()
    assert worker.stop(timeout=5)
    assert time.monotonic() - start < 0.5
    assert counts.snapshot() == {"processed": 0, "refused": 0, "failed": 0, "abandoned": 1}
    assert published == []


# ---------------------------------------------------------------- logging and diagnostics

def test_throttled_log_groups_messages_by_kind_and_sums_up_bursts():
    logger = RecordingLogger()
    log = ThrottledLog(logger, period_s=0.2, max_kinds=3)
    assert message_kind("data has 10 bytes, expected 20") == message_kind("data has 7 bytes, expected 99")
    assert log.warning("data has 10 bytes, expected 20")
    assert not log.warning("data has 7 bytes, expected 99")  # same kind, within the period
    assert log.warning("unsupported image encoding 'bayer'")  # another kind: at once
    time.sleep(0.25)
    log.flush()
    assert logger.lines[-1] == ("warning", "data has 7 bytes, expected 99 (1 similar messages suppressed in the "
                                           "last 0.2 s)")
    for i in range(10):
        log.warning(f"kind {'x' * i}")
    assert len(log._kinds) == 3  # bounded


def test_throttled_log_works_with_rclpys_logger_at_every_severity():
    """rclpy refuses a logging call site whose severity changes; the log must never raise."""
    import rclpy.logging
    log = ThrottledLog(rclpy.logging.get_logger("seem_ros_test"), period_s=0.0)
    for i in range(3):
        log.warning(f"a warning {i}")
        log.error(f"an error {i}")
        log.exception("something", RuntimeError("boom"), first_traceback_as_error=True)


def test_diagnostics_levels_say_what_is_wrong():
    ok, ok_message = assess(NodeCounts(frames_received=10, frames_processed=10), "", "")
    assert (ok, ok_message) == (b"\x00", "processing")
    level, message = assess(NodeCounts(frames_received=5, frames_failed=5), "RuntimeError: boom", "")
    assert level == b"\x02" and "5 of 5 frames failed: RuntimeError: boom" in message
    level, message = assess(NodeCounts(frames_received=9, frames_processed=4, frames_failed=1, frames_missed=3,
                                       prompts_dropped=2), "E: x", "encoder on the CPU")
    assert level == b"\x01"
    for part in ("1 of 5 frames failed", "3 frames lost before reaching the node", "fastdds_large_shm.xml",
                 "2 prompts dropped", "encoder on the CPU"):
        assert part in message


def test_onnxruntime_without_a_cuda_provider_warns_instead_of_falling_back_silently(monkeypatch):
    import onnxruntime
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    providers, warning = backends._onnx_providers(backends.BackendConfig("", backend="onnxruntime", device="cuda"))
    assert providers == ["CPUExecutionProvider"]
    assert "no CUDAExecutionProvider" in warning and "runs on the CPU" in warning


# ---------------------------------------------------------------- image limits

def test_images_over_the_limits_are_refused_from_the_header():
    limits = ImageLimits(max_pixels=1_000_000, max_aspect_ratio=8.0)
    huge = SimpleNamespace(encoding="rgb8", width=20000, height=1, step=60000, is_bigendian=0, data=b"")
    with pytest.raises(ImageConversionError, match="aspect ratio 20000.0"):
        image_to_rgb(huge, limits)  # refused before the (missing) data is even looked at
    png = io.BytesIO()
    Image.new("L", (2000, 1000)).save(png, format="PNG")  # 2 megapixels in a few KB
    with pytest.raises(ImageConversionError, match="2000000 pixels, more than max_image_pixels = 1000000"):
        compressed_to_rgb(SimpleNamespace(format="png", data=png.getvalue()), limits)

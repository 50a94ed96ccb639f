"""The frame worker: one thread that takes the newest camera frame from the mailbox (ros_in),
converts it (ros_in), runs the model (inference, runtime) and the tracker (tracking) on it and hands
the result to the publishers (ros_out).

Every frame that reaches the mailbox ends in exactly one count: processed, replaced (a newer frame
arrived first), refused (not a usable image), failed (the model raised) or abandoned (the worker was
stopped while it waited or ran). Stopping is checked between the stages, so a stop request waits for
one stage at most.
"""
import collections
import threading
import time
from typing import TYPE_CHECKING, Deque, Dict, List

import torch

from seem_ros.node.loop_thread import LoopThread
from seem_ros.node.shared_model import SharedModel
from seem_ros.ros_in.image_conversion import ImageConversionError, ImageLimits, message_to_rgb
from seem_ros.ros_in.latest_frame import ImageSize, LatestFrame
from seem_ros.throttled_log import ThrottledLog
from seem_ros.tracking.tracker import ObjectTracker

if TYPE_CHECKING:  # the GPU checks run the worker where ROS (which the publishers import) is not installed
    from seem_ros.ros_out.publishers import FramePublishers


class FrameCounts:
    """Outcomes of the frames the worker took, kept across activations (thread-safe)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._values = {"processed": 0, "refused": 0, "failed": 0, "abandoned": 0}
        self._latencies_s: Deque[float] = collections.deque(maxlen=1000)
        self.last_failure = ""

    def add(self, outcome: str, n: int = 1, failure: str = "") -> None:
        with self._lock:
            self._values[outcome] += n
            if failure:
                self.last_failure = failure

    def processed(self, latency_s: float) -> None:
        with self._lock:
            self._values["processed"] += 1
            self._latencies_s.append(latency_s)

    def snapshot(self) -> Dict[str, int]:
        with self._lock:
            return dict(self._values)

    def latencies(self, last: int) -> List[float]:
        """The latencies of the last `last` processed frames (at most 1000)."""
        with self._lock:
            return list(self._latencies_s)[-last:] if last > 0 else []


class FrameWorker:
    def __init__(self, mailbox: LatestFrame, model: SharedModel, tracker: ObjectTracker, publishers: "FramePublishers",
                 image_size: ImageSize, counts: FrameCounts, log: ThrottledLog,
                 image_limits: ImageLimits = ImageLimits(), lock_canvas: bool = False):
        """lock_canvas: the first frame's padded size becomes the canvas of every later frame
        (SeemPredictor.canvas), so that one encoder graph or engine serves the stream."""
        self.mailbox = mailbox
        self.model = model
        self.tracker = tracker
        self.publishers = publishers
        self.image_size = image_size
        self.counts = counts
        self.log = log
        self.image_limits = image_limits
        self.lock_canvas = lock_canvas
        self._loop = LoopThread("seem_frames", self._take_frame,
                                lambda exc: self.log.exception("frame worker", exc, first_traceback_as_error=True))

    def start(self) -> None:
        self._loop.start()

    def stop(self, timeout: float) -> bool:
        """Asks the worker to stop and waits up to `timeout` s; False if it is still running."""
        if not self._loop.stop(timeout):
            return False
        self.counts.add("abandoned", self.mailbox.clear())
        return True

    def resume(self) -> None:
        """After a stop() that timed out: the worker goes on as if never asked to stop (the frame it
        was inside is counted abandoned; later ones are processed)."""
        self._loop.resume()

    def _take_frame(self) -> None:
        msg = self.mailbox.take(timeout=0.1)
        if msg is None:
            return
        try:
            self._process(msg)
        except Exception as exc:  # noqa: BLE001 - one bad frame must not end the worker
            self.counts.add("failed", failure=f"{type(exc).__name__}: {exc}")
            self.log.exception("frame failed", exc, first_traceback_as_error=True)
            if torch.cuda.is_initialized():
                # an out-of-memory error (PyTorch's, or cuBLAS/cuDNN failing to allocate) leaves
                # cached blocks behind that other CUDA libraries cannot use: return them
                torch.cuda.empty_cache()

    def _process(self, msg) -> None:
        try:
            rgb = message_to_rgb(msg, self.image_limits)
        except ImageConversionError as exc:
            self.counts.add("refused")
            self.log.warning(f"camera image ignored: {exc}")
            return
        self.image_size.set(rgb.shape[:2])
        start = time.perf_counter()
        objects = self.model.run(self._track, rgb)
        elapsed = time.perf_counter() - start
        if objects is None or not self._loop.running:
            self.counts.add("abandoned")
            return
        self.publishers.publish(msg.header, rgb, objects, elapsed, list(self.tracker.labels()))
        self.counts.processed(elapsed)

    def _track(self, predictor, rgb):
        """On the torch thread: the frame through the model and the tracker; None when the worker
        was stopped meanwhile (checked between the stages)."""
        if not self._loop.running:
            return None
        predictor.set_image(rgb)
        if self.lock_canvas and predictor.canvas is None:
            height, width = predictor.lock_canvas()
            self.log.logger.info(f"input canvas {width}x{height}: later frames are resized and padded to it")
        if not self._loop.running:
            return None
        return self.tracker.step(predictor)

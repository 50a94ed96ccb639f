"""seem_node's /diagnostics and log summary every stats_period: the counts of the node's lifetime
(kept across reconfigurations), what changed since the last report, latency and the backend."""
import time
from typing import Optional

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from std_msgs.msg import Header

from seem_ros.node.frame_worker import FrameCounts
from seem_ros.node.shared_model import SharedModel
from seem_ros.prompts.queue import PromptQueue
from seem_ros.ros_in.camera import FrameLosses
from seem_ros.ros_in.latest_frame import LatestFrame
from seem_ros.ros_out.diagnostics import NodeCounts, diagnostic_status
from seem_ros.runtime.backends import backend_unavailable, describe_backend
from seem_ros.throttled_log import ThrottledLog, guarded
from seem_ros.tracking.tracker import ObjectTracker


class DiagnosticsReporter:
    def __init__(self, node, mailbox: LatestFrame, frame_counts: FrameCounts, frame_losses: FrameLosses,
                 prompt_queue: PromptQueue, log: ThrottledLog):
        self.node = node
        self.mailbox = mailbox
        self.frame_counts = frame_counts
        self.frame_losses = frame_losses
        self.prompt_queue = prompt_queue
        self.log = log
        self._base = (NodeCounts(), time.monotonic())
        self._publisher = self._timer = None
        self._model: Optional[SharedModel] = None
        self._tracker: Optional[ObjectTracker] = None

    def counts(self) -> NodeCounts:
        frames = self.frame_counts.snapshot()
        prompts = self.prompt_queue.snapshot()
        return NodeCounts(
            frames_received=self.mailbox.received, frames_processed=frames["processed"],
            frames_replaced=self.mailbox.replaced, frames_refused=frames["refused"], frames_failed=frames["failed"],
            frames_abandoned=frames["abandoned"], frames_lost_in_transport=self.frame_losses.lost_in_transport,
            frames_missed=self.frame_losses.gaps.missed,
            frames_without_publisher_id=self.frame_losses.gaps.unattributed, prompts_received=prompts.received,
            prompts_applied=prompts.applied, prompts_refused=prompts.refused, prompts_dropped=prompts.dropped)

    def start(self, model: SharedModel, tracker: ObjectTracker, period_s: float) -> None:
        """At configure: reports on this model and tracker every period_s."""
        self._model, self._tracker = model, tracker
        self._publisher = self.node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._timer = self.node.create_timer(period_s, guarded(self.log, "diagnostics", self.report),
                                             callback_group=MutuallyExclusiveCallbackGroup())

    def stop(self) -> None:
        if self._timer is not None:
            self.node.destroy_timer(self._timer)
        if self._publisher is not None:
            self.node.destroy_publisher(self._publisher)
        self._publisher = self._timer = self._model = self._tracker = None

    def report(self) -> None:
        self.log.flush()
        total, now = self.counts(), time.monotonic()
        before, since = self._base
        period = total.minus(before)
        seconds = max(now - since, 1e-6)
        backend, backend_warning = describe_backend(self._model.cfg, self._model.predictor)
        status = diagnostic_status(
            f"{self.node.get_name()}: SEEM segmentation", self._model.cfg.device, total, period, seconds,
            self.frame_counts.latencies(period.frames_processed), self.frame_counts.last_failure,
            backend, backend_warning, len(self._tracker), self.prompt_queue.pending(),
            backend_unavailable(self._model.predictor))
        if not self._model.active:
            status.message = f"inactive; {status.message}"
        self._publisher.publish(DiagnosticArray(header=Header(stamp=self.node.get_clock().now().to_msg()),
                                                status=[status]))
        summary = f"{status.message}: " + ", ".join(f"{kv.key} {kv.value}" for kv in status.values[:6])
        if status.level == DiagnosticStatus.OK:
            self.node.get_logger().info(summary)
        else:
            self.node.get_logger().warning(summary)
        self._base = (total, now)

"""Prompts from every source into the one ordered prompt queue: the command topic, rqt clicks, RViz
points, SegmentationPrompt messages and the prompt services.

Callbacks here only convert and enqueue, so they never wait for inference; they run in their own
callback groups (prompts, prompt services) beside the lifecycle services. Prompts refused because
the queue was full are counted (prompt topics are reliable and keep-all, so the middleware loses
none).
"""
import threading
import time
from concurrent.futures import Future, TimeoutError as FutureTimeout
from typing import Callable, Optional

from geometry_msgs.msg import Point, PointStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import String
from std_srvs.srv import Trigger

from seem_ros.msg import SegmentationPrompt
from seem_ros.srv import SetPrompt

from seem_ros.node.applier import Outcome
from seem_ros.prompts.queue import PromptQueue, PromptRequest
from seem_ros.ros_in.detections import Detection2DArray
from seem_ros.ros_in.latest_frame import ImageSize
from seem_ros.ros_in.prompt_messages import PromptError, needs_image_size, project_to_pixel
from seem_ros.throttled_log import ThrottledLog, failed_response, guarded

SERVICE_WAIT_S = 30.0  # longest a prompt service waits for its request to be applied
APPLYING_WAIT_S = 10.0  # then, if the applier has just taken it, longest it waits for the outcome


def _reception_ns(info) -> int:
    return int(info.get("received_timestamp") or 0) if info else 0


class PromptIntake:
    """Commands, rqt clicks, RViz points and SegmentationPrompt messages -> the prompt queue."""

    def __init__(self, node, queue: PromptQueue, image_size: ImageSize, log: ThrottledLog, image_topic: str,
                 camera_info_topic: str, clicked_point_topic: str, camera_qos: QoSProfile,
                 transform: Callable[[PointStamped, str], Optional[tuple]], detection_topic: str = ""):
        self.node = node
        self.queue = queue
        self.image_size = image_size
        self.log = log
        self.transform = transform
        self._camera_info: Optional[CameraInfo] = None
        # reliable and keep-all: a burst the executor has not taken yet waits in the middleware
        # (a reliable writer re-sends what the reader could not hold) instead of being overwritten,
        # so every prompt reaches the queue, which counts what it cannot hold. (Keep-last would
        # drop the oldest unread ones, and those before the first one read leave no sequence gap.)
        # One group, so intake order is reception order.
        qos = QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE)
        group = MutuallyExclusiveCallbackGroup()
        self.camera_info_topic = camera_info_topic
        self._subscriptions = [
            node.create_subscription(msg_type, topic, guarded(log, f"{topic} intake", callback), topic_qos,
                                     callback_group=group)
            for msg_type, topic, callback, topic_qos in (
                (String, "~/command", self._on_command, qos),
                (Point, f"{image_topic}_mouse_left", self._on_image_click, qos),
                (PointStamped, clicked_point_topic, self._on_clicked_point, qos),
                (SegmentationPrompt, "~/prompt", self._on_prompt, qos),
                (CameraInfo, camera_info_topic, self._on_camera_info, camera_qos))]
        if detection_topic and Detection2DArray is None:
            log.logger.info(f"detection prompts on {detection_topic!r} need vision_msgs, which is not installed")
        elif detection_topic:  # a detector's latest boxes matter, not a backlog of old ones
            self._subscriptions.append(node.create_subscription(
                Detection2DArray, detection_topic, guarded(log, f"{detection_topic} intake", self._on_detections),
                QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE),
                callback_group=group))

    def destroy(self) -> None:
        for subscription in self._subscriptions:
            self.node.destroy_subscription(subscription)

    def _enqueue(self, request: PromptRequest, info=None) -> None:
        request.stamp_ns = _reception_ns(info)
        if not self.queue.put(request):
            self.log.warning(f"prompt queue full ({self.queue.capacity} waiting): {request.kind} dropped; "
                             "raise prompt_queue_size or send prompts more slowly")

    def _on_command(self, msg: String, info) -> None:
        self._enqueue(PromptRequest("command", msg.data), info)

    def _on_image_click(self, msg: Point, info) -> None:
        self._enqueue(PromptRequest("click", (msg.x, msg.y, "click"), needs_image_size=True), info)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_info = msg

    def _on_clicked_point(self, msg: PointStamped, info) -> None:
        pixel = self._project(msg)
        if pixel is None:
            self.queue.count_refused()
            return
        self._enqueue(PromptRequest("click", (*pixel, "clicked point"), needs_image_size=True), info)

    def _project(self, msg: PointStamped) -> Optional[tuple]:
        """RViz point -> camera pixel (u, v), or None with a warning saying why not."""
        info = self._camera_info
        if info is None:
            self.log.warning("clicked point ignored: no CameraInfo received yet on "
                             f"{self.camera_info_topic!r}, so it cannot be projected into the image")
            return None
        point = (msg.point.x, msg.point.y, msg.point.z)
        if msg.header.frame_id and info.header.frame_id and msg.header.frame_id != info.header.frame_id:
            point = self.transform(msg, info.header.frame_id)
            if point is None:
                return None
        try:
            return project_to_pixel(point, tuple(info.k))
        except PromptError as exc:
            self.log.warning(f"clicked point ignored: {exc}")
            return None

    def _on_detections(self, msg, info) -> None:
        self._enqueue(PromptRequest("detections", msg, needs_image_size=True), info)

    def _on_prompt(self, msg: SegmentationPrompt, info) -> None:
        self._enqueue(PromptRequest("prompt", (msg, False), needs_image_size=needs_image_size(msg)), info)


class PromptServices:
    """~/set_prompt, ~/clear_prompts, ~/reset_tracking: requests go through the same queue as every
    other prompt and the answer says how it was applied (object ids) or why it was refused.

    A caller waits for its outcome on an executor thread. At most max_waiting calls wait at once:
    more are refused at once (nothing changed), so that waiting callers never take the threads the
    camera intake, the lifecycle and parameter services and the diagnostics need (8 calls waiting
    behind a long model step once starved them all)."""

    def __init__(self, node, queue: PromptQueue, image_size: ImageSize, log: ThrottledLog, image_topic: str,
                 max_waiting: int):
        self.node = node
        self.queue = queue
        self.image_size = image_size
        self.log = log
        self.image_topic = image_topic
        self.max_waiting = max_waiting
        self._waiting = threading.BoundedSemaphore(max_waiting)
        group = ReentrantCallbackGroup()  # waiting callers do not hold up one another (up to max_waiting)
        self._services = [
            node.create_service(srv_type, name, guarded(log, name, callback, failed_response), callback_group=group)
            for srv_type, name, callback in ((SetPrompt, "~/set_prompt", self._on_set_prompt),
                                             (Trigger, "~/clear_prompts", self._on_clear),
                                             (Trigger, "~/reset_tracking", self._on_reset))]

    def destroy(self) -> None:
        for service in self._services:
            self.node.destroy_service(service)

    def submit(self, request: PromptRequest) -> Outcome:
        """Queues the request and waits until it is applied or refused."""
        if not self._waiting.acquire(blocking=False):
            self.queue.count_refused()
            message = (f"{self.max_waiting} prompt service calls are already waiting to be applied (the model is "
                       "busy); nothing changed: call again once one is answered")
            self.log.warning(f"{request.kind} service call refused: {message}")
            return Outcome(False, message)
        try:
            return self._wait_for(request)
        finally:
            self._waiting.release()

    def _wait_for(self, request: PromptRequest) -> Outcome:
        request.reply = Future()
        request.stamp_ns = time.time_ns()
        if not self.queue.put(request):
            self.log.warning(f"prompt queue full ({self.queue.capacity} waiting): {request.kind} service call refused")
            return Outcome(False, f"prompt queue full ({self.queue.capacity} waiting); nothing changed")
        try:
            return request.reply.result(SERVICE_WAIT_S)
        except FutureTimeout:
            if request.reply.cancel():
                self.queue.finished(False)
                return Outcome(False, f"not applied within {SERVICE_WAIT_S:g} s (the model is busy); nothing changed")
        try:  # the applier took it just now: its outcome follows (an example region waits for the model)
            return request.reply.result(APPLYING_WAIT_S)
        except FutureTimeout:
            return Outcome(False, f"still being applied after {SERVICE_WAIT_S + APPLYING_WAIT_S:g} s (the model is "
                                  "busy): it takes effect when it is applied, and the log says how it ended")

    def _on_set_prompt(self, request, response):
        pixels = needs_image_size(request.prompt)
        if pixels and self.image_size.get() is None:
            self.queue.count_refused()
            outcome = Outcome(False, f"no camera frame received yet on {self.image_topic!r}: clicks, boxes, "
                                     "scribbles and masks are checked against the camera image size")
            self.log.warning(f"set_prompt refused: {outcome.message}")
        else:
            outcome = self.submit(PromptRequest("prompt", (request.prompt, request.replace), needs_image_size=pixels))
        response.success, response.message, response.object_ids = outcome.applied, outcome.message, outcome.ids
        return response

    def _on_clear(self, request, response):
        outcome = self.submit(PromptRequest("clear"))
        response.success, response.message = outcome.applied, outcome.message
        return response

    def _on_reset(self, request, response):
        outcome = self.submit(PromptRequest("reset"))
        response.success, response.message = outcome.applied, outcome.message
        return response

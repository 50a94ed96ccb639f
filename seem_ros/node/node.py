"""seem_node: SEEM promptable segmentation as a ROS 2 lifecycle node.

configure loads the model and opens the prompt services, activate starts taking camera frames and
prompt topics, deactivate stops them and frees GPU memory, cleanup releases the model. `main`
autostarts (configure + activate) and stops through the lifecycle shutdown on SIGINT/SIGTERM.
The node only wires the parts. A camera frame: ros_in (subscription, mailbox, conversion) -> the
frame worker -> inference and runtime (predictor, backend) -> tracking -> ros_out (publishers). A
prompt: the prompt intake (topics, services) -> prompts (ordered queue) -> the applier -> tracking.
"""
import functools
import inspect
import os
import sys
import threading
import time
import traceback
from typing import Optional

import rclpy
from rclpy.executors import MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode, State, TransitionCallbackReturn
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions

from seem_ros.node.applier import PromptApplier
from seem_ros.node.configuration import backend_config, declare_parameters, image_limits, object_tracker
from seem_ros.node.diagnostics import DiagnosticsReporter
from seem_ros.node.frame_worker import FrameCounts, FrameWorker
from seem_ros.node.parameters import parameter_errors
from seem_ros.node.prompt_intake import PromptIntake, PromptServices
from seem_ros.node.segment_image import SegmentImageService
from seem_ros.node.shared_model import SharedModel
from seem_ros.prompts.queue import PromptQueue
from seem_ros.ros_in.camera import FrameIntake, FrameLosses
from seem_ros.ros_in.image_conversion import ImageLimits
from seem_ros.ros_in.latest_frame import ImageSize, LatestFrame
from seem_ros.ros_in.point_transforms import PointTransforms
from seem_ros.ros_out.publishers import FramePublishers
from seem_ros.runtime.backends import apply_cpu_threads, backend_unavailable, create_predictor, describe_backend
from seem_ros.runtime.torch_thread import TorchThread
from seem_ros.throttled_log import ThrottledLog

EXECUTOR_THREADS = 8
# callbacks that must always find a thread: camera intake, prompt topics, lifecycle and parameter
# services, segment_image, diagnostics; prompt service callers wait on the others
PROMPT_SERVICE_THREADS = EXECUTOR_THREADS - 5
SHUTDOWN_GRACE_S = 1.0  # on SIGINT/SIGTERM the threads get this long to stop; then the process exits anyway
SUCCESS, FAILURE, ERROR = (TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE,
                           TransitionCallbackReturn.ERROR)


def _transition(name: str):
    """Lifecycle callback wrapper: transitions never overlap, and an exception becomes ERROR with
    its reason and traceback logged (rclpy would turn it into ERROR silently)."""
    def wrap(method):
        @functools.wraps(method)
        def run(self, state: State) -> TransitionCallbackReturn:
            with self._lifecycle_lock:
                try:
                    result = method(self, state)
                except Exception as exc:  # noqa: BLE001
                    self.get_logger().error(f"{name} failed: {type(exc).__name__}: {exc}\n{traceback.format_exc()}")
                    return ERROR
                if result != SUCCESS:
                    self.get_logger().error(f"{name} failed: the reason is logged above")
                return result
        return run
    return wrap


class SeemNode(LifecycleNode):
    def __init__(self, **kwargs):
        super().__init__("seem_node", **kwargs)
        declare_parameters(self)
        self.log = ThrottledLog(self.get_logger())
        self._lifecycle_lock = threading.RLock()
        # kept for the node's lifetime: counts add up across reconfigurations
        self.mailbox = LatestFrame()
        self.image_size = ImageSize()
        self.frame_counts = FrameCounts()
        self.frame_losses = FrameLosses()
        self.prompt_queue = PromptQueue()
        self.diagnostics = DiagnosticsReporter(self, self.mailbox, self.frame_counts, self.frame_losses,
                                               self.prompt_queue, self.log)
        self.point_transforms: Optional[PointTransforms] = None
        self.stop_timeout_s = 10.0  # how long deactivate, cleanup and error processing wait for the threads
        # all of the node's torch work, from loading the model on (runtime.torch_thread)
        self.torch_thread = TorchThread().start("seem_torch")
        self._reset_configured()
        self._reset_active()

    def _reset_configured(self) -> None:
        self.model: Optional[SharedModel] = None
        self.image_limits = ImageLimits()
        self.tracker = self.applier = self.prompt_services = self.frame_publishers = self.segment_service = None

    def _reset_active(self) -> None:
        self.worker: Optional[FrameWorker] = None
        self.frame_intake = self.prompt_intake = None

    # ------------------------------------------------------------------ lifecycle
    @_transition("configure")
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        p = self._param
        errors = parameter_errors(p)
        for error in errors:
            self.get_logger().error(error)
        if errors:
            return FAILURE
        self.get_logger().info(f"configuring: loading {p('checkpoint')} ({p('model_config')}, {p('backend')}, "
                               f"{p('device')}, {p('precision')})")
        cfg = backend_config(p)
        try:
            predictor = self.torch_thread.call(_load_predictor, cfg)
        except Exception as exc:  # noqa: BLE001 - any load failure leaves the node alive and unconfigured
            self.get_logger().error(f"cannot load the SEEM model: {exc}")
            self.get_logger().debug(traceback.format_exc())
            return FAILURE
        self.model = SharedModel(predictor, cfg, self.torch_thread)
        self.tracker, self.image_limits = object_tracker(p), image_limits(p)
        self.model.place(active=False)  # on the GPU only while active
        self.prompt_queue.capacity = int(p("prompt_queue_size"))
        self.applier = PromptApplier(self.prompt_queue, self.tracker, self.image_size, self.model.encode_reference,
                                     self.log, self.image_limits)
        self.applier.start()
        self.point_transforms = self.point_transforms or PointTransforms(self, self.log)
        self.prompt_services = PromptServices(self, self.prompt_queue, self.image_size, self.log, p("image_topic"),
                                              max_waiting=PROMPT_SERVICE_THREADS)
        self.segment_service = SegmentImageService(self, self.model, self.image_limits, self.log,
                                                   rle=p("mask_encoding") == "rle")
        self.frame_publishers = FramePublishers(self, p("mask_encoding"), bool(p("publish_overlay")),
                                                float(p("score_threshold")))
        self.diagnostics.start(self.model, self.tracker, float(p("stats_period")))
        backend, backend_warning = describe_backend(cfg, predictor)
        self.get_logger().info(f"SEEM {cfg.model_config} loaded from {cfg.checkpoint} (backend: {backend})")
        if backend_warning:
            self.get_logger().warning(backend_warning)
        if backend_unavailable(predictor):  # configured all the same: frames fail until it is reachable
            self.get_logger().error(f"{backend_unavailable(predictor)}; retried with backoff")
        return SUCCESS

    @_transition("activate")
    def on_activate(self, state: State) -> TransitionCallbackReturn:
        p = self._param
        self.model.place(active=True, tracker=self.tracker)
        camera_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(p("image_qos_depth")),
                                reliability=ReliabilityPolicy.BEST_EFFORT if p("image_qos_reliability") == "best_effort"
                                else ReliabilityPolicy.RELIABLE)
        self.worker = FrameWorker(self.mailbox, self.model, self.tracker, self.frame_publishers, self.image_size,
                                  self.frame_counts, self.log, self.image_limits,
                                  lock_canvas=p("input_canvas") == "auto")
        self.worker.start()
        self.model.active = True
        self.frame_intake = FrameIntake(self, self.mailbox, self.frame_losses, self.log, p("image_topic"),
                                        p("image_transport"), camera_qos)
        self.prompt_intake = PromptIntake(self, self.prompt_queue, self.image_size, self.log, p("image_topic"),
                                          p("camera_info_topic"), p("clicked_point_topic"), camera_qos,
                                          self.point_transforms.transform, p("detection_prompt_topic"))
        self.get_logger().info(f"processing {self.frame_intake.topic.removesuffix('/compressed')} "
                               f"({p('image_transport')})")
        return super().on_activate(state)

    @_transition("deactivate")
    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        if not self._stop_active(timeout=self.stop_timeout_s, stay_active_on_failure=True):
            return FAILURE  # still fully active: the lifecycle returns to active
        return super().on_deactivate(state)

    @_transition("cleanup")
    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        return SUCCESS if self._release_configured(timeout=self.stop_timeout_s) else FAILURE

    @_transition("shutdown")
    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        deadline = time.monotonic() + SHUTDOWN_GRACE_S
        stopped = self._stop_active(timeout=SHUTDOWN_GRACE_S)
        stopped = self._release_configured(timeout=max(deadline - time.monotonic(), 0.1)) and stopped
        if stopped:
            self.get_logger().info("shut down: frame worker and prompt applier joined, subscriptions, services "
                                   "and publishers destroyed")
        return SUCCESS if stopped else FAILURE

    @_transition("error processing")
    def on_error(self, state: State) -> TransitionCallbackReturn:
        self.get_logger().error("error processing: stopping and releasing everything; configure again to restart")
        stopped = self._stop_active(timeout=self.stop_timeout_s)
        return SUCCESS if self._release_configured(timeout=self.stop_timeout_s) and stopped else FAILURE

    def _stop_active(self, timeout: float, stay_active_on_failure: bool = False) -> bool:
        """Stops the frame worker, then frame and prompt intake; frees the GPU. When the worker does
        not stop in time (inference still running) and stay_active_on_failure, it goes on and
        nothing is torn down: the node stays fully active rather than half torn."""
        stopped = True
        if self.worker is not None:
            stopped = self.worker.stop(timeout)
            if not stopped:
                self.get_logger().error(f"the frame worker did not stop within {timeout:g} s (inference still running)"
                                        + ("; staying active" if stay_active_on_failure else ""))
                if stay_active_on_failure:
                    self.worker.resume()
                    return False
        for intake in (self.frame_intake, self.prompt_intake):
            if intake is not None:
                intake.destroy()
        self.frame_counts.add("abandoned", self.mailbox.clear())  # arrived while the worker stopped
        self._reset_active()
        if self.model is not None:
            self.model.active = False
            if stopped:
                self.model.place(active=False, tracker=self.tracker)
        return stopped

    def _release_configured(self, timeout: float) -> bool:
        stopped = self.applier.stop(timeout) if self.applier is not None else True
        if not stopped:
            self.get_logger().error(f"the prompt applier did not stop within {timeout:g} s")
        for part in (self.prompt_services, self.frame_publishers, self.segment_service):
            if part is not None:
                part.destroy()
        self.diagnostics.stop()
        self._reset_configured()
        return stopped

    def autostart(self, stop: threading.Event) -> None:
        """configure + activate, as `ros2 run` users expect; a failure leaves the node up to be configured."""
        if self.trigger_configure() != SUCCESS:
            self.get_logger().error("not configured; fix the parameters and configure through the lifecycle services")
        elif not stop.is_set():
            self.trigger_activate()

    def shut_down(self, deadline: float) -> bool:
        """The lifecycle shutdown transition from whatever state the node is in, waiting (until
        `deadline`, monotonic) for a transition in progress. False if something did not stop."""
        while self._lifecycle_lock.acquire(timeout=max(deadline - time.monotonic(), 0.0)):
            self._lifecycle_lock.release()
            service = self.segment_service  # released by the shutdown; its calls may still be running
            try:
                return self.trigger_shutdown() == SUCCESS and (service is None or service.calls == 0)
            except Exception:  # noqa: BLE001 - a transition started meanwhile: wait for it and try again
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.01)
        self.get_logger().error("a lifecycle transition was still running at shutdown")
        return False

    def _param(self, name: str):
        return self.get_parameter(name).value

    def destroy_node(self) -> None:
        self.torch_thread.stop()
        super().destroy_node()


def _load_predictor(cfg):
    apply_cpu_threads(cfg)
    return create_predictor(cfg)


def run(stop: threading.Event, args=None) -> None:
    """Runs seem_node until `stop` is set (by SIGINT/SIGTERM, see process.py), then goes through
    the lifecycle shutdown."""
    # rclpy's own signal handlers would shut the context down under the running threads
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    node = SeemNode()
    executor = MultiThreadedExecutor(num_threads=EXECUTOR_THREADS)
    executor.add_node(node)
    starter = threading.Thread(target=node.autostart, args=(stop,), name="seem_autostart", daemon=True)
    starter.start()
    while not stop.is_set() and rclpy.ok():
        try:
            executor.spin_once(timeout_sec=0.05)
        except Exception:  # noqa: BLE001 - every callback is guarded; this is the last line of defence
            traceback.print_exc()
    node.get_logger().info("shutting down")
    deadline = time.monotonic() + SHUTDOWN_GRACE_S
    starter.join(max(deadline - time.monotonic(), 0.0))
    clean = not starter.is_alive() and node.shut_down(deadline)
    remaining = max(deadline - time.monotonic(), 0.0)
    if "wait_for_threads" in inspect.signature(executor.shutdown).parameters:
        executor.shutdown(timeout_sec=remaining, wait_for_threads=clean)
    else:  # rclpy 7 (Jazzy): no such argument, and its shutdown never waits for the executor's threads
        executor.shutdown(timeout_sec=remaining)
    if not clean:
        # a thread is still inside the model (torch): letting the interpreter tear down under it
        # aborts the process, so leave now; everything that could be released was released
        node.get_logger().error("stopped while the model was still running; exiting without waiting for it")
    node.destroy_node()
    rclpy.try_shutdown()
    if not clean:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)

"""seem_node: SEEM promptable segmentation as a ROS 2 lifecycle node.

configure loads the model and opens the prompt services, activate starts taking camera frames and
prompt topics, deactivate stops them and frees GPU memory, cleanup releases the model. `main`
autostarts (configure + activate) and stops through the lifecycle shutdown on SIGINT/SIGTERM.
The node only wires the parts: ros_in (intake) -> prompts (ordered queue, applier) -> model ->
runtime (frame worker) -> tracking -> ros_out (publishers, diagnostics).
"""
import contextlib
import functools
import os
import sys
import threading
import time
import traceback
from typing import Optional

import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import PointStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode, State, TransitionCallbackReturn
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from std_msgs.msg import Header

from seem_ros_interfaces.srv import SegmentImage

from seem_ros.node.applier import PromptApplier
from seem_ros.node.frame_worker import FrameCounts, FrameWorker
from seem_ros.node.parameters import PARAMETERS, parameter_errors, parse_canvas
from seem_ros.node.prompt_intake import PromptIntake, PromptServices
from seem_ros.node.segment_image import segment_once
from seem_ros.prompts.queue import PromptQueue
from seem_ros.ros_in.camera import FrameIntake, FrameLosses
from seem_ros.ros_in.image_conversion import ImageConversionError, ImageLimits, compressed_to_rgb, image_to_rgb
from seem_ros.ros_in.latest_frame import ImageSize, LatestFrame
from seem_ros.ros_in.prompt_messages import PromptError, parse_prompt
from seem_ros.ros_out.diagnostics import NodeCounts, diagnostic_status
from seem_ros.ros_out.publishers import FramePublishers, result_message
from seem_ros.runtime.backends import BackendConfig, create_predictor, describe_backend, inference_context, move_predictor
from seem_ros.throttled_log import ThrottledLog, failed_response, guarded
from seem_ros.tracking.tracker import ObjectTracker

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
        for name, (default, description) in PARAMETERS.items():
            self.declare_parameter(name, default, _descriptor(description))
        self.log = ThrottledLog(self.get_logger())
        self._lifecycle_lock = threading.RLock()
        self.model_lock = threading.Lock()
        # kept for the node's lifetime: counts add up across reconfigurations
        self.mailbox = LatestFrame()
        self.image_size = ImageSize()
        self.frame_counts = FrameCounts()
        self.frame_losses = FrameLosses()
        self.prompt_queue = PromptQueue()
        self._report_base = (NodeCounts(), time.monotonic())
        self._segment_calls = 0  # segment_image calls running (they outlive a shutdown otherwise unnoticed)
        self._reset_configured()
        self._reset_active()
        self._tf_buffer = None
        self.stop_timeout_s = 10.0  # how long deactivate, cleanup and error processing wait for the threads

    def _reset_configured(self) -> None:
        self.cfg: Optional[BackendConfig] = None
        self.predictor = None
        self.tracker: Optional[ObjectTracker] = None
        self.image_limits = ImageLimits()
        self.applier: Optional[PromptApplier] = None
        self.prompt_services: Optional[PromptServices] = None
        self.frame_publishers: Optional[FramePublishers] = None
        self._segment_service = None
        self._diagnostics = None
        self._diagnostics_timer = None

    def _reset_active(self) -> None:
        self.worker: Optional[FrameWorker] = None
        self.frame_intake: Optional[FrameIntake] = None
        self.prompt_intake: Optional[PromptIntake] = None

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
        cfg = BackendConfig(
            canvas=parse_canvas(p("input_canvas")) or None,
            checkpoint=p("checkpoint"), model_config=p("model_config"), backend=p("backend"), device=p("device"),
            precision=p("precision"), cuda_graphs=bool(p("cuda_graphs")), short_side=int(p("input_short_side")),
            vocabulary=tuple(v for v in p("vocabulary") if v), engine_cache_dir=os.path.expanduser(p("engine_cache_dir")),
            decoder_slots=(int(p("decoder_text_slots")), int(p("decoder_visual_slots"))),
            embedding_cache_dir=os.path.expanduser(p("embedding_cache_dir")))
        try:
            predictor = create_predictor(cfg)
        except Exception as exc:  # noqa: BLE001 - any load failure leaves the node alive and unconfigured
            self.get_logger().error(f"cannot load the SEEM model: {exc}")
            self.get_logger().debug(traceback.format_exc())
            return FAILURE
        if cfg.device.startswith("cuda"):
            move_predictor(predictor, "cpu")  # on the GPU only while active
        self.cfg, self.predictor = cfg, predictor
        self.tracker = ObjectTracker(int(p("max_objects")), lost_after=int(p("track_lost_after")),
                                     remove_after=int(p("track_remove_after")), min_score=float(p("track_min_score")),
                                     detection_threshold=float(p("detection_threshold")),
                                     match_iou=float(p("track_match_iou")), merge_iou=float(p("track_merge_iou")),
                                     ground_every=int(p("ground_every")), reground_below=float(p("reground_below")),
                                     follow_memory=bool(p("track_follow_memory")),
                                     reidentify_every=int(p("track_reidentify_every")),
                                     reidentify_min_score=float(p("track_reidentify_score")))
        self.image_limits = ImageLimits(int(p("max_image_pixels")), float(p("max_image_aspect_ratio")))
        self.prompt_queue.capacity = int(p("prompt_queue_size"))
        self.applier = PromptApplier(self.prompt_queue, self.tracker, self.image_size, self._encode_reference,
                                     self.log, self.image_limits)
        self.applier.start()
        self._listen_to_tf()
        self.prompt_services = PromptServices(self, self.prompt_queue, self.image_size, self.log, p("image_topic"),
                                              max_waiting=PROMPT_SERVICE_THREADS)
        self._segment_service = self.create_service(
            SegmentImage, "~/segment_image", guarded(self.log, "segment_image", self._on_segment_image, failed_response),
            callback_group=MutuallyExclusiveCallbackGroup())
        self.frame_publishers = FramePublishers(self, p("mask_encoding"), bool(p("publish_overlay")),
                                          float(p("score_threshold")))
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diagnostics_timer = self.create_timer(float(p("stats_period")), guarded(
            self.log, "diagnostics", self._report), callback_group=MutuallyExclusiveCallbackGroup())
        backend, backend_warning = describe_backend(cfg, predictor)
        self.get_logger().info(f"SEEM {cfg.model_config} loaded from {cfg.checkpoint} (backend: {backend})")
        if backend_warning:
            self.get_logger().warning(backend_warning)
        return SUCCESS

    @_transition("activate")
    def on_activate(self, state: State) -> TransitionCallbackReturn:
        p = self._param
        if self.cfg.device.startswith("cuda"):
            move_predictor(self.predictor, self.cfg.device)
            self.tracker.to(self.cfg.device)
        camera_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(p("image_qos_depth")),
                                reliability=ReliabilityPolicy.BEST_EFFORT if p("image_qos_reliability") == "best_effort"
                                else ReliabilityPolicy.RELIABLE)
        self.worker = FrameWorker(self.mailbox, self._convert, self.predictor, self.tracker, self.model_lock,
                                  lambda: inference_context(self.cfg), self._publish, self.image_size,
                                  self.frame_counts, self.log, lock_canvas=p("input_canvas") == "auto")
        self.worker.start()
        self.frame_intake = FrameIntake(self, self.mailbox, self.frame_losses, self.log, p("image_topic"),
                                        p("image_transport"), camera_qos)
        self.prompt_intake = PromptIntake(self, self.prompt_queue, self.image_size, self.log, p("image_topic"),
                                          p("camera_info_topic"), p("clicked_point_topic"), camera_qos,
                                          self._transform)
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
        if stopped and self.cfg is not None and self.cfg.device.startswith("cuda"):
            with self.model_lock:
                move_predictor(self.predictor, "cpu")
                self.tracker.to("cpu")
        return stopped

    def _release_configured(self, timeout: float) -> bool:
        stopped = self.applier.stop(timeout) if self.applier is not None else True
        if not stopped:
            self.get_logger().error(f"the prompt applier did not stop within {timeout:g} s")
        if self.prompt_services is not None:
            self.prompt_services.destroy()
        if self.frame_publishers is not None:
            self.frame_publishers.destroy()
        for entity, destroy in ((self._segment_service, self.destroy_service),
                                (self._diagnostics, self.destroy_publisher),
                                (self._diagnostics_timer, self.destroy_timer)):
            if entity is not None:
                destroy(entity)
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
            try:
                return self.trigger_shutdown() == SUCCESS and self._segment_calls == 0
            except Exception:  # noqa: BLE001 - a transition started meanwhile: wait for it and try again
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.01)
        self.get_logger().error("a lifecycle transition was still running at shutdown")
        return False

    # ------------------------------------------------------------------ frames
    def _convert(self, msg):
        if hasattr(msg, "format"):  # CompressedImage
            return compressed_to_rgb(msg, self.image_limits)
        return image_to_rgb(msg, self.image_limits)

    def _publish(self, header, rgb, objects, elapsed) -> None:
        self.frame_publishers.publish(header, rgb, objects, elapsed, list(self.tracker.labels()))

    def _needs_engines_on_the_gpu(self) -> None:
        """TensorRT engines run on the GPU only, where the model is only while the node is active."""
        if self.worker is None and self.cfg.backend == "tensorrt":
            raise PromptError("the node is inactive: its TensorRT engines run only while it is active (the model "
                              "is off the GPU); activate it first")

    def _encode_reference(self, rgb, mask):
        self._needs_engines_on_the_gpu()
        with self.model_lock, inference_context(self.cfg):
            return self.predictor.encode_reference(rgb, mask)

    # ------------------------------------------------------------------ services
    def _on_segment_image(self, request, response):
        self._segment_calls += 1
        try:
            self._needs_engines_on_the_gpu()
            rgb = image_to_rgb(request.image, self.image_limits)
            prompt = request.prompt
            parsed = parse_prompt(prompt, rgb.shape[:2], self.image_limits) if _has_prompt(prompt) else None
            start = time.perf_counter()
            with self.model_lock, inference_context(self.cfg), self._one_shot_path():
                objects = segment_once(self.predictor, rgb, parsed)
            response.result = result_message(request.image.header, rgb.shape[0], rgb.shape[1], objects,
                                             time.perf_counter() - start, self._param("mask_encoding") == "rle")
            response.success, response.message = True, f"{len(objects)} objects"
        except (ImageConversionError, PromptError, ValueError) as exc:
            response.success, response.message = False, str(exc)
            self.log.warning(f"segment_image refused: {exc}")
        except torch.cuda.OutOfMemoryError as exc:
            torch.cuda.empty_cache()
            response.success, response.message = False, f"out of GPU memory: {exc}"
            self.log.exception("segment_image", exc)
        finally:
            self._segment_calls -= 1
        return response

    @contextlib.contextmanager
    def _one_shot_path(self):
        """An image on demand never exports, builds or captures a graph inside this callback (camera
        frames and prompt services would wait minutes on a Jetson, and every new size would stay
        cached): with the stream's canvas set, it is letterboxed into it and the stream's graphs or
        engines serve it; before one is set, it runs on the torch path, padded on its own."""
        predictor = self.predictor
        if predictor.canvas is not None:
            yield
            return
        saved = predictor.image_encoder, predictor.engine.run_slots
        predictor.image_encoder, predictor.engine.run_slots = predictor.model.encode_image, predictor.engine.decode_slots
        try:
            yield
        finally:
            predictor.image_encoder, predictor.engine.run_slots = saved

    # ------------------------------------------------------------------ RViz points
    def _listen_to_tf(self) -> None:
        """At configure: a listener created at the first click would have no transforms yet for it."""
        if self._tf_buffer is not None:
            return
        try:
            import tf2_geometry_msgs  # noqa: F401 - registers PointStamped with tf2
            import tf2_ros
        except ImportError:
            return  # said when a point needs a transform
        self._tf_buffer = tf2_ros.Buffer()
        self._tf_listener = tf2_ros.TransformListener(self._tf_buffer, self)

    def _transform(self, msg: PointStamped, target: str):
        if self._tf_buffer is None:
            self.log.warning(
                f"clicked point in {msg.header.frame_id!r} needs a transform to the camera frame {target!r}, "
                "but tf2_ros is not installed; publish points in the camera optical frame")
            return None
        try:
            p = self._tf_buffer.transform(msg, target).point
            return p.x, p.y, p.z
        except Exception as exc:  # noqa: BLE001 - tf2 raises several unrelated types
            self.log.warning(f"clicked point ignored: no transform {msg.header.frame_id!r} -> {target!r}: {exc}")
            return None

    # ------------------------------------------------------------------ diagnostics
    def counts(self) -> NodeCounts:
        frames = self.frame_counts.snapshot()
        prompts = self.prompt_queue.snapshot()
        return NodeCounts(
            frames_received=self.mailbox.received, frames_processed=frames["processed"],
            frames_replaced=self.mailbox.replaced, frames_refused=frames["refused"], frames_failed=frames["failed"],
            frames_abandoned=frames["abandoned"], frames_lost_in_transport=self.frame_losses.lost_in_transport,
            frames_missed=self.frame_losses.gaps.missed, prompts_received=prompts.received,
            prompts_applied=prompts.applied, prompts_refused=prompts.refused, prompts_dropped=prompts.dropped)

    def _report(self) -> None:
        self.log.flush()
        total, now = self.counts(), time.monotonic()
        before, since = self._report_base
        period = total.minus(before)
        seconds = max(now - since, 1e-6)
        backend, backend_warning = describe_backend(self.cfg, self.predictor)
        status = diagnostic_status(
            f"{self.get_name()}: SEEM segmentation", self.cfg.device, total, period, seconds,
            self.frame_counts.latencies(period.frames_processed), self.frame_counts.last_failure,
            backend, backend_warning, len(self.tracker), self.prompt_queue.pending())
        if self.worker is None:
            status.message = f"inactive; {status.message}"
        self._diagnostics.publish(DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()),
                                                  status=[status]))
        summary = f"{status.message}: " + ", ".join(f"{kv.key} {kv.value}" for kv in status.values[:6])
        if status.level == DiagnosticStatus.OK:
            self.get_logger().info(summary)
        else:
            self.get_logger().warning(summary)
        self._report_base = (total, now)

    def _param(self, name: str):
        return self.get_parameter(name).value


def _descriptor(description: str):
    from rcl_interfaces.msg import ParameterDescriptor
    return ParameterDescriptor(description=description)


def _has_prompt(msg) -> bool:
    return bool(msg.text.strip() or msg.positive_points or msg.negative_points or len(msg.boxes) or msg.scribbles
                or msg.mask.width or msg.reference_image.width)


def run(stop: threading.Event, args=None) -> None:
    """Runs seem_node until `stop` is set (by SIGINT/SIGTERM, see node_process), then goes through
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
    executor.shutdown(timeout_sec=max(deadline - time.monotonic(), 0.0), wait_for_threads=clean)
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

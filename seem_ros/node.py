"""seem_node: SEEM promptable segmentation as a ROS 2 lifecycle node.

configure loads the model, activate starts processing camera frames, deactivate stops and frees
GPU memory, cleanup releases the model. `main` autostarts (configure + activate).
The node only wires ROS to the parts: ros_in (conversion, prompts) -> tracking -> ros_out; the
model math lives in seem_ros.model.
"""
import os
import threading
import time
from typing import List, Optional, Tuple

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, PointStamped
from rclpy.executors import MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode, State, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, RegionOfInterest
from std_msgs.msg import String
from std_srvs.srv import Trigger

from seem_ros_interfaces.msg import LabelInfo, SegmentationPrompt, SegmentationResult, SegmentedObject
from seem_ros_interfaces.srv import SegmentImage, SetPrompt

from .model.predictor import VisualPrompt
from .prompts.text_commands import CommandError, parse_command
from .ros_in.image_conversion import ImageConversionError, compressed_to_rgb, image_to_rgb
from .ros_in.latest_frame import LatestFrame
from .ros_in.prompt_messages import PromptError, check_pixel, parse_prompt, project_to_pixel
from .ros_out.encoding import bounding_box, encode_rle, label_image, overlay
from .runtime.backends import BackendConfig, create_predictor, inference_context
from .tracking.tracker import FrameObject, ObjectTracker

PARAMETERS = {
    # name: (default, description)
    "checkpoint": ("seem_focalt_v1.pt", "checkpoint path, or a released file name fetched from the hub"),
    "model_config": ("focalt_v1", "variant (focalt_v1, focall_v1, samvitb_v1, samvitl_v1, davitd3_v1) or official YAML"),
    "backend": ("torch", "torch, onnxruntime or tensorrt"),
    "device": ("cpu", "cpu or cuda[:N]"),
    "precision": ("fp32", "fp32 or fp16 (CUDA autocast)"),
    "input_short_side": (512, "model input short side in pixels"),
    "vocabulary": ([""], "class names for segment-everything; empty = COCO panoptic"),
    "engine_cache_dir": ("", "where ONNX/TensorRT encoders are cached; empty = a temporary folder"),
    "embedding_cache_dir": ("~/.cache/seem_ros", "where vocabulary embeddings are cached; empty = no cache"),
    "image_topic": ("image", "camera image topic"),
    "image_transport": ("raw", "raw (sensor_msgs/Image) or compressed (<image_topic>/compressed)"),
    "camera_info_topic": ("camera_info", "CameraInfo, used to project RViz clicked points"),
    "clicked_point_topic": ("/clicked_point", "RViz Publish Point topic"),
    "image_qos_reliability": ("best_effort", "best_effort (sensor data) or reliable"),
    "image_qos_depth": (1, "image subscription queue depth"),
    "score_threshold": (0.0, "objects scoring below are not published"),
    "max_objects": (16, "most objects tracked at once"),
    "mask_encoding": ("image", "image (mono8 mask per object) or rle"),
    "publish_overlay": (True, "publish the debug overlay (only while subscribed)"),
    "stats_period": (10.0, "seconds between diagnostics/log summaries"),
}


class SeemNode(LifecycleNode):
    def __init__(self, **kwargs):
        super().__init__("seem_node", **kwargs)
        for name, (default, description) in PARAMETERS.items():
            self.declare_parameter(name, default, _descriptor(description))
        self.frames = LatestFrame()
        self.tracker = ObjectTracker()
        self.predictor = None
        self.backend_cfg: Optional[BackendConfig] = None
        self._model_lock = threading.Lock()
        self._worker: Optional[threading.Thread] = None
        self._running = threading.Event()
        self._pubs = {}
        self._subs = []
        self._seem_services = []
        self._image_size: Optional[Tuple[int, int]] = None
        self._camera_info: Optional[CameraInfo] = None
        self._published_labels = None
        self._stats = {"processed": 0, "latency": 0.0, "since": time.monotonic(), "received": 0, "dropped": 0}
        self._stats_timer = None
        self._tf_buffer = None
        self._last_warned = {}

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        p = self._param
        cfg = BackendConfig(
            checkpoint=p("checkpoint"), model_config=p("model_config"), backend=p("backend"), device=p("device"),
            precision=p("precision"), short_side=int(p("input_short_side")),
            vocabulary=tuple(v for v in p("vocabulary") if v), engine_cache_dir=p("engine_cache_dir"),
            embedding_cache_dir=os.path.expanduser(p("embedding_cache_dir")))
        for name, allowed in (("image_transport", ("raw", "compressed")), ("mask_encoding", ("image", "rle")),
                              ("image_qos_reliability", ("best_effort", "reliable"))):
            if p(name) not in allowed:
                self.get_logger().error(f"parameter {name} must be one of {allowed}, got {p(name)!r}")
                return TransitionCallbackReturn.FAILURE
        try:
            self.predictor = create_predictor(cfg)
        except Exception as exc:  # any load failure leaves the node alive and unconfigured
            self.get_logger().error(f"cannot load the SEEM model: {exc}")
            return TransitionCallbackReturn.FAILURE
        self.backend_cfg = cfg
        self.tracker = ObjectTracker(int(p("max_objects")))
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                             reliability=ReliabilityPolicy.RELIABLE)
        self._pubs = {
            "result": self.create_publisher(SegmentationResult, "~/result", 10),
            "labels": self.create_publisher(Image, "~/label_image", 10),
            "label_info": self.create_publisher(LabelInfo, "~/label_info", latched),
            "overlay": self.create_publisher(Image, "~/overlay", 10),
            "diagnostics": self.create_publisher(DiagnosticArray, "/diagnostics", 10),
        }
        self._seem_services = [
            self.create_service(SetPrompt, "~/set_prompt", self._on_set_prompt),
            self.create_service(Trigger, "~/clear_prompts", self._on_clear),
            self.create_service(Trigger, "~/reset_tracking", self._on_reset),
            self.create_service(SegmentImage, "~/segment_image", self._on_segment_image),
        ]
        self.get_logger().info(f"SEEM {cfg.model_config} loaded from {cfg.checkpoint} "
                               f"({cfg.backend}, {cfg.device}, {cfg.precision})")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        p = self._param
        if self.backend_cfg.device.startswith("cuda"):
            self.predictor.model.to(self.backend_cfg.device)
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(p("image_qos_depth")),
                         reliability=ReliabilityPolicy.BEST_EFFORT if p("image_qos_reliability") == "best_effort"
                         else ReliabilityPolicy.RELIABLE)
        topic = p("image_topic")
        if p("image_transport") == "compressed":
            self._subs.append(self.create_subscription(CompressedImage, f"{topic}/compressed", self.frames.put, qos))
        else:
            self._subs.append(self.create_subscription(Image, topic, self.frames.put, qos))
        self._subs += [
            self.create_subscription(CameraInfo, p("camera_info_topic"), self._on_camera_info, qos),
            self.create_subscription(Point, f"{topic}_mouse_left", self._on_image_click, 10),
            self.create_subscription(PointStamped, p("clicked_point_topic"), self._on_clicked_point, 10),
            self.create_subscription(String, "~/command", self._on_command, 10),
            self.create_subscription(SegmentationPrompt, "~/prompt", self._on_prompt, 10),
        ]
        self._running.set()
        self._worker = threading.Thread(target=self._work, name="seem_worker", daemon=True)
        self._worker.start()
        self._stats_timer = self.create_timer(float(p("stats_period")), self._report_stats)
        self.get_logger().info(f"processing {topic} ({p('image_transport')})")
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._stop_processing()
        if self.backend_cfg.device.startswith("cuda"):
            import torch
            self.predictor.model.to("cpu")  # frees the GPU until activated again
            torch.cuda.empty_cache()
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self._stop_processing()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _stop_processing(self) -> None:
        self._running.clear()
        if self._worker is not None:
            self._worker.join(timeout=30)
            self._worker = None
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []
        if self._stats_timer is not None:
            self.destroy_timer(self._stats_timer)
            self._stats_timer = None
        self.frames.clear()

    def _release(self) -> None:
        for pub in self._pubs.values():
            self.destroy_publisher(pub)
        for srv in self._seem_services:
            self.destroy_service(srv)
        self._pubs, self._seem_services = {}, []
        self.predictor = None
        self._published_labels = None

    # ------------------------------------------------------------------ processing
    def _work(self) -> None:
        while self._running.is_set():
            msg = self.frames.take(timeout=0.1)
            if msg is None:
                continue
            try:
                self._process(msg)
            except Exception as exc:  # never let one frame kill the worker
                self.get_logger().error(f"frame skipped: {type(exc).__name__}: {exc}")

    def _to_rgb(self, msg) -> Optional[np.ndarray]:
        try:
            return compressed_to_rgb(msg) if isinstance(msg, CompressedImage) else image_to_rgb(msg)
        except ImageConversionError as exc:
            self._warn_throttled(f"camera image ignored: {exc}")
            return None

    def _process(self, msg) -> None:
        rgb = self._to_rgb(msg)
        if rgb is None:
            return
        self._image_size = rgb.shape[:2]
        start = time.perf_counter()
        with self._model_lock, inference_context(self.backend_cfg):
            self.predictor.set_image(rgb)
            objects = self.tracker.step(self.predictor)
        elapsed = time.perf_counter() - start
        threshold = float(self._param("score_threshold"))
        objects = [o for o in objects if o.score >= threshold]
        self._publish(msg.header, rgb, objects, elapsed)
        self._stats["processed"] += 1
        self._stats["latency"] += elapsed

    def _publish(self, header, rgb: np.ndarray, objects: List[FrameObject], elapsed: float) -> None:
        h, w = rgb.shape[:2]
        self._pubs["result"].publish(self._result_msg(header, h, w, objects, elapsed))
        self._pubs["labels"].publish(_image_msg(header, label_image((h, w), objects), "mono16"))
        labels = self.tracker.labels()
        if labels != self._published_labels:
            info = LabelInfo(header=header, ids=list(labels), labels=list(labels.values()))
            self._pubs["label_info"].publish(info)
            self._published_labels = labels
        if self._param("publish_overlay") and self._pubs["overlay"].get_subscription_count() > 0:
            self._pubs["overlay"].publish(_image_msg(header, overlay(rgb, objects), "bgr8"))

    def _result_msg(self, header, h: int, w: int, objects: List[FrameObject], elapsed: float) -> SegmentationResult:
        rle = self._param("mask_encoding") == "rle"
        out = SegmentationResult(header=header, height=h, width=w, inference_time=float(elapsed))
        for obj in objects:
            x, y, bw, bh = bounding_box(obj.mask)
            item = SegmentedObject(id=obj.id, label=obj.label, score=float(obj.score),
                                   bbox=RegionOfInterest(x_offset=x, y_offset=y, width=bw, height=bh))
            if rle:
                item.rle = encode_rle(obj.mask)
            else:
                item.mask = _image_msg(header, obj.mask.astype(np.uint8) * 255, "mono8")
            out.objects.append(item)
        return out

    # ------------------------------------------------------------------ prompts
    def _on_command(self, msg: String) -> None:
        try:
            command = parse_command(msg.data)
        except CommandError as exc:
            self.get_logger().warning(f"command ignored: {exc}")
            return
        if command.action == "clear":
            self.tracker.clear()
        elif command.action == "remove":
            for phrase in command.phrases:
                if not self.tracker.remove_label(phrase):
                    self.get_logger().warning(f"'stop tracking {phrase}': no such object "
                                              f"(tracked: {list(self.tracker.labels().values()) or 'none'})")
        else:
            for phrase in command.phrases:
                self._add_object(phrase, text=phrase)
        self.get_logger().info(f"command {msg.data!r}: objects now {self.tracker.labels()}")

    def _add_object(self, label: str, **kwargs) -> Optional[int]:
        try:
            return self.tracker.add(label, **kwargs)
        except ValueError as exc:
            self.get_logger().warning(f"object {label!r} not added: {exc}")
            return None

    def _on_image_click(self, msg: Point) -> None:
        try:
            x, y = check_pixel(msg.x, msg.y, self._image_size)
        except PromptError as exc:
            self.get_logger().warning(f"click ignored: {exc}")
            return
        self._add_object("object", visual=VisualPrompt(points=[(x, y, 1)]))

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_info = msg

    def _on_clicked_point(self, msg: PointStamped) -> None:
        info = self._camera_info
        if info is None:
            self.get_logger().warning("clicked point ignored: no CameraInfo received yet on "
                                      f"{self._param('camera_info_topic')!r}, so it cannot be projected into the image")
            return
        point = (msg.point.x, msg.point.y, msg.point.z)
        if msg.header.frame_id and info.header.frame_id and msg.header.frame_id != info.header.frame_id:
            point = self._transform(msg, info.header.frame_id)
            if point is None:
                return
        try:
            u, v = project_to_pixel(point, tuple(info.k))
            x, y = check_pixel(u, v, self._image_size, "clicked point")
        except PromptError as exc:
            self.get_logger().warning(f"clicked point ignored: {exc}")
            return
        self._add_object("object", visual=VisualPrompt(points=[(x, y, 1)]))

    def _transform(self, msg: PointStamped, target: str):
        try:
            import tf2_geometry_msgs  # noqa: F401 - registers PointStamped with tf2
            import tf2_ros
        except ImportError:
            self.get_logger().warning(
                f"clicked point in {msg.header.frame_id!r} needs a transform to the camera frame {target!r}, "
                "but tf2_ros is not installed; publish points in the camera optical frame")
            return None
        if self._tf_buffer is None:
            self._tf_buffer = tf2_ros.Buffer()
            self._tf_listener = tf2_ros.TransformListener(self._tf_buffer, self)
        try:
            p = self._tf_buffer.transform(msg, target).point
            return p.x, p.y, p.z
        except Exception as exc:
            self.get_logger().warning(f"clicked point ignored: no transform {msg.header.frame_id!r} -> {target!r}: {exc}")
            return None

    def _apply_prompt(self, msg: SegmentationPrompt, replace: bool = False) -> List[int]:
        parsed = parse_prompt(msg, self._image_size)
        if replace:  # only once the new prompt is known to be usable
            self.tracker.clear()
        if parsed.object_id:
            if parsed.visual is None:
                raise PromptError("refining an object needs clicks, a box, scribbles or a mask")
            try:
                self.tracker.refine(parsed.object_id, parsed.visual)
            except KeyError as exc:
                raise PromptError(str(exc.args[0])) from exc
            return [parsed.object_id]
        reference = None
        if parsed.reference is not None:
            with self._model_lock, inference_context(self.backend_cfg):
                reference = self.predictor.encode_reference(*parsed.reference)
        object_id = self.tracker.add(parsed.label, text=parsed.text, visual=parsed.visual, reference=reference,
                                     track=parsed.track)
        return [object_id]

    def _on_prompt(self, msg: SegmentationPrompt) -> None:
        try:
            ids = self._apply_prompt(msg)
            self.get_logger().info(f"prompt accepted: object(s) {ids}")
        except (PromptError, ValueError) as exc:
            self.get_logger().warning(f"prompt ignored: {exc}")

    def _on_set_prompt(self, request, response):
        try:
            response.object_ids = self._apply_prompt(request.prompt, request.replace)
            response.success, response.message = True, "ok"
        except (PromptError, ValueError) as exc:
            response.success, response.message = False, str(exc)
            self.get_logger().warning(f"set_prompt refused: {exc}")
        return response

    def _on_clear(self, request, response):
        self.tracker.clear()
        response.success, response.message = True, "all prompts cleared"
        return response

    def _on_reset(self, request, response):
        self.tracker.reset()
        response.success, response.message = True, "tracking reset"
        return response

    def _on_segment_image(self, request, response):
        try:
            rgb = image_to_rgb(request.image)
            parsed = parse_prompt(request.prompt, rgb.shape[:2]) if _has_prompt(request.prompt) else None
            start = time.perf_counter()
            with self._model_lock, inference_context(self.backend_cfg):
                self.predictor.set_image(rgb)
                objects = self._segment_once(rgb, parsed)
            response.result = self._result_msg(request.image.header, rgb.shape[0], rgb.shape[1], objects,
                                               time.perf_counter() - start)
            response.success, response.message = True, f"{len(objects)} objects"
        except (ImageConversionError, PromptError, ValueError) as exc:
            response.success, response.message = False, str(exc)
            self.get_logger().warning(f"segment_image refused: {exc}")
        return response

    def _segment_once(self, rgb: np.ndarray, parsed) -> List[FrameObject]:
        """One image, no tracking state: the prompt's object, or everything (panoptic) without one."""
        if parsed is None:
            panoptic, _ = self.predictor.segment_everything()
            ids = _resize_nearest(panoptic.id_map.numpy(), rgb.shape[:2])
            names = self.predictor.class_names
            return [FrameObject(s.id, names[s.category_id], ids == s.id, s.score) for s in panoptic.segments]
        tracker = ObjectTracker()
        reference = self.predictor.encode_reference(*parsed.reference) if parsed.reference else None
        tracker.add(parsed.label, text=parsed.text, visual=parsed.visual, reference=reference)
        return tracker.step(self.predictor)

    # ------------------------------------------------------------------ diagnostics
    def _report_stats(self) -> None:
        now = time.monotonic()
        period = max(now - self._stats["since"], 1e-6)
        received = self.frames.received - self._stats["received"]
        dropped = self.frames.dropped - self._stats["dropped"]
        processed = self._stats["processed"]
        latency = self._stats["latency"] / processed if processed else 0.0
        values = {"frame rate in (Hz)": received / period, "frame rate out (Hz)": processed / period,
                  "dropped frames": dropped, "dropped frames total": self.frames.dropped,
                  "mean inference latency (ms)": latency * 1000, "tracked objects": len(self.tracker.labels())}
        status = DiagnosticStatus(level=DiagnosticStatus.OK, name=f"{self.get_name()}: SEEM segmentation",
                                  hardware_id=self.backend_cfg.device if self.backend_cfg else "",
                                  message="processing" if processed else "no frames processed",
                                  values=[KeyValue(key=k, value=f"{v:.2f}" if isinstance(v, float) else str(v))
                                          for k, v in values.items()])
        if self._pubs.get("diagnostics"):
            self._pubs["diagnostics"].publish(DiagnosticArray(header=_stamp(self), status=[status]))
        self.get_logger().info(", ".join(f"{k} {status.values[i].value}" for i, k in enumerate(values)))
        self._stats.update(processed=0, latency=0.0, since=now, received=self.frames.received,
                           dropped=self.frames.dropped)

    def _warn_throttled(self, text: str, period: float = 5.0) -> None:
        """A camera repeating the same fault logs it once per period; a new fault logs at once."""
        now = time.monotonic()
        if now - self._last_warned.get(text, -period) >= period:
            self._last_warned[text] = now
            self.get_logger().warning(text)

    def _param(self, name: str):
        return self.get_parameter(name).value


def _descriptor(description: str):
    from rcl_interfaces.msg import ParameterDescriptor
    return ParameterDescriptor(description=description)


def _stamp(node):
    from std_msgs.msg import Header
    return Header(stamp=node.get_clock().now().to_msg())


def _has_prompt(msg) -> bool:
    return bool(msg.text.strip() or msg.positive_points or msg.negative_points or len(msg.boxes) or msg.scribbles
                or msg.mask.width or msg.reference_image.width)


def _resize_nearest(ids: np.ndarray, shape: Tuple[int, int]) -> np.ndarray:
    import cv2
    if ids.shape == tuple(shape):
        return ids
    return cv2.resize(ids.astype(np.int32), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)


def _image_msg(header, array: np.ndarray, encoding: str) -> Image:
    array = np.ascontiguousarray(array)
    h, w = array.shape[:2]
    msg = Image(header=header, height=h, width=w, encoding=encoding, is_bigendian=0,
                step=int(array.strides[0]))
    msg.data = array.tobytes()
    return msg


def main(args=None) -> None:
    rclpy.init(args=args)
    node = SeemNode()
    executor = MultiThreadedExecutor(num_threads=4)
    executor.add_node(node)
    if node.trigger_configure() == TransitionCallbackReturn.SUCCESS:
        node.trigger_activate()
    else:
        node.get_logger().error("not configured; fix the parameters and configure through the lifecycle services")
    try:
        executor.spin()
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()

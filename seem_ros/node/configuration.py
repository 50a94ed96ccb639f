"""seem_node's parameters (parameters.py: names, defaults, rules) declared on the node and read
into the typed configuration of each part it wires."""
import os
from typing import Any, Callable

from rcl_interfaces.msg import ParameterDescriptor

from seem_ros.node.parameters import PARAMETERS, parse_canvas
from seem_ros.ros_in.image_conversion import ImageLimits
from seem_ros.runtime.backends import BackendConfig
from seem_ros.tracking.tracker import ObjectTracker

Value = Callable[[str], Any]  # parameter name -> its current value


def declare_parameters(node) -> None:
    for name, (default, description) in PARAMETERS.items():
        node.declare_parameter(name, default, ParameterDescriptor(description=description))


def backend_config(p: Value) -> BackendConfig:
    return BackendConfig(
        canvas=parse_canvas(p("input_canvas")) or None,
        checkpoint=p("checkpoint"), model_config=p("model_config"), backend=p("backend"), device=p("device"),
        precision=p("precision"), cuda_graphs=bool(p("cuda_graphs")), compile=bool(p("torch_compile")), short_side=int(p("input_short_side")),
        vocabulary=tuple(v for v in p("vocabulary") if v), engine_cache_dir=os.path.expanduser(p("engine_cache_dir")),
        decoder_slots=(int(p("decoder_text_slots")), int(p("decoder_visual_slots"))),
        embedding_cache_dir=os.path.expanduser(p("embedding_cache_dir")), triton_url=p("triton_url"),
        triton_model=p("triton_model"), triton_timeout_ms=int(p("triton_timeout_ms")),
        triton_shared_memory=bool(p("triton_shared_memory")), cpu_threads=int(p("cpu_threads")))


def object_tracker(p: Value) -> ObjectTracker:
    return ObjectTracker(int(p("max_objects")), lost_after=int(p("track_lost_after")),
                         remove_after=int(p("track_remove_after")), min_score=float(p("track_min_score")),
                         detection_threshold=float(p("detection_threshold")),
                         match_iou=float(p("track_match_iou")), merge_iou=float(p("track_merge_iou")),
                         ground_every=int(p("ground_every")), reground_below=float(p("reground_below")),
                         follow_memory=bool(p("track_follow_memory")),
                         reidentify_every=int(p("track_reidentify_every")),
                         reidentify_min_score=float(p("track_reidentify_score")))


def image_limits(p: Value) -> ImageLimits:
    return ImageLimits(int(p("max_image_pixels")), float(p("max_image_aspect_ratio")))

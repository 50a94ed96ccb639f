"""seem_node's parameters: names, defaults, descriptions and the rules a value must meet.

No ROS or torch imports: the launch file reads this table to declare a launch argument per
parameter, and the node checks every value here before it loads anything, so that a value that
would break every frame (a zero-sized canvas, a NaN threshold) is refused at configure with the
parameter named.
"""
import re
from typing import Callable, List, Tuple, Union

import yaml

PARAMETERS = {
    # name: (default, description)
    "checkpoint": ("seem_focalt_v1.pt", "checkpoint path (must exist), or a released file name fetched from the hub"),
    "model_config": ("focalt_v1", "variant (focalt_v1, focall_v1, samvitb_v1, samvitl_v1, davitd3_v1) or official YAML"),
    "backend": ("torch", "torch, onnxruntime, tensorrt, or triton (a frame server: seem-ros serve)"),
    "device": ("cpu", "cpu or cuda[:N]"),
    "precision": ("fp32", "fp32, fp16 (CUDA autocast, TensorRT engines) or bf16 (torch: the image encoder, "
                          "on CPUs with native bf16)"),
    "cuda_graphs": (True, "torch on CUDA: replay the image encoder and the fixed-slot frame decoder from CUDA graphs"),
    "torch_compile": (False, "torch: compile the image encoder (on CUDA with cuda_graphs also the fixed-slot frame "
                             "decoder) with torch.compile for the stream's canvas; the first frame of a canvas takes "
                             "about a minute longer"),
    "input_short_side": (512, "model input short side in pixels"),
    "input_canvas": ("auto", "padded input size: auto (the first frame's, kept for the stream), HxW, or off"),
    "vocabulary": ([""], "class names for segment-everything; empty = COCO panoptic"),
    "engine_cache_dir": ("", "exported ONNX graphs and TensorRT engines; empty = ~/.cache/seem_ros/engines"),
    "decoder_text_slots": (4, "fixed-slot decoder (onnxruntime, tensorrt, CUDA graphs): text objects per pass"),
    "decoder_visual_slots": (16, "fixed-slot decoder (onnxruntime, tensorrt, CUDA graphs): visual objects per pass"),
    "triton_url": ("localhost:8001", "backend triton: the frame server's gRPC address (host:port)"),
    "triton_model": ("seem_frame", "backend triton: the model on the server: seem_frame (seem-ros serve) or "
                                   "seem_frame_slots (a seem-ros export-triton repository; input_canvas as exported)"),
    "triton_timeout_ms": (2000, "backend triton: a frame's request taking longer fails (counted); the next goes on"),
    "triton_shared_memory": (False, "backend triton, server on this host: requests and results through system shared "
                                    "memory instead of the gRPC stream"),
    "cpu_threads": (0, "torch's threads in the node's process: 0 = torch's default (one per core), but 1 with "
                       "backend triton (the server does the model's work; more threads would spin while waiting)"),
    "embedding_cache_dir": ("~/.cache/seem_ros", "where vocabulary embeddings are cached; empty = no cache"),
    "image_topic": ("image", "camera image topic"),
    "image_transport": ("raw", "raw (sensor_msgs/Image) or compressed (<image_topic>/compressed)"),
    "camera_info_topic": ("camera_info", "CameraInfo, used to project RViz clicked points"),
    "clicked_point_topic": ("/clicked_point", "RViz Publish Point topic"),
    "detection_prompt_topic": ("~/detection_prompts", "vision_msgs/Detection2DArray: each box not yet held by an "
                                                      "object of its class id becomes a tracked object; empty = off"),
    "image_qos_reliability": ("best_effort", "best_effort (sensor data) or reliable"),
    "image_qos_depth": (5, "image subscription queue depth (ROS sensor-data default)"),
    "max_image_pixels": (7680 * 4320, "camera, prompt and service images with more pixels are refused"),
    "max_image_aspect_ratio": (8.0, "images more elongated than this (long side / short side) are refused"),
    "prompt_queue_size": (1000, "prompts waiting to be applied; a full queue refuses (and counts) new ones"),
    "score_threshold": (0.0, "objects scoring below are not published"),
    "max_objects": (16, "most objects tracked at once"),
    "track_lost_after": (3, "frames without a confident mask before an object is reported lost"),
    "track_remove_after": (150, "frames without a confident mask before an object is removed; 0 = never"),
    "track_min_score": (0.0, "a mask scoring below this counts as not found (the object may become lost)"),
    "track_follow_memory": (False, "followed objects also attend their previous mask through SEEM's memory "
                                   "queries (costs more per object)"),
    "track_reidentify_every": (10, "lost objects that follow their mask are searched by their appearance (reference "
                                   "tokens of a confident frame of their own) every N frames; 0 = never"),
    "track_reidentify_score": (0.8, "least score of a mask found by appearance for the object to count as found"),
    "ground_every": (1, "text objects: frames between groundings by their text (1 = every frame); they follow "
                        "their last mask in between, which costs less"),
    "reground_below": (0.0, "text objects: grounded again at once when their last score fell below this"),
    "detection_threshold": (0.5, "category commands: instances with a lower class probability are not tracked"),
    "track_match_iou": (0.3, "category commands: least mask IoU for an instance to continue a track"),
    "track_merge_iou": (0.8, "category commands: tracks overlapping more are one object (merged into the older id)"),
    "mask_encoding": ("image", "image (mono8 mask per object) or rle"),
    "publish_overlay": (True, "publish the debug overlay (only while subscribed)"),
    "stats_period": (10.0, "seconds between diagnostics/log summaries"),
}
CHOICES = {"backend": ("torch", "onnxruntime", "tensorrt", "triton"), "precision": ("fp32", "fp16", "bf16"),
           "image_transport": ("raw", "compressed"), "mask_encoding": ("image", "rle"),
           "image_qos_reliability": ("best_effort", "reliable")}
RANGES = {  # name: (least, most), both allowed
    "input_short_side": (32, 4096), "decoder_text_slots": (1, 64), "decoder_visual_slots": (1, 256),
    "max_objects": (1, 65535), "prompt_queue_size": (1, 1_000_000), "track_lost_after": (1, 1_000_000),
    "track_remove_after": (0, 1_000_000_000), "ground_every": (1, 1_000_000), "track_reidentify_every": (0, 1_000_000),
    "image_qos_depth": (1, 10_000), "triton_timeout_ms": (1, 3_600_000), "cpu_threads": (0, 4096), "max_image_pixels": (1, 2 ** 40), "max_image_aspect_ratio": (1.0, 1e6),
    "stats_period": (0.01, 86400.0),
    # scores and probabilities: a NaN here would make every object lost or unpublished
    "score_threshold": (0.0, 1.0), "track_min_score": (0.0, 1.0), "track_reidentify_score": (0.0, 1.0),
    "reground_below": (0.0, 1.0), "detection_threshold": (0.0, 1.0), "track_match_iou": (0.0, 1.0),
    "track_merge_iou": (0.0, 1.0),
}
DEVICE = re.compile(r"cpu|cuda(:\d+)?")

Canvas = Union[Tuple[int, int], Tuple[()]]


def parse_canvas(text: str) -> Canvas:
    """input_canvas -> (height, width), or () for auto / off. ValueError says what is wrong."""
    if text in ("auto", "off"):
        return ()
    match = re.fullmatch(r"(\d+)x(\d+)", text.strip().lower())
    if not match:
        raise ValueError(f"expected HxW (e.g. 512x704), auto or off, got {text!r}")
    height, width = int(match.group(1)), int(match.group(2))
    if height <= 0 or width <= 0 or height % 32 or width % 32:
        raise ValueError(f"{text!r}: height and width must be positive multiples of 32 (e.g. 512x704)")
    return height, width


def parameter_errors(value: Callable[[str], object]) -> List[str]:
    """Every problem with the node's parameters (value(name) -> its value), each naming the
    parameter and the value; [] when all can be used."""
    errors = []
    for name, allowed in CHOICES.items():
        if value(name) not in allowed:
            errors.append(f"parameter {name} must be one of {', '.join(allowed)}, got {value(name)!r}")
    for name, (least, most) in RANGES.items():
        v = value(name)
        if not least <= v <= most:  # NaN too: every comparison with it is false
            errors.append(f"parameter {name} must be in {least}..{most}, got {v!r}")
    if not DEVICE.fullmatch(str(value("device"))):
        errors.append(f"parameter device must be cpu, cuda or cuda:N, got {value('device')!r}")
    try:
        parse_canvas(str(value("input_canvas")))
    except ValueError as exc:
        errors.append(f"parameter input_canvas: {exc}")
    if value("precision") == "fp16" and value("backend") == "torch" and not str(value("device")).startswith("cuda"):
        errors.append("parameter precision fp16 runs on CUDA (torch autocast) or TensorRT; the torch backend on the "
                      "CPU computes in fp32: set precision fp32 (or device cuda)")
    if value("precision") == "bf16" and value("backend") != "torch":
        errors.append(f"parameter precision bf16 is for the torch backend; {value('backend')} runs fp32 or fp16 graphs")
    if value("backend") == "triton" and value("precision") != "fp32":
        errors.append(f"parameter precision {value('precision')} is the frame server's choice with backend triton "
                      "(seem-ros serve --precision): set precision fp32")
    if value("torch_compile") and value("backend") != "torch":
        errors.append(f"parameter torch_compile is for the torch backend; {value('backend')} runs its own graphs")
    return errors


def from_launch_text(name: str, text: str):
    """A `name:=text` launch argument as the parameter's type (as `ros2 param set` reads values):
    text parameters keep the text as given; numbers, booleans and lists are read as YAML."""
    default = PARAMETERS[name][0]
    if isinstance(default, str):
        return text
    if isinstance(default, list) and not text.strip():
        return [""]
    value = yaml.safe_load(text) if text.strip() else None
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"launch argument {name}:={text!r} must be true or false")
        return value
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, list):
        value = value if isinstance(value, list) else [value]
        return [str(v) for v in value]
    if type(value) is not type(default):
        raise ValueError(f"launch argument {name}:={text!r} must be {type(default).__name__}")
    return value

"""A detector's boxes as prompts ("segment what the detector sees", as Isaac ROS SAM takes its
prompts): vision_msgs/Detection2DArray -> a labelled box per detection, in pixels of the camera
image. Detection2DArray is None where vision_msgs is not installed (every ROS install has it; the
PyPI wheels do not)."""
import math
from typing import List, Optional, Tuple

from seem_ros.prompts.text_commands import MAX_TEXT_LENGTH
from seem_ros.ros_in.prompt_messages import PromptError
from seem_ros.tracking.places import Box

try:
    from vision_msgs.msg import Detection2DArray
except ImportError:
    Detection2DArray = None

DEFAULT_LABEL = "object"  # for a detection without a class id


def detection_boxes(msg, image_hw: Optional[Tuple[int, int]]) -> List[Tuple[str, Box]]:
    """(label, box) per detection: the label is the class id of its best-scoring hypothesis, the
    box its bbox (centre and size) clipped to the image. PromptError, naming the detection, for a
    box that is not finite, empty, or wholly outside the image: the message is refused whole."""
    if image_hw is None:
        raise PromptError("no camera frame received yet: detection boxes are checked against its size")
    height, width = image_hw
    boxes = []
    for index, detection in enumerate(msg.detections):
        bbox = detection.bbox
        cx, cy, w, h = bbox.center.position.x, bbox.center.position.y, bbox.size_x, bbox.size_y
        what = f"detection {index} (id {detection.id!r})"
        if not all(math.isfinite(v) for v in (cx, cy, w, h)) or w <= 0 or h <= 0:
            raise PromptError(f"{what}: its box (centre ({cx}, {cy}), size {w} x {h}) is not a finite, non-empty box")
        # inclusive pixel bounds, as a mask's bounding box gives them (ros_out.vision): w pixels wide
        half_w, half_h = max(w - 1, 0.0) / 2, max(h - 1, 0.0) / 2
        x0, y0 = max(cx - half_w, 0.0), max(cy - half_h, 0.0)
        x1, y1 = min(cx + half_w, width - 1.0), min(cy + half_h, height - 1.0)
        if x0 > x1 or y0 > y1:
            raise PromptError(f"{what}: its box lies outside the {width}x{height} camera image")
        best = max(detection.results, key=lambda r: r.hypothesis.score, default=None)
        label = (best.hypothesis.class_id.strip() if best is not None else "") or DEFAULT_LABEL
        boxes.append((label[:MAX_TEXT_LENGTH], (x0, y0, x1, y1)))
    return boxes

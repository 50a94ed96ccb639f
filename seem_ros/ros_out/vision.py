"""Results as vision_msgs, where vision_msgs is installed (every ROS install has it): a
Detection2DArray per frame (one detection per object: its mask's bounding box, the object id, its
label and score as the hypothesis) and a LabelInfo naming the label image's values."""
from typing import Dict, List

from seem_ros.tracking.objects import FrameObject
from seem_ros.tracking.places import bounding_box

try:
    from vision_msgs.msg import (BoundingBox2D, Detection2D, Detection2DArray, LabelInfo, ObjectHypothesisWithPose,
                                 VisionClass)
except ImportError:  # a ROS install always has it; the PyPI wheels do not
    Detection2DArray = None


def available() -> bool:
    return Detection2DArray is not None


def detection_array(header, objects: List[FrameObject]) -> "Detection2DArray":
    """Objects with a mask in this frame (a lost object has none, and no box)."""
    out = Detection2DArray(header=header)
    for obj in objects:
        x, y, width, height = bounding_box(obj.mask)
        if not width:
            continue
        bbox = BoundingBox2D(size_x=float(width), size_y=float(height))
        bbox.center.position.x, bbox.center.position.y = x + (width - 1) / 2, y + (height - 1) / 2
        hypothesis = ObjectHypothesisWithPose()
        hypothesis.hypothesis.class_id, hypothesis.hypothesis.score = obj.label, float(obj.score)
        out.detections.append(Detection2D(header=header, results=[hypothesis], bbox=bbox, id=str(obj.id)))
    return out


def label_info(header, labels: Dict[int, str]) -> "LabelInfo":
    """labels: label image value -> label."""
    return LabelInfo(header=header, class_map=[VisionClass(class_id=value, class_name=label)
                                               for value, label in sorted(labels.items())])

"""What seem_node publishes for each processed frame: the result, the label image, the label info
(when it changes) and the overlay (only while someone subscribes); where vision_msgs is installed,
also the objects as a vision_msgs/Detection2DArray and the label values as vision_msgs/LabelInfo
(when they change).

Objects scoring below `score_threshold` are left out of all alike, so the label info always
describes what the result and the label image hold."""
from typing import List, Optional, Tuple

import numpy as np
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, RegionOfInterest

from seem_ros.msg import LabelInfo, SegmentationResult, SegmentedObject

from seem_ros.ros_out import vision
from seem_ros.ros_out.encoding import LabelSlots, encode_rle, label_image, overlay
from seem_ros.tracking.objects import FrameObject
from seem_ros.tracking.places import bounding_box


class FramePublishers:
    def __init__(self, node, mask_encoding: str, publish_overlay: bool, score_threshold: float):
        self.node = node
        self.rle = mask_encoding == "rle"
        self.publish_overlay = publish_overlay
        self.score_threshold = score_threshold
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                             reliability=ReliabilityPolicy.RELIABLE)
        self._result = node.create_publisher(SegmentationResult, "~/result", 10)
        self._labels = node.create_publisher(Image, "~/label_image", 10)
        self._label_info = node.create_publisher(LabelInfo, "~/label_info", latched)
        self._overlay = node.create_publisher(Image, "~/overlay", 10)
        self._detections = self._vision_label_info = None
        if vision.available():
            self._detections = node.create_publisher(vision.Detection2DArray, "~/detections", 10)
            self._vision_label_info = node.create_publisher(vision.LabelInfo, "~/vision_label_info", latched)
        self._slots = LabelSlots()
        self._published_info: Optional[Tuple] = None

    def destroy(self) -> None:
        for publisher in (self._result, self._labels, self._label_info, self._overlay, self._detections,
                          self._vision_label_info):
            if publisher is not None:
                self.node.destroy_publisher(publisher)

    def publish(self, header, rgb: np.ndarray, objects: List[FrameObject], elapsed: float,
                live_ids: List[int]) -> None:
        """live_ids: every tracked object, so that label values stay put while one is hidden."""
        objects = [o for o in objects if o.score >= self.score_threshold]
        values = self._slots.update(live_ids + [o.id for o in objects])
        h, w = rgb.shape[:2]
        self._result.publish(result_message(header, h, w, objects, elapsed, self.rle))
        self._labels.publish(image_message(header, label_image((h, w), objects, values), "mono16"))
        info = tuple((o.id, o.label, values[o.id], o.status) for o in sorted(objects, key=lambda o: o.id))
        if info != self._published_info:
            ids, labels, label_values, statuses = zip(*info) if info else ((), (), (), ())
            self._label_info.publish(LabelInfo(header=header, ids=list(ids), labels=list(labels),
                                               label_values=list(label_values), statuses=list(statuses)))
            if self._vision_label_info is not None:
                self._vision_label_info.publish(vision.label_info(header, dict(zip(label_values, labels))))
            self._published_info = info
        if self._detections is not None:
            self._detections.publish(vision.detection_array(header, objects))
        if self.publish_overlay and self._overlay.get_subscription_count() > 0:
            self._overlay.publish(image_message(header, overlay(rgb, objects), "bgr8"))


def result_message(header, h: int, w: int, objects: List[FrameObject], elapsed: float,
                   rle: bool) -> SegmentationResult:
    out = SegmentationResult(header=header, height=h, width=w, inference_time=float(elapsed))
    for obj in objects:
        x, y, bw, bh = bounding_box(obj.mask)
        item = SegmentedObject(id=obj.id, label=obj.label, score=float(obj.score), status=obj.status, mode=obj.mode,
                               bbox=RegionOfInterest(x_offset=x, y_offset=y, width=bw, height=bh))
        if rle:
            item.rle = encode_rle(obj.mask)
        else:
            item.mask = image_message(header, obj.mask.astype(np.uint8) * 255, "mono8")
        out.objects.append(item)
    return out


def image_message(header, array: np.ndarray, encoding: str) -> Image:
    array = np.ascontiguousarray(array)
    h, w = array.shape[:2]
    msg = Image(header=header, height=h, width=w, encoding=encoding, is_bigendian=0, step=int(array.strides[0]))
    msg.data = array.tobytes()
    return msg

"""Test helper process: records what seem_node publishes, then writes a JSON summary.

    python result_subscriber.py OUT.json --results 3 --timeout 60
Stops after `--results` results that contain objects (and an overlay and a label image), or at the
timeout."""
import argparse
import json
import time

import numpy as np
import rclpy
from sensor_msgs.msg import Image

from seem_ros.msg import LabelInfo, SegmentationResult
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--results", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--prefix", default="/seem_node")
    args = parser.parse_args()
    rclpy.init()
    node = rclpy.create_node("test_result_subscriber")
    summary = {"results": [], "label_images": [], "overlays": [], "label_info": []}

    def on_result(msg: SegmentationResult):
        summary["results"].append({
            "frame_id": msg.header.frame_id, "stamp": msg.header.stamp.sec, "height": msg.height,
            "width": msg.width, "inference_time": msg.inference_time,
            "objects": [{"id": o.id, "label": o.label, "score": o.score, "status": o.status, "mode": o.mode,
                         "bbox": [o.bbox.x_offset, o.bbox.y_offset, o.bbox.width, o.bbox.height],
                         "mask_encoding": o.mask.encoding, "mask_size": [o.mask.height, o.mask.width],
                         "mask_pixels": int((np.frombuffer(bytes(o.mask.data), np.uint8) > 0).sum()),
                         "rle_length": len(o.rle)} for o in msg.objects]})

    def on_labels(msg: Image):
        ids = np.frombuffer(bytes(msg.data), np.uint16).reshape(msg.height, msg.width)
        summary["label_images"].append({"encoding": msg.encoding, "stamp": msg.header.stamp.sec,
                                        "size": [msg.height, msg.width],
                                        "ids": sorted(int(i) for i in np.unique(ids)),
                                        "pixels_per_id": {int(i): int((ids == i).sum()) for i in np.unique(ids)}})

    def on_overlay(msg: Image):
        summary["overlays"].append({"encoding": msg.encoding, "size": [msg.height, msg.width],
                                    "stamp": msg.header.stamp.sec})

    def on_info(msg: LabelInfo):
        summary["label_info"].append({"ids": list(msg.ids), "labels": list(msg.labels),
                                      "statuses": list(msg.statuses)})

    latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE)
    node.create_subscription(SegmentationResult, f"{args.prefix}/result", on_result, 10)
    node.create_subscription(Image, f"{args.prefix}/label_image", on_labels, 10)
    node.create_subscription(Image, f"{args.prefix}/overlay", on_overlay, 10)
    node.create_subscription(LabelInfo, f"{args.prefix}/label_info", on_info, latched)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
        with_objects = [r for r in summary["results"] if r["objects"]]
        if len(with_objects) >= args.results and summary["overlays"] and summary["label_images"]:
            break
    with open(args.out, "w") as f:
        json.dump(summary, f)
    node.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    main()

"""Test helper process: plays a camera (the images in turn, over and over) and sends prompts.

    python camera_publisher.py IMAGE [IMAGE ...] --topic /image --rate 5 --duration 20
        [--command "segment the zebra" ...] [--click X Y ...] [--encoding bgr8]
Frames carry frame_id "test_camera" and stamps sec = frame index + 1000.
"""
import argparse
import time

import cv2
import numpy as np
import rclpy
from geometry_msgs.msg import Point
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import String


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("images", nargs="+")
    parser.add_argument("--topic", default="/image")
    parser.add_argument("--command_topic", default="/seem_node/command")
    parser.add_argument("--rate", type=float, default=5.0)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--command", action="append", default=[])
    parser.add_argument("--click", nargs=2, type=float, action="append", default=[])
    parser.add_argument("--encoding", default="bgr8", choices=["bgr8", "rgb8"])
    parser.add_argument("--width", type=int, default=320)
    args = parser.parse_args()

    frames = []
    for path in args.images:
        bgr = cv2.imread(path)
        scale = args.width / bgr.shape[1]
        bgr = cv2.resize(bgr, (args.width, int(round(bgr.shape[0] * scale))), interpolation=cv2.INTER_AREA)
        frames.append(np.ascontiguousarray(bgr if args.encoding == "bgr8" else bgr[..., ::-1]))

    rclpy.init()
    node = rclpy.create_node("test_camera_publisher")
    images = node.create_publisher(Image, args.topic, qos_profile_sensor_data)
    commands = node.create_publisher(String, args.command_topic, 10)
    clicks = node.create_publisher(Point, f"{args.topic}_mouse_left", 10)
    # wait for the node's subscriptions before prompting
    deadline = time.monotonic() + 20
    while (commands.get_subscription_count() == 0 or images.get_subscription_count() == 0) and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    time.sleep(0.5)  # the node's side of the match, too: frames sent before it are lost unseen
    for text in args.command:
        commands.publish(String(data=text))
    for x, y in args.click:
        clicks.publish(Point(x=x, y=y, z=0.0))
    frame = 0
    end = time.monotonic() + args.duration
    while time.monotonic() < end:
        pixels = frames[frame % len(frames)]
        msg = Image(height=pixels.shape[0], width=pixels.shape[1], encoding=args.encoding, is_bigendian=0,
                    step=pixels.shape[1] * 3)
        msg.header.frame_id = "test_camera"
        msg.header.stamp.sec = 1000 + frame
        msg.data = pixels.tobytes()
        images.publish(msg)
        frame += 1
        rclpy.spin_once(node, timeout_sec=1.0 / args.rate)
    print(f"sent {frame} frames", flush=True)
    node.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    main()

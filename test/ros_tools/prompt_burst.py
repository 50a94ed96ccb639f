"""Test helper process: publishes N SegmentationPrompt messages as fast as it can on a reliable
topic deep enough to hold them all, waits until the subscriber acknowledged every one, then prints
"sent N acked True|False".

    python prompt_burst.py --count 1000 [--topic /seem_node/prompt]
Prompt i has text "object i" and track false.
"""
import argparse
import time

import rclpy
from rclpy.duration import Duration
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

from seem_ros.msg import SegmentationPrompt


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--topic", default="/seem_node/prompt")
    args = parser.parse_args()
    rclpy.init()
    node = rclpy.create_node("test_prompt_burst")
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=args.count, reliability=ReliabilityPolicy.RELIABLE)
    publisher = node.create_publisher(SegmentationPrompt, args.topic, qos)
    deadline = time.monotonic() + 30
    while publisher.get_subscription_count() == 0 and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    time.sleep(0.5)  # let the reliable match settle in both directions
    start = time.monotonic()
    for i in range(args.count):
        publisher.publish(SegmentationPrompt(text=f"object {i}", track=False))
    sent_in = time.monotonic() - start
    acked = publisher.wait_for_all_acked(Duration(seconds=30))
    print(f"sent {args.count} in {sent_in:.2f} s acked {acked}", flush=True)
    node.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    main()

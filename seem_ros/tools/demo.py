"""The main job, end to end across processes: seem_node runs in its own process; this one plays a
recorded sequence (a video, an image folder or a rosbag2) as a camera on /image, prompts the node
with a text command and an rqt-style click, receives what the node publishes and writes it down
(overlay.mp4, labels/, objects.jsonl, an MCAP bag: ros_out/recording.py) with the node's log.

    python -m seem_ros.tools.demo SOURCE [--out DIR] [--text "segment the zebra"] [--click X,Y]
        [--checkpoint PATH --config CFG]

Frames are paced by the node: each is sent once the previous one's result came back, so every frame
of the recording is segmented (a camera runs on and the node drops what it cannot keep up with).
"""
import argparse
import os
import re
import signal
import subprocess
import sys
import time
from typing import Optional

import numpy as np

from seem_ros.ros_in.fastdds import LARGE_SHM_PROFILE, profile_environment, profile_in
from seem_ros.tools.arguments import OVERWRITE_HELP

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRAME_TIMEOUT_S = 120.0  # the first frame includes the model's warm-up


def _environment() -> dict:
    env = dict(os.environ)
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env["AMENT_PREFIX_PATH"] = os.pathsep.join(p for p in (sys.prefix, env.get("AMENT_PREFIX_PATH", "")) if p)
    prefixes = env["AMENT_PREFIX_PATH"].split(os.pathsep)
    env.update(profile_environment(profile_in(env) or os.path.join(REPO, LARGE_SHM_PROFILE), prefixes))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _start_node(args, checkpoint: str, log_path: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "seem_ros.node.process", "--ros-args",
               "-p", f"checkpoint:={checkpoint}", "-p", f"model_config:={args.config}",
               "-p", "image_topic:=/image", "-p", f"device:={args.device}"]
    return subprocess.Popen(command, stdout=open(log_path, "w"), stderr=subprocess.STDOUT, env=_environment())


def _wait_for_log(process: subprocess.Popen, log_path: str, pattern: str, timeout: float) -> Optional[re.Match]:
    """The first match of the regular expression in the node's log, waiting for it; None when the
    node exited or the time ran out first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(log_path) as log:
            found = re.search(pattern, log.read())
        if found:
            return found
        if process.poll() is not None:
            return None
        time.sleep(0.2)
    return None


def _objects(msg) -> list:
    """A SegmentationResult's objects back as the tracker's FrameObjects, which the recording writer takes."""
    from seem_ros.ros_out.encoding import decode_rle
    from seem_ros.tracking.objects import FrameObject
    out = []
    for o in msg.objects:
        if o.mask.height:
            mask = np.frombuffer(bytes(o.mask.data), np.uint8).reshape(o.mask.height, o.mask.step)[:, :o.mask.width] > 0
        else:
            mask = decode_rle(list(o.rle), msg.height, msg.width)
        out.append(FrameObject(o.id, o.label, mask, o.score, o.status, o.mode))
    return out


def run(args) -> int:
    os.environ.update(_environment())
    import rclpy
    from geometry_msgs.msg import Point
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header, String
    from seem_ros.msg import SegmentationResult
    from seem_ros.ros_out.publishers import image_message
    from seem_ros.tools.recording import OUTPUTS, RecordingWriter, claim_output_folder
    from seem_ros.tools.sources import FrameSource

    source = FrameSource(args.source, args.topic, args.max_frames or 0)
    first = source.first()
    height, width = first.rgb.shape[:2]
    click = args.click or (width / 2, height / 2)
    if not (0 <= click[0] < width and 0 <= click[1] < height):
        raise ValueError(f"click ({click[0]:g}, {click[1]:g}) is outside the {width}x{height} frames")
    claim_output_folder(args.out, OUTPUTS + ("seem_node.log",), args.overwrite)  # refused before any download
    from seem_ros.weights import resolve_checkpoint, verify_known_checkpoint
    checkpoint = resolve_checkpoint(args.checkpoint)  # a released name is fetched here, with its progress bar
    verify_known_checkpoint(checkpoint)  # a released file: its size and sha256
    log_path = os.path.join(args.out, "seem_node.log")
    node_process = _start_node(args, checkpoint, log_path)
    rclpy.init()
    node = rclpy.create_node("seem_demo_player")
    results = {}  # stamp -> result; only the frame being waited for is kept
    node.create_subscription(SegmentationResult, "/seem_node/result",
                             lambda msg: results.__setitem__(msg.header.stamp.sec * 10 ** 9 + msg.header.stamp.nanosec,
                                                             msg), 10)
    camera = node.create_publisher(Image, "/image", qos_profile_sensor_data)
    commands = node.create_publisher(String, "/seem_node/command", 10)
    clicks = node.create_publisher(Point, "/image_mouse_left", 10)

    def image(rgb, stamp_ns: int) -> Image:
        header = Header(frame_id="camera")
        header.stamp.sec, header.stamp.nanosec = stamp_ns // 10 ** 9, stamp_ns % 10 ** 9
        return image_message(header, rgb, "rgb8")

    def segmented(rgb, stamp_ns: int, timeout: float, resend_every: float = 0.0):
        """Sends the frame once (resend_every: again at that period, for the first frame, which
        can be lost while discovery completes) and waits for its result."""
        results.clear()
        deadline = time.monotonic() + timeout
        sent = 0.0
        while time.monotonic() < deadline:
            if not sent or (resend_every and time.monotonic() - sent >= resend_every):
                camera.publish(image(rgb, stamp_ns))
                sent = time.monotonic()
            rclpy.spin_once(node, timeout_sec=0.05)
            if stamp_ns in results:
                return results.pop(stamp_ns)
            if node_process.poll() is not None:
                raise RuntimeError(f"seem_node exited with code {node_process.returncode}; see {log_path}")
        raise RuntimeError(f"no result for the frame at {stamp_ns} ns within {timeout:g} s; see {log_path}")

    def applied(kind: str) -> None:
        """Waits until the node's log says how a prompt of this kind ended."""
        outcome = _wait_for_log(node_process, log_path, rf"{kind} (applied|refused): (.*)", 60)
        if outcome is None:
            raise RuntimeError(f"seem_node did not apply the {kind} within 60 s; see {log_path}")
        if outcome.group(1) == "refused":
            raise RuntimeError(f"seem_node refused the {kind}: {outcome.group(2)}")

    code = 1
    try:
        print(f"starting seem_node ({checkpoint}); its log: {log_path}", file=sys.stderr)
        if not _wait_for_log(node_process, log_path, "processing /image", 600):
            raise RuntimeError(f"seem_node did not start; see {log_path}")
        # a first frame tells the node the image size, which clicks are checked against
        segmented(first.rgb, 1, FRAME_TIMEOUT_S, resend_every=2.0)
        commands.publish(String(data=args.text))
        clicks.publish(Point(x=float(click[0]), y=float(click[1]), z=0.0))
        applied("command")
        applied("click")  # both before frame 0
        print(f"prompted: {args.text!r} and a click at ({click[0]:g}, {click[1]:g})", file=sys.stderr)
        ids = set()
        with RecordingWriter(args.out, args.fps) as writer:
            for frame in source:
                stamp = frame.stamp_ns + 10 ** 9  # after the size frame
                msg = segmented(frame.rgb, stamp, FRAME_TIMEOUT_S)
                objects = _objects(msg)
                writer.write(frame.index, frame.stamp_ns, frame.rgb, objects, msg.inference_time)
                ids.update(o.id for o in objects)
                print(f"frame {frame.index}: " + ", ".join(f"{o.id} {o.label} ({o.status})" for o in objects),
                      file=sys.stderr)
        print(f"{writer.frames} frames, objects {sorted(ids)}: {args.out}/overlay.mp4, objects.jsonl, labels/, bag/")
        code = 0
    finally:
        node.destroy_node()
        rclpy.shutdown()
        node_process.send_signal(signal.SIGINT)
        try:
            exit_code = node_process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            node_process.kill()
            exit_code = node_process.wait()
        if exit_code != 0:
            print(f"seem_node exited with code {exit_code}; see {log_path}", file=sys.stderr)
            code = code or 1
    return code


def _click(text: str):
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected x,y, got {text!r}") from None
    return x, y


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="seem_ros.tools.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="a video file, an image folder, or a rosbag2")
    parser.add_argument("--out", default="demo_out",
                        help="the output folder: new, empty, or an earlier run's, replaced (default %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    parser.add_argument("--text", default="segment the zebra", help="the text command (default %(default)r)")
    parser.add_argument("--click", type=_click, help="an rqt click x,y on the frames (default: their centre)")
    parser.add_argument("--topic", default="", help="a rosbag2's image topic (needed when it has several)")
    parser.add_argument("--max-frames", type=int, default=0, help="the first N frames only (default: all)")
    parser.add_argument("--fps", type=float, default=10.0, help="overlay.mp4's frame rate (default %(default)s)")
    parser.add_argument("--checkpoint", default="seem_focalt_v1.pt",
                        help="a checkpoint path or a released name (default %(default)s, fetched once)")
    parser.add_argument("--config", default="focalt_v1", help="model variant or official YAML (default %(default)s)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default %(default)s)")
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (FileNotFoundError, ValueError) as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    except (RuntimeError, OSError) as exc:  # a failed run, an unreachable checkpoint (CheckpointError)
        print(f"demo: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""Soak test of seem_node across processes: reliability figures over minutes.

    .venv/bin/python benchmarks/soak.py [--minutes 10] [--rate 10] [--width 640]
        [--checkpoint PATH --config CFG]   # default: the tiny reference checkpoint in ../shared

What it does, with its own ROS domain on loopback:
1. starts seem_node with a corrupt checkpoint (it must stay up, unconfigured), then sets the good
   checkpoint and configures and activates it through the lifecycle services;
2. streams camera frames (640x334 bgr8, about 640 KB) from a separate process at --rate, and kills
   (SIGKILL) and restarts that process every 15 s;
3. changes the prompts every second, cycling through commands, rqt clicks, SegmentationPrompt
   messages, the set_prompt / clear_prompts / reset_tracking services and bad input;
4. reads the node's cumulative counts on /diagnostics and its memory (RSS) from /proc;
5. at the end stops the camera, lets the node drain, takes the final counts, starts the camera
   again and sends SIGINT mid-stream.

Prints a table; the last line is JSON with every figure, among them `frames_unaccounted` (frames
sent that the node neither received nor counted as lost, plus frames received without an outcome;
a frame whose publishing a kill interrupted, `frames_maybe_sent`, may count either way),
`prompts_lost_uncounted`, `rss_growth_pct` (end over after warm-up) and `exit_code`.
"""
import argparse
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

from seem_ros.ros_in.fastdds import LARGE_SHM_PROFILE, profile_environment

REPO = pathlib.Path(__file__).resolve().parents[1]
REFERENCE = pathlib.Path(os.environ.get("SEEM_REFERENCE", REPO.parent / "shared" / "seem_reference"))
CAMERA_KILL_PERIOD_S = 15.0


def ros_environment() -> dict:
    """One ROS domain for the soak and every process it starts (they inherit SEEM_SOAK_DOMAIN_ID)."""
    env = dict(os.environ)
    domain = env.setdefault("SEEM_SOAK_DOMAIN_ID", str(200 + os.getpid() % 30))
    env.update({"AMENT_PREFIX_PATH": sys.prefix, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
                "ROS_DOMAIN_ID": domain,
                **profile_environment(str(REPO / LARGE_SHM_PROFILE), [sys.prefix]),
                "RCUTILS_LOGGING_BUFFERED_STREAM": "0", "PYTHONUNBUFFERED": "1"})
    return env


# ---------------------------------------------------------------- the camera process

def write_atomically(path: pathlib.Path, text: str) -> None:
    """A kill at any moment leaves the old or the new text, never an empty file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def camera(args) -> None:
    """Publishes frames at --rate until killed. --count-file says "N" while frame N is being
    published (killed then, it may or may not have gone out) and "N sent" once it has."""
    import cv2
    import numpy as np
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    bgr = cv2.imread(str(REFERENCE / "images" / "zebras1.jpg"))
    bgr = np.ascontiguousarray(cv2.resize(bgr, (args.width, round(bgr.shape[0] * args.width / bgr.shape[1]))))
    rclpy.init()
    node = rclpy.create_node("soak_camera")
    publisher = node.create_publisher(Image, "/image", qos_profile_sensor_data)
    while publisher.get_subscription_count() == 0:
        rclpy.spin_once(node, timeout_sec=0.05)
    time.sleep(0.5)  # the node's side of the match too
    sent, period = 0, 1.0 / args.rate
    next_time = time.monotonic()
    while True:
        msg = Image(height=bgr.shape[0], width=bgr.shape[1], encoding="bgr8", step=bgr.shape[1] * 3)
        msg.header.frame_id = "soak_camera"
        msg.header.stamp = node.get_clock().now().to_msg()
        msg.data = bgr.tobytes()
        write_atomically(pathlib.Path(args.count_file), str(sent + 1))
        publisher.publish(msg)
        sent += 1
        write_atomically(pathlib.Path(args.count_file), f"{sent} sent")
        next_time += period
        time.sleep(max(next_time - time.monotonic(), 0.0))


# ---------------------------------------------------------------- the soak

class Soak:
    def __init__(self, args, workdir: pathlib.Path):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import Point
        from std_msgs.msg import String
        from seem_ros.msg import SegmentationPrompt, SegmentationResult
        self.args, self.workdir = args, workdir
        self.rclpy = rclpy
        rclpy.init()
        self.ros = rclpy.create_node("soak_driver")
        self.reports, self.latencies = [], []
        self.ros.create_subscription(DiagnosticArray, "/diagnostics", self.reports.append, 10)
        self.ros.create_subscription(SegmentationResult, "/seem_node/result", self._on_result, 10)
        self.commands = self.ros.create_publisher(String, "/seem_node/command", 100)
        self.clicks = self.ros.create_publisher(Point, "/image_mouse_left", 100)
        self.prompts = self.ros.create_publisher(SegmentationPrompt, "/seem_node/prompt", 100)
        self.cameras_sent = 0  # frames certainly sent
        self.cameras_maybe_sent = 0  # frames whose publishing a kill interrupted
        self.camera_proc = None
        self.camera_incarnation = 0
        self.prompts_sent = 0
        self.pending_calls = []
        self.log_path = workdir / "seem_node.log"

    def _on_result(self, msg) -> None:
        now = self.ros.get_clock().now().nanoseconds
        stamp = msg.header.stamp.sec * 10 ** 9 + msg.header.stamp.nanosec
        self.latencies.append(((now - stamp) / 1e6, msg.inference_time * 1000))

    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.rclpy.spin_once(self.ros, timeout_sec=0.02)

    def call(self, srv_type, name: str, request, timeout: float = 30.0):
        client = self.ros.create_client(srv_type, name)
        assert client.wait_for_service(timeout_sec=timeout), f"{name} not available"
        future = client.call_async(request)
        end = time.monotonic() + timeout
        while not future.done() and time.monotonic() < end:
            self.rclpy.spin_once(self.ros, timeout_sec=0.02)
        self.ros.destroy_client(client)
        return future.result()

    # -- node
    def start_node(self) -> subprocess.Popen:
        corrupt = self.workdir / "corrupt.pt"
        corrupt.write_bytes(b"\x80\x04 not a checkpoint")
        params = {"checkpoint": str(corrupt), "model_config": self.args.config, "image_topic": "/image",
                  "stats_period": 1.0}
        cmd = [sys.executable, "-m", "seem_ros.node.process", "--ros-args"]
        for key, value in params.items():
            cmd += ["-p", f"{key}:={value}"]
        self.log = open(self.log_path, "w")
        self.node = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=ros_environment(), cwd=REPO)
        return self.node

    def wait_for_log(self, text: str, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if text in self.log_path.read_text():
                return True
            self.spin(0.2)
        return False

    def recover_from_corrupt_checkpoint(self) -> bool:
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState
        from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
        from rcl_interfaces.srv import SetParameters
        if not self.wait_for_log("not configured", 120):
            return False
        value = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=self.args.checkpoint)
        self.call(SetParameters, "/seem_node/set_parameters",
                  SetParameters.Request(parameters=[Parameter(name="checkpoint", value=value)]))
        return all(self.call(ChangeState, "/seem_node/change_state",
                             ChangeState.Request(transition=Transition(id=t)), timeout=120).success
                   for t in (Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE))

    def rss_mb(self) -> float:
        for line in pathlib.Path(f"/proc/{self.node.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def totals(self) -> dict:
        latest = {}
        for report in self.reports:
            for status in report.status:
                if status.name.startswith("seem_node:"):
                    latest = {kv.key[:-len(" total")].replace(" ", "_"): int(kv.value)
                              for kv in status.values if kv.key.endswith(" total")}
        return latest

    def drain(self, at_least_s: float = 4.0, at_most_s: float = 60.0) -> dict:
        """The node's final counts: once it has reported an outcome for every frame it received (a
        large model's last frames run seconds after the camera stopped), or after at_most_s."""
        end = time.monotonic() + at_most_s
        self.spin(at_least_s)
        totals = self.totals()
        while time.monotonic() < end and frame_outcomes(totals) != totals.get("frames_received", 0):
            self.spin(0.5)
            totals = self.totals()
        return totals

    # -- camera
    def start_camera(self) -> None:
        self.camera_incarnation += 1
        count_file = self.workdir / f"camera{self.camera_incarnation}.count"
        write_atomically(count_file, "0 sent")
        self.camera_proc = (subprocess.Popen(
            [sys.executable, __file__, "camera", "--rate", str(self.args.rate), "--width", str(self.args.width),
             "--count-file", str(count_file)], env=ros_environment(), cwd=REPO,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), count_file)

    def kill_camera(self) -> None:
        proc, count_file = self.camera_proc
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        count, *sent = count_file.read_text().split()
        self.cameras_sent += int(count) if sent else int(count) - 1
        self.cameras_maybe_sent += 0 if sent else 1
        self.camera_proc = None

    # -- prompts
    def change_prompts(self, step: int) -> None:
        from geometry_msgs.msg import Point
        from std_msgs.msg import String
        from std_srvs.srv import Trigger
        from seem_ros.msg import SegmentationPrompt
        from seem_ros.srv import SetPrompt
        kind = step % 10
        if kind in (0, 4, 7):
            text = {0: "segment the zebra and the grass", 4: "stop tracking the grass", 7: "clear"}[kind]
            self.commands.publish(String(data=text))
        elif kind == 1:
            self.clicks.publish(Point(x=float(50 + 37 * step % 500), y=float(40 + 13 * step % 250)))
        elif kind == 2:
            self.prompts.publish(SegmentationPrompt(boxes=[100.0, 60.0, 300.0, 200.0], label="boxed"))
        elif kind == 9:
            self.clicks.publish(Point(x=float("nan"), y=1.0))  # bad input: refused, counted
        else:
            srv_type, name, request = {
                3: (SetPrompt, "/seem_node/set_prompt", SetPrompt.Request(prompt=SegmentationPrompt(text="the sky"))),
                5: (SetPrompt, "/seem_node/set_prompt", SetPrompt.Request(prompt=SegmentationPrompt(
                    object_id=1, positive_points=[Point(x=120.0, y=90.0)]))),
                6: (Trigger, "/seem_node/clear_prompts", Trigger.Request()),
                8: (Trigger, "/seem_node/reset_tracking", Trigger.Request()),
            }[kind]
            client = self.ros.create_client(srv_type, name)
            self.pending_calls.append((client, client.call_async(request)))
        self.prompts_sent += 1

    def settle_calls(self, timeout: float = 30.0) -> None:
        end = time.monotonic() + timeout
        while any(not f.done() for _, f in self.pending_calls) and time.monotonic() < end:
            self.spin(0.05)
        for client, _ in self.pending_calls:
            self.ros.destroy_client(client)
        self.pending_calls = []


def frame_outcomes(totals: dict) -> int:
    return sum(totals.get(f"frames_{k}", 0) for k in ("processed", "replaced", "refused", "failed", "abandoned"))


def percentile(values, q):
    import numpy as np
    return float(np.percentile(values, q)) if values else 0.0


def run(args) -> dict:
    import tempfile
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="seem_soak_"))
    soak = Soak(args, workdir)
    node = soak.start_node()
    figures = {"minutes": args.minutes, "camera_rate_hz": args.rate, "log": str(soak.log_path)}
    try:
        figures["recovered_from_corrupt_checkpoint"] = soak.recover_from_corrupt_checkpoint()
        if not figures["recovered_from_corrupt_checkpoint"]:
            raise RuntimeError(f"the node did not come up; see {soak.log_path}")
        assert soak.wait_for_log("processing /image", 60)
        figures["rss_start_mb"] = soak.rss_mb()
        soak.start_camera()
        duration = args.minutes * 60
        warm_up = min(60.0, duration / 4)  # every prompt kind and a camera restart have been seen
        start = time.monotonic()
        step, last_kill = 0, start
        rss_samples = figures["rss_every_10_s_mb"] = []
        while time.monotonic() - start < duration:
            soak.change_prompts(step)
            step += 1
            soak.spin(1.0)
            if "rss_after_warm_up_mb" not in figures and time.monotonic() - start >= warm_up:
                figures["rss_after_warm_up_mb"] = soak.rss_mb()
            if step % 10 == 0:
                rss_samples.append(round(soak.rss_mb(), 1))
            if time.monotonic() - last_kill >= CAMERA_KILL_PERIOD_S and time.monotonic() - start < duration - 5:
                soak.kill_camera()
                soak.spin(1.0)
                soak.start_camera()
                last_kill = time.monotonic()
        soak.kill_camera()
        # the SIGINT stream below is not part of the accounting
        frames_sent, frames_maybe_sent = soak.cameras_sent, soak.cameras_maybe_sent
        soak.settle_calls()
        totals = soak.drain()
        figures["rss_end_mb"] = soak.rss_mb()
        soak.start_camera()
        soak.spin(3.0)
        node.send_signal(signal.SIGINT)
        sigint = time.monotonic()
        try:
            figures["exit_code"] = node.wait(timeout=20)
        except subprocess.TimeoutExpired:
            figures["exit_code"] = None
        figures["shutdown_s"] = round(time.monotonic() - sigint, 3)
        soak.kill_camera()
    finally:
        if node.poll() is None:
            node.kill()
        if soak.camera_proc is not None:
            soak.kill_camera()
    lost = max(totals.get("frames_missed", 0), totals.get("frames_lost_in_transport", 0))
    outcomes = frame_outcomes(totals)
    received = totals.get("frames_received", 0)
    figures.update({
        "frames_sent": frames_sent, "frames_maybe_sent": frames_maybe_sent, "frames_received": received,
        "frames_processed": totals.get("frames_processed", 0), "frames_replaced": totals.get("frames_replaced", 0),
        "frames_refused": totals.get("frames_refused", 0), "frames_failed": totals.get("frames_failed", 0),
        "frames_lost_in_transport": totals.get("frames_lost_in_transport", 0),
        "frames_missed": totals.get("frames_missed", 0),
        "prompts_sent": soak.prompts_sent, "prompts_received": totals.get("prompts_received", 0),
        "prompts_applied": totals.get("prompts_applied", 0), "prompts_refused": totals.get("prompts_refused", 0),
        "prompts_dropped": totals.get("prompts_dropped", 0),
    })
    # every frame sent reached the node or was counted lost; a frame whose publishing a kill
    # interrupted may have gone either way
    arrived = received + lost
    figures["frames_unaccounted"] = (max(frames_sent - arrived, 0) + max(arrived - frames_sent - frames_maybe_sent, 0)
                                     + abs(received - outcomes))
    prompt_outcomes = figures["prompts_applied"] + figures["prompts_refused"] + figures["prompts_dropped"]
    figures["prompts_lost_uncounted"] = abs(soak.prompts_sent - figures["prompts_received"]) + abs(
        figures["prompts_received"] - prompt_outcomes)
    warm = figures.get("rss_after_warm_up_mb") or figures["rss_start_mb"]
    figures["rss_growth_pct"] = round(100 * (figures["rss_end_mb"] - warm) / warm, 2)
    end_to_end = [e for e, _ in soak.latencies]
    inference = [i for _, i in soak.latencies]
    figures.update({"results_received": len(soak.latencies),
                    "latency_end_to_end_p50_ms": round(percentile(end_to_end, 50), 1),
                    "latency_end_to_end_p99_ms": round(percentile(end_to_end, 99), 1),
                    "latency_inference_p50_ms": round(percentile(inference, 50), 1),
                    "latency_inference_p99_ms": round(percentile(inference, 99), 1)})
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    cam = sub.add_parser("camera", help="(internal) the camera process")
    cam.add_argument("--rate", type=float, default=10.0)
    cam.add_argument("--width", type=int, default=640)
    cam.add_argument("--count-file", required=True)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=10.0, help="camera frames per second")
    parser.add_argument("--width", type=int, default=640, help="camera frame width (height keeps the aspect)")
    parser.add_argument("--checkpoint", default=str(REFERENCE / "tiny" / "tiny_seem.pt"))
    parser.add_argument("--config", default=str(REFERENCE / "tiny" / "tiny_config.yaml"))
    args = parser.parse_args()
    os.environ.update(ros_environment())  # before rclpy is imported
    if args.command == "camera":
        camera(args)
        return
    figures = run(args)
    rows = [("frames sent (+ maybe sent) / received / processed / replaced", "frames_sent", "frames_maybe_sent",
             "frames_received", "frames_processed", "frames_replaced"),
            ("frames refused / failed / lost in transport / missed", "frames_refused", "frames_failed",
             "frames_lost_in_transport", "frames_missed"),
            ("frames unaccounted", "frames_unaccounted"),
            ("prompts sent / received / applied / refused / dropped", "prompts_sent", "prompts_received",
             "prompts_applied", "prompts_refused", "prompts_dropped"),
            ("prompts lost without a count", "prompts_lost_uncounted"),
            ("RSS MB start / after warm-up / end, growth %", "rss_start_mb", "rss_after_warm_up_mb", "rss_end_mb",
             "rss_growth_pct"),
            ("latency end-to-end p50 / p99 ms", "latency_end_to_end_p50_ms", "latency_end_to_end_p99_ms"),
            ("latency inference p50 / p99 ms", "latency_inference_p50_ms", "latency_inference_p99_ms"),
            ("recovered from a corrupt checkpoint", "recovered_from_corrupt_checkpoint"),
            ("SIGINT mid-stream: exit code, seconds", "exit_code", "shutdown_s")]
    print(f"seem_node soak: {args.minutes:g} min, camera {args.rate:g} Hz at width {args.width}, "
          f"camera killed every {CAMERA_KILL_PERIOD_S:g} s, prompts changed every second")
    for label, *keys in rows:
        values = " / ".join(f"{figures.get(k):.1f}" if isinstance(figures.get(k), float) else str(figures.get(k))
                            for k in keys)
        print(f"  {label:58s} {values}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

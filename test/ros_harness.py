"""Running seem_node and helper processes on loopback, isolated by a per-run ROS_DOMAIN_ID."""
import contextlib
import importlib.metadata
import os
import pathlib
import subprocess
import sys
import time
from typing import List, Optional, Sequence

import numpy as np

from conftest import REPO, reference_path
from seem_ros.ros_in.fastdds import LARGE_SHM_PROFILE, profile_environment

TOOLS = pathlib.Path(__file__).parent / "ros_tools"


def ros_distribution() -> str:
    """The ROS 2 distribution of this venv's wheels: Jazzy's are ros-jazzy-*, Kilted's plain ros-*."""
    try:
        importlib.metadata.version("ros-jazzy-rclpy")
        return "jazzy"
    except importlib.metadata.PackageNotFoundError:
        return "kilted"


def ros_environment() -> dict:
    env = dict(os.environ)
    prefix = pathlib.Path(sys.prefix)  # the venv: ROS wheels and seem_ros's messages live there
    env.update({
        "AMENT_PREFIX_PATH": str(prefix),
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        # a domain per test run, so parallel runs on one machine do not see each other
        "ROS_DOMAIN_ID": env.get("SEEM_TEST_DOMAIN_ID", str(100 + os.getpid() % 100)),
        **profile_environment(str(REPO / LARGE_SHM_PROFILE), [str(prefix)]),
        "RCUTILS_LOGGING_BUFFERED_STREAM": "0",
        # scripts (demo.sh) run in this venv, on its distribution (scripts/ros_distro.sh)
        "SEEM_ROS_VENV": str(prefix), "SEEM_ROS_DISTRO": ros_distribution(),
        "PYTHONUNBUFFERED": "1",
    })
    return env


def apply_ros_environment() -> None:
    os.environ.update(ros_environment())


class NodeProcess:
    """seem_node in its own process, its log in a file."""

    def __init__(self, log_path: pathlib.Path, params: Optional[dict] = None, name: Optional[str] = None,
                 params_files: Sequence[pathlib.Path] = ()):
        """params_files: YAML parameter files, in order, as launch_ros passes them; given, they say
        everything (the test defaults below are not added: -p would override the files)."""
        defaults = {} if params_files else {"checkpoint": str(reference_path("tiny", "tiny_seem.pt")),
                                            "model_config": str(reference_path("tiny", "tiny_config.yaml")),
                                            "image_topic": "/image", "stats_period": 2.0}
        defaults.update(params or {})
        args: List[str] = [sys.executable, "-m", "seem_ros.node.process", "--ros-args"]
        for path in params_files:
            args += ["--params-file", str(path)]
        for key, value in defaults.items():
            args += ["-p", f"{key}:={value if value != '' else repr('')}"]
        if name:
            args += ["-r", f"__node:={name}"]
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, env=ros_environment(),
                                     cwd=REPO)

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_for_log(self, text: str, timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return True
            if self.proc.poll() is not None:
                return text in self.log()
            time.sleep(0.2)
        return False

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal_and_wait(self, signum: int, timeout: float = 10.0):
        """-> (exit code, seconds from the signal to the exit); exit code None if it did not exit."""
        start = time.monotonic()
        self.proc.send_signal(signum)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = None
        return code, time.monotonic() - start

    def stop(self) -> None:
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def run_tool(name: str, *args: str, env: Optional[dict] = None) -> subprocess.Popen:
    """A helper process from ros_tools/; env: variables to change (None as a value removes one)."""
    environment = ros_environment()
    for key, value in (env or {}).items():
        if value is None:
            environment.pop(key, None)
        else:
            environment[key] = value
    return subprocess.Popen([sys.executable, str(TOOLS / f"{name}.py"), *args], env=environment, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


# ---------------------------------------------------------------- a client node in the test process
# (call apply_ros_environment() before rclpy is imported)

@contextlib.contextmanager
def node_watching_a_camera(tmp_path, ros, params, *camera):
    """seem_node started and ready, a camera_publisher process with `camera`'s arguments, and the
    results as they arrive: yields (node, results); both processes are stopped afterwards."""
    from seem_ros.msg import SegmentationResult
    node = NodeProcess(tmp_path / "seem_node.log", params)
    results = []
    ros.create_subscription(SegmentationResult, "/seem_node/result", results.append, 50)
    publisher = None
    try:
        assert node.wait_for_log("processing /image", timeout=120), node.log()
        publisher = run_tool("camera_publisher", *camera)
        yield node, results
        assert node.alive()
    finally:
        if publisher is not None:
            publisher.kill()
            publisher.wait()
        node.stop()


def result_objects(result) -> dict:
    """{id: (label, status, mode, mask)} of a result."""
    return {o.id: (o.label, o.status, o.mode,
                   np.frombuffer(bytes(o.mask.data), np.uint8).reshape(o.mask.height, o.mask.width) > 0)
            for o in result.objects}


def spin_until(node, condition, timeout: float) -> bool:
    import rclpy
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
        if condition():
            return True
    return False


def publish_until(node, publisher, msg, condition, timeout: float = 30.0) -> bool:
    """Publishes msg every 0.5 s until condition() holds: a best-effort sample sent right after
    discovery can be lost while the subscriber has not matched the publisher yet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        publisher.publish(msg)
        if spin_until(node, condition, 0.5):
            return True
    return False


def call(node, client, request, timeout=60.0, resend_after=10.0):
    """A service call; the request is sent again when no answer came within `resend_after` s:
    right after discovery Fast DDS may drop a response whose reader it has not matched yet
    ("failed to send response (timeout)"), which is the middleware's, not the node's, doing."""
    assert client.wait_for_service(timeout_sec=30), f"service {client.srv_name} not available"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        future = client.call_async(request)
        if spin_until(node, future.done, min(resend_after, deadline - time.monotonic())):
            return future.result()
        client.remove_pending_request(future)
    raise AssertionError(f"{client.srv_name} did not answer")


def answers_while_the_model_runs(ros, node_name: str) -> dict:
    """Calls get_state, set_prompt (a text) and clear_prompts over and over while one segment_image
    call keeps the model busy (seconds at a large input_short_side): {service: [seconds of each
    answer that arrived while segment_image was still running]}. Every answer must be a success."""
    from lifecycle_msgs.srv import GetState
    from seem_ros.msg import SegmentationPrompt
    from seem_ros.srv import SegmentImage, SetPrompt
    from std_srvs.srv import Trigger
    get_state = ros.create_client(GetState, f"/{node_name}/get_state")
    set_prompt = ros.create_client(SetPrompt, f"/{node_name}/set_prompt")
    clear = ros.create_client(Trigger, f"/{node_name}/clear_prompts")
    segment = ros.create_client(SegmentImage, f"/{node_name}/segment_image")
    for client in (get_state, set_prompt, clear, segment):
        assert client.wait_for_service(timeout_sec=30)
    call(ros, get_state, GetState.Request())  # warm the connections
    busy = segment.call_async(SegmentImage.Request(image=rgb_image(640, 480, stamp=5)))
    spin_until(ros, lambda: False, 0.5)  # the model is running now
    answers = {"get_state": [], "set_prompt": [], "clear_prompts": []}
    while not busy.done():
        for name, client, request in (("get_state", get_state, GetState.Request()),
                                      ("set_prompt", set_prompt, SetPrompt.Request(
                                          prompt=SegmentationPrompt(text="the zebra"))),
                                      ("clear_prompts", clear, Trigger.Request())):
            start = time.monotonic()
            answer = call(ros, client, request, timeout=60)
            if not busy.done():
                answers[name].append(time.monotonic() - start)
            assert getattr(answer, "success", True), answer
    assert busy.result().success, busy.result().message
    return answers


def node_parameters(ros, names, node: str = "/seem_node") -> dict:
    """The node's current values of `names`, read through its parameter service."""
    from rcl_interfaces.srv import GetParameters
    from rclpy.parameter import parameter_value_to_python
    client = ros.create_client(GetParameters, f"{node}/get_parameters")
    answer = call(ros, client, GetParameters.Request(names=list(names)))
    return {name: parameter_value_to_python(value) for name, value in zip(names, answer.values)}


def rgb_image(width=64, height=48, stamp=1):
    import numpy as np
    from sensor_msgs.msg import Image
    pixels = np.random.default_rng(stamp).integers(0, 255, (height, width, 3), dtype=np.uint8)
    msg = Image(height=height, width=width, encoding="rgb8", is_bigendian=0, step=width * 3)
    msg.header.frame_id = "test_camera"
    msg.header.stamp.sec = stamp
    msg.data = pixels.tobytes()
    return msg


def diagnostics_values(reports, key: str, node: str = "seem_node") -> List[str]:
    """Every value `node` published under `key` in the DiagnosticArray messages received, oldest first."""
    return [kv.value for r in reports for s in r.status if s.name.startswith(f"{node}:")
            for kv in s.values if kv.key == key]


def camera_frame(rgb: np.ndarray, frame_id: str = "test_camera"):
    """A sensor_msgs/Image of an RGB array, as a camera driver sends it; where ROS is not installed
    (the GPU machines), an object with an Image's fields, which the converter reads alike."""
    import types
    try:
        from sensor_msgs.msg import Image
        from std_msgs.msg import Header
    except ImportError:
        Image, Header = types.SimpleNamespace, types.SimpleNamespace
    rgb = np.ascontiguousarray(rgb)
    return Image(header=Header(frame_id=frame_id), height=rgb.shape[0], width=rgb.shape[1], encoding="rgb8",
                 is_bigendian=0, step=rgb.shape[1] * 3, data=rgb.tobytes())


class PublishedFrames(list):
    """In place of FramePublishers (ros_out) for a frame worker on its own: records each published
    frame as (header frame_id, objects); `on_publish` runs inside publish."""

    def __init__(self, on_publish=None):
        super().__init__()
        self.on_publish = on_publish

    def publish(self, header, rgb, objects, elapsed, live_ids) -> None:
        if self.on_publish is not None:
            self.on_publish()
        self.append((header.frame_id, objects))

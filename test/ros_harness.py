"""Running seem_node and helper processes on loopback, isolated by a per-run ROS_DOMAIN_ID."""
import os
import pathlib
import subprocess
import sys
import time
from typing import List, Optional

from conftest import REPO, reference_path

TOOLS = pathlib.Path(__file__).parent / "ros_tools"


def ros_environment() -> dict:
    env = dict(os.environ)
    prefix = pathlib.Path(sys.prefix)  # the venv: ROS wheels and seem_ros_interfaces live there
    env.update({
        "AMENT_PREFIX_PATH": str(prefix),
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        # a domain per test run, so parallel runs on one machine do not see each other
        "ROS_DOMAIN_ID": env.get("SEEM_TEST_DOMAIN_ID", str(100 + os.getpid() % 100)),
        "FASTDDS_DEFAULT_PROFILES_FILE": str(REPO / "config" / "fastdds_large_shm.xml"),
        "RCUTILS_LOGGING_BUFFERED_STREAM": "0",
        "PYTHONUNBUFFERED": "1",
    })
    return env


def apply_ros_environment() -> None:
    os.environ.update(ros_environment())


class NodeProcess:
    """seem_node in its own process, its log in a file."""

    def __init__(self, log_path: pathlib.Path, params: Optional[dict] = None, name: Optional[str] = None):
        defaults = {"checkpoint": str(reference_path("tiny", "tiny_seem.pt")),
                    "model_config": str(reference_path("tiny", "tiny_config.yaml")),
                    "image_topic": "/image", "stats_period": 2.0}
        defaults.update(params or {})
        args: List[str] = [sys.executable, "-m", "seem_ros.node_process", "--ros-args"]
        for key, value in defaults.items():
            args += ["-p", f"{key}:={value}"]
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

    def stop(self) -> None:
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def run_tool(name: str, *args: str, timeout: float = 120.0) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(TOOLS / f"{name}.py"), *args], env=ros_environment(), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

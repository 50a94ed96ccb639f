"""A real frame server for the Triton tests: `seem-ros serve` on the tiny checkpoint in its own
process, on free ports, stopped (or killed) by the test."""
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
from typing import List, Optional

import pytest

from conftest import reference_path

SERVE = [sys.executable, "-m", "seem_ros.tools.cli", "serve"]
START_TIMEOUT_S = 180  # the tiny model loads in seconds; tritonserver and its stub on a loaded 2-core machine take longer


def require_triton() -> None:
    """Skips (with the reason) where Triton Inference Server cannot start here: the wheel absent, or
    its tritonserver binary not runnable on this system."""
    pytriton = pytest.importorskip("pytriton", reason="nvidia-pytriton (Triton Inference Server) is not installed")
    binary = pathlib.Path(pytriton.__file__).parent / "tritonserver" / "bin" / "tritonserver"
    try:
        subprocess.run([str(binary), "--help"], capture_output=True, timeout=60, check=False)
    except OSError as exc:
        pytest.skip(f"tritonserver cannot run on this system: {exc}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    def __init__(self, log_dir: pathlib.Path, grpc_port: Optional[int] = None, extra: List[str] = ()):
        self.grpc_port = grpc_port or free_port()
        self.url = f"localhost:{self.grpc_port}"
        self.log_dir = log_dir
        self.extra = list(extra)
        self.process: Optional[subprocess.Popen] = None
        self.starts = 0

    def start(self) -> "ServerProcess":
        """Starts the server and waits until it says it is ready (its log is kept for failures)."""
        self.starts += 1
        tiny = reference_path("tiny")
        log = open(self.log_dir / f"serve_{self.grpc_port}_{self.starts}.log", "w")
        self.log_path = pathlib.Path(log.name)
        self.process = subprocess.Popen(
            SERVE + ["--checkpoint", str(tiny / "tiny_seem.pt"), "--config", str(tiny / "tiny_config.yaml"),
                     "--grpc-port", str(self.grpc_port), "--http-port", str(free_port()),
                     "--metrics-port", str(free_port())] + self.extra,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if "seem-ros serve: ready" in self.log_path.read_text():
                self.ready_at = time.monotonic()
                return self
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        self.stop()
        pytest.fail(f"seem-ros serve did not become ready; its log ends:\n{self.log_path.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL to the server and everything it started (tritonserver, its stub)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)
        self._reap()

    def stop(self) -> int:
        """SIGINT (Ctrl-C), as a user stops it: -> its exit code."""
        code = 0
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                code = self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()
                code = -9
        self._reap()
        return code

    def _reap(self) -> None:
        """Whatever of the process group outlived its leader (a stub) is killed too."""
        if self.process is not None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

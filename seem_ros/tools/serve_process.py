"""A frame server (`seem-ros serve`) in a process group of its own: started and waited for until
ready, stopped as a user stops it (SIGINT) or killed (SIGKILL, tritonserver and its stub with it).
For the fleet benchmark and the serving tests."""
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
from typing import List, Optional, Sequence

READY = "seem-ros serve: ready"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerStartError(RuntimeError):
    pass


class ServeProcess:
    def __init__(self, log_dir: pathlib.Path, checkpoint: str, config: str, grpc_port: Optional[int] = None,
                 extra: Sequence[str] = ()):
        self.grpc_port = grpc_port or free_port()
        self.url = f"localhost:{self.grpc_port}"
        self.log_dir = pathlib.Path(log_dir)
        self.command: List[str] = [sys.executable, "-m", "seem_ros.tools.cli", "serve", "--checkpoint", checkpoint,
                                   "--config", config, "--grpc-port", str(self.grpc_port), *extra]
        self.process: Optional[subprocess.Popen] = None
        self.starts = 0
        self.ready_at = 0.0
        self.log_path = self.log_dir / f"serve_{self.grpc_port}.log"

    def start(self, timeout_s: float = 180.0) -> "ServeProcess":
        """Starts the server (HTTP and metrics on free ports) and waits until it is ready;
        ServerStartError with its log's end when it exits or times out first."""
        self.starts += 1
        self.log_path = self.log_dir / f"serve_{self.grpc_port}_{self.starts}.log"
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                self.command + ["--http-port", str(free_port()), "--metrics-port", str(free_port())],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                env=dict(os.environ, PYTHONUNBUFFERED="1"))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if READY in self.log_path.read_text():
                self.ready_at = time.monotonic()
                return self
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        self.kill()
        raise ServerStartError(f"seem-ros serve did not become ready; its log ends:\n{self.log_path.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL to the server and everything it started."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)
        self._reap()

    def stop(self) -> int:
        """SIGINT, as a user stops it: -> its exit code."""
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

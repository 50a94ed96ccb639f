"""A real frame server for the Triton tests: `seem-ros serve` on the tiny checkpoint in its own
process (seem_ros/tools/serve_process.py), on free ports; a server that does not start fails the test."""
import pathlib
import subprocess

import pytest

from conftest import reference_path
from seem_ros.tools.serve_process import ServeProcess, ServerStartError


def require_triton() -> None:
    """Skips (with the reason) where Triton Inference Server cannot start here: the wheel absent, or
    its tritonserver binary not runnable on this system."""
    pytriton = pytest.importorskip("pytriton", reason="nvidia-pytriton (Triton Inference Server) is not installed")
    binary = pathlib.Path(pytriton.__file__).parent / "tritonserver" / "bin" / "tritonserver"
    try:
        subprocess.run([str(binary), "--help"], capture_output=True, timeout=60, check=False)
    except OSError as exc:
        pytest.skip(f"tritonserver cannot run on this system: {exc}")


class ServerProcess(ServeProcess):
    """The tiny checkpoint's server; start() fails the test (with the server's log) rather than raising."""

    def __init__(self, log_dir: pathlib.Path, grpc_port=None, extra=()):
        tiny = reference_path("tiny")
        super().__init__(log_dir, str(tiny / "tiny_seem.pt"), str(tiny / "tiny_config.yaml"), grpc_port, extra)

    def start(self, timeout_s: float = 180.0) -> "ServerProcess":
        try:
            super().start(timeout_s)
        except ServerStartError as exc:
            pytest.fail(str(exc))
        return self

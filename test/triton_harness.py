"""Real servers for the Triton tests, each in its own process on free ports (one that does not start
fails the test): `seem-ros serve` on the tiny checkpoint (seem_ros/tools/serve_process.py), and the
wheel's tritonserver on an exported repository (StandInServer); and `seem-ros track` through one
against the same command in process."""
import json
import os
import pathlib
import subprocess
import time
from typing import Sequence

import cv2
import pytest

from conftest import reference_path
from seem_ros.tools.serve_process import ServeProcess, ServerStartError, free_port


def require_triton() -> None:
    """Skips (with the reason) where Triton Inference Server cannot start here: the wheel absent, or
    its tritonserver binary not runnable on this system."""
    pytriton = pytest.importorskip("pytriton", reason="nvidia-pytriton (Triton Inference Server) is not installed")
    binary = pathlib.Path(pytriton.__file__).parent / "tritonserver" / "bin" / "tritonserver"
    try:
        subprocess.run([str(binary), "--help"], capture_output=True, timeout=60, check=False)
    except OSError as exc:
        pytest.skip(f"tritonserver cannot run on this system: {exc}")


def assert_tracks_alike(tmp_path: pathlib.Path, remote: Sequence[str], common: Sequence[str] = ()) -> None:
    """`seem-ros track` of a dog (a text and a click) with the remote arguments (--triton-url ...)
    writes what the same command writes in process: objects, scores and label images."""
    from test_cli_track import DOG, FRAMES, _track
    prompts = (DOG, "--text", "the dog", "--point", "400,250", "--max-frames", FRAMES, *common)
    runs = {"local": _track(*prompts, "--out", tmp_path / "local"),
            "served": _track(*prompts, "--out", tmp_path / "served", *remote)}
    assert all(run.returncode == 0 for run in runs.values()), {k: r.stderr[-2000:] for k, r in runs.items()}
    objects = {name: [json.loads(line) for line in (tmp_path / name / "objects.jsonl").read_text().splitlines()]
               for name in runs}
    assert len(objects["served"]) == len(objects["local"]) == 2 * FRAMES
    for ours, theirs in zip(objects["served"], objects["local"]):
        assert {k: ours[k] for k in ("frame", "id", "label", "status", "mode")} == \
               {k: theirs[k] for k in ("frame", "id", "label", "status", "mode")}
        assert abs(ours["score"] - theirs["score"]) <= 2e-4  # each written rounded to 4 decimals
    for label_image in sorted((tmp_path / "local" / "labels").glob("*.png")):
        local = cv2.imread(str(label_image), cv2.IMREAD_UNCHANGED)
        served = cv2.imread(str(tmp_path / "served" / "labels" / label_image.name), cv2.IMREAD_UNCHANGED)
        assert (local == served).mean() > 0.9999


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


# The Python-backend model standing in for Triton's ONNX Runtime backend: the model's ONNX graph in
# ONNX Runtime, each request run as it comes (inputs and outputs by the graph's names)
STAND_IN_MODEL = '''
import pathlib
import onnxruntime
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        graph = pathlib.Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        self.session = onnxruntime.InferenceSession(str(graph), providers=["CPUExecutionProvider"])

    def execute(self, requests):
        responses = []
        for request in requests:
            feeds = {i.name: pb_utils.get_input_tensor_by_name(request, i.name).as_numpy()
                     for i in self.session.get_inputs()}
            outputs = self.session.run(None, feeds)
            responses.append(pb_utils.InferenceResponse(
                [pb_utils.Tensor(o.name, value) for o, value in zip(self.session.get_outputs(), outputs)]))
        return responses
'''


class StandInServer(ServeProcess):
    """The pytriton wheel's tritonserver serving an exported repository (seem-ros export-triton) as it
    is written, except that its ONNX models run in the Python backend (their graphs in ONNX Runtime)
    where NVIDIA's images run them in the ONNX Runtime backend, which the wheel does not ship: Triton's
    own config parsing, ensemble validation and scheduling and dynamic batching, on the exported graphs."""

    def __init__(self, exported: pathlib.Path, work_dir: pathlib.Path):
        import shutil
        import sys
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2

        import pytriton
        from seem_ros.runtime.triton_repository import DECODER_MODEL, ENCODER_MODEL
        from seem_ros.runtime.triton_server import interpreter_library_path, stub_environment
        super().__init__(work_dir, "", "")
        repository = work_dir / "repository"
        shutil.copytree(exported, repository)
        for name in (ENCODER_MODEL, DECODER_MODEL):
            path = repository / name / "config.pbtxt"
            config = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
            config.backend = "python"
            config.ClearField("optimization")
            for group in config.instance_group:
                group.kind = model_config_pb2.ModelInstanceGroup.KIND_CPU
            path.write_text(text_format.MessageToString(config))
            (repository / name / "1" / "model.py").write_text(STAND_IN_MODEL)
        wheel = pathlib.Path(pytriton.__file__).parent / "tritonserver"
        backend = work_dir / "backends" / "python"
        backend.mkdir(parents=True)
        for part in ("libtriton_python.so", "triton_python_backend_utils.py"):
            (backend / part).symlink_to(wheel / "backends" / "python" / part)
        version = f"{sys.version_info[0]}.{sys.version_info[1]}"
        shutil.copy(wheel / "python_backend_stubs" / version / "triton_python_backend_stub", backend)
        self.command = [str(wheel / "bin" / "tritonserver"), f"--model-repository={repository}",
                        f"--backend-directory={backend.parent}", f"--grpc-port={self.grpc_port}"]
        self.http_port = free_port()
        # what seem-ros serve's launcher (runtime/triton_server.py) and pytriton set up for the server and its stub
        from pytriton.utils.distribution import get_libs_path
        self.env = dict(os.environ, LD_LIBRARY_PATH=interpreter_library_path(os.pathsep.join(filter(None, [
            os.environ.get("LD_LIBRARY_PATH", ""), str(get_libs_path())]))),
            PATH=f"{stub_environment() / 'bin'}{os.pathsep}{os.environ['PATH']}")

    def start(self, timeout_s: float = 180.0) -> "StandInServer":
        import urllib.request
        self.log_path = self.log_dir / "tritonserver.log"
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(self.command + [f"--http-port={self.http_port}",
                                                            f"--metrics-port={free_port()}"],
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=self.env)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://localhost:{self.http_port}/v2/health/ready", timeout=2) as reply:
                    if reply.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        self.kill()
        pytest.fail(f"tritonserver did not become ready; its log ends:\n{self.log_path.read_text()[-3000:]}")

"""`seem-ros serve`: a Triton Inference Server (the real tritonserver binary and Python backend that
the nvidia-pytriton wheel bundles) hosting the SEEM frame model (frame_server) with Triton's dynamic
batcher across requests from different robots, its health, readiness and metrics endpoints, and a
second model, seem_frame_info, that says what the server runs (triton_protocol.ServerInfo).

Two things the wheel needs that a user's shell should not have to know:
- its Python-backend stub links libpython3.11 by name and finds the system's copy first, which may
  be another 3.11 build than the running interpreter (the model then fails to load with
  "'_thread.RLock' object has no attribute '_recursion_count'"): the server is started with the
  running interpreter's library folder first on LD_LIBRARY_PATH;
- the stub, built against numpy 1.x, returns empty outputs under numpy 2 (every response arrives
  with its shape and no bytes), while this package's environment has numpy 2 (OpenCV 5 needs it):
  the stub runs in an environment of its own (stub_environment) holding numpy 1.x in front of this
  environment's packages. Only the stub sees it; the model runs in this process.
"""
import logging
import os
import pathlib
import subprocess
import sys
import sysconfig
from typing import Callable, List, Optional, Sequence

import numpy as np

from seem_ros.runtime.triton_protocol import (FRAME_MODEL, INFO_MODEL, OPTIONAL, PROTOCOL_VERSION, REQUEST_TENSORS,
                                              RESPONSE_TENSORS, FrameRequest, FrameResponse, ServerInfo, from_arrays,
                                              to_arrays)
from seem_ros.runtime.torch_thread import TorchThread

LOG = logging.getLogger(__name__)
STUB_NUMPY = "numpy>=1.21,<2"


def interpreter_library_path(existing: str = "") -> str:
    """An LD_LIBRARY_PATH with the running interpreter's library folder first, then `existing`: the
    stub then links this interpreter's libpython3.11 (see above)."""
    return os.pathsep.join(filter(None, [sysconfig.get_config_var("LIBDIR"), existing]))


def stub_environment(path: str = "") -> pathlib.Path:
    """The Python environment the Triton Python-backend stub runs in: this one where its numpy is
    1.x, else a venv at `path` (default: beside this environment, <prefix>/triton-stub) with numpy
    1.x and a .pth file that appends this environment's packages; created on first use (pip
    fetches numpy once: scripts/setup.sh does it ahead)."""
    if int(np.__version__.split(".")[0]) < 2:
        return pathlib.Path(sys.exec_prefix)
    env = pathlib.Path(path or os.path.join(sys.prefix, "triton-stub"))
    python = env / "bin" / "python"
    site = pathlib.Path(sysconfig.get_paths(vars={"base": str(env), "platbase": str(env)})["purelib"])
    link = site / "seem_ros_parent_environment.pth"
    if not link.is_file():
        LOG.info("creating the Triton Python-backend stub's environment in %s (numpy 1.x)", env)
        subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", STUB_NUMPY], check=True)
        link.write_text(sysconfig.get_paths()["purelib"] + "\n")  # written last: its presence means ready
    return env


def serve(server: Callable[[Sequence[FrameRequest]], List[FrameResponse]], info: ServerInfo, grpc_port: int = 8001, http_port: int = 8000,
          metrics_port: int = 8002, queue_delay_us: int = 2000, max_queue_size: int = 0,
          stub_env: str = "", log_verbose: int = 0, ready: Optional[Callable[[], None]] = None) -> None:
    """server: a frame_server.FrameServer (or what calls one). Serves until interrupted (SIGINT/SIGTERM). max_queue_size > 0: requests beyond it are
    refused at once (Triton's queue policy) rather than queued; ready() is called once serving."""
    import pytriton.server.triton_server as triton_server_module
    from pytriton.model_config import DynamicBatcher, ModelConfig, QueuePolicy, Tensor
    from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

    os.environ["LD_LIBRARY_PATH"] = interpreter_library_path(os.environ.get("LD_LIBRARY_PATH", ""))
    env = stub_environment(stub_env)
    # pytriton starts the stub in the environment this function names (it puts its bin/ first on PATH)
    triton_server_module.get_triton_python_backend_python_env = lambda: env

    model_thread = TorchThread()

    def infer(requests):  # in pytriton's handler thread: the main thread runs the model (torch_thread)
        return model_thread.call(run_frames, requests)

    def run_frames(requests):
        frames = [from_arrays(FrameRequest, {name: array[0] for name, array in request.items()}) for request in requests]
        return [{name: array[None] for name, array in to_arrays(response).items()} for response in server(frames)]

    def describe(requests):
        return [{"info": np.array([info.to_json().encode()], dtype=np.object_)} for _ in requests]

    policy = QueuePolicy(max_queue_size=max_queue_size) if max_queue_size > 0 else None
    config = TritonConfig(grpc_port=grpc_port, http_port=http_port, metrics_port=metrics_port, log_verbose=log_verbose)
    # pytriton guards shared memory with a token of its own by default: opened to robots on this host
    # (a system shared-memory region can only be registered from the server's host), loading and
    # unloading models still guarded
    security = TritonSecurityConfig(restricted_endpoints=["model-repository", "trace", "logging"])
    with Triton(config=config, security_config=security) as triton:
        triton.bind(model_name=FRAME_MODEL, model_version=PROTOCOL_VERSION, infer_func=infer,
                    inputs=[Tensor(name=name, dtype=dtype, shape=dims, optional=name in OPTIONAL)
                            for name, dtype, dims in REQUEST_TENSORS],
                    outputs=[Tensor(name=name, dtype=dtype, shape=dims) for name, dtype, dims in RESPONSE_TENSORS],
                    config=ModelConfig(max_batch_size=info.max_batch_size, batcher=DynamicBatcher(
                        max_queue_delay_microseconds=queue_delay_us, default_queue_policy=policy)))
        triton.bind(model_name=INFO_MODEL, infer_func=describe,
                    inputs=[Tensor(name="request", dtype=np.int8, shape=(1,))],
                    outputs=[Tensor(name="info", dtype=bytes, shape=(1,))],
                    config=ModelConfig(batching=False))
        LOG.info("serving %s v%d (%s) on gRPC :%d, HTTP :%d, metrics :%d", FRAME_MODEL, PROTOCOL_VERSION,
                 info.backend, grpc_port, http_port, metrics_port)
        triton.run()
        if ready is not None:
            ready()
        try:  # the model runs on this thread, the main one, where it loaded (torch_thread)
            model_thread.run(alive=triton.is_alive)
        except KeyboardInterrupt:
            LOG.info("SIGINT received: stopping")

"""Native TensorRT (the `tensorrt` Python API: 10.x as JetPack 6 and 7 ship it, and 11.x): engines
built from the exported ONNX graphs and kept by EngineCache, run with torch CUDA tensors as bindings
on the current CUDA stream (no host copies).

Every network is created strongly typed (NetworkDefinitionCreationFlag.STRONGLY_TYPED: each tensor
computes in the type the ONNX graph gives it), the one mode TensorRT 11 has and the same build on
10.x, with TF32 off so that fp32 means fp32. fp16 engines are built from the mixed-precision graph
(mixed_precision: fp16 with LayerNorm, softmax, reductions and the outputs in fp32 islands; fp16
LayerNorm overflows in SAM-like encoders, NVIDIA/TensorRT#2564, segment-anything#696), so no
precision flag or per-layer constraint is set: weak typing (BuilderFlag.FP16, precision
constraints) is deprecated in 10.x and gone in 11.x.

`trt` below is the tensorrt module, imported at its first use (the stubs type-check every call).
"""
import contextlib
import logging
import os
import time
from typing import TYPE_CHECKING, Callable, ContextManager, Dict, List, Sequence, Tuple

import torch
from torch import Tensor

from seem_ros.runtime.engine_cache import EngineCache, EngineKey, GraphSpec, write_atomically
from seem_ros.runtime.exported import GraphRunner
from seem_ros.runtime.onnx_graphs import DECODER_OUTPUTS, ENCODER_OUTPUTS
from seem_ros.weights import remembered_sha256

LOG = logging.getLogger(__name__)
BUILDER_FLAGS = ("strongly typed", "no TF32")


def import_tensorrt():
    """The tensorrt module; ImportError with what to install when it is absent."""
    try:
        import tensorrt
    except ImportError as exc:
        raise ImportError("backend 'tensorrt' needs TensorRT's Python package (`import tensorrt`): on a Jetson it "
                          "comes with JetPack (python3-libnvinfer), on a desktop `pip install tensorrt` "
                          f"({exc})") from exc
    return tensorrt


if TYPE_CHECKING:
    import tensorrt as trt
else:
    class _ImportedAtFirstUse:
        def __getattr__(self, name: str):
            return getattr(import_tensorrt(), name)

    trt = _ImportedAtFirstUse()


def engine_key(trt_version: str, onnx_path: str, precision: str, example: Dict[str, Tensor], device) -> EngineKey:
    props = torch.cuda.get_device_properties(device)
    return EngineKey(tensorrt=trt_version, gpu=props.name, compute_capability=f"{props.major}.{props.minor}",
                     onnx_sha256=remembered_sha256(onnx_path), precision=precision,
                     shapes=tuple((name, tuple(t.shape)) for name, t in example.items()),
                     builder_flags=BUILDER_FLAGS)


def _progress_monitor(log) -> "trt.IProgressMonitor":
    """Build progress in the log (builds take minutes on a Jetson)."""
    class Progress(trt.IProgressMonitor):
        def __init__(self):
            trt.IProgressMonitor.__init__(self)
            self.last = 0.0

        def phase_start(self, phase_name: str, parent_phase: str, num_steps: int) -> None:
            log.info("TensorRT build: %s (%d steps)", phase_name, num_steps)

        def step_complete(self, phase_name: str, step: int) -> bool:
            if time.monotonic() - self.last > 5.0:
                self.last = time.monotonic()
                log.info("TensorRT build: %s, step %d", phase_name, step + 1)
            return True  # go on building

        def phase_finish(self, phase_name: str) -> None:
            pass
    return Progress()


def build_serialized_engine(onnx_path: str, key: EngineKey, timing_cache_path: str, log=LOG,
                            workspace_bytes: int = 4 << 30) -> bytes:
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(onnx_path):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    config.clear_flag(trt.BuilderFlag.TF32)
    timing = b""
    if os.path.isfile(timing_cache_path):
        with open(timing_cache_path, "rb") as f:
            timing = f.read()
    config.set_timing_cache(config.create_timing_cache(timing), ignore_mismatch=True)
    config.progress_monitor = _progress_monitor(log)
    started = time.monotonic()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT could not build an engine from {onnx_path} (its log says why)")
    log.info("TensorRT engine built in %.0f s", time.monotonic() - started)
    write_atomically(timing_cache_path, bytes(config.get_timing_cache().serialize()))
    return bytes(serialized)


def deserializer() -> Callable[[bytes], "trt.ICudaEngine"]:
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))

    def deserialize(data: bytes) -> "trt.ICudaEngine":
        engine = runtime.deserialize_cuda_engine(data)
        if engine is None:  # a version or GPU mismatch, or damaged data: TensorRT logged why
            raise RuntimeError("deserialize_cuda_engine returned nothing")
        return engine
    return deserialize


def _on_device(device) -> ContextManager:
    """TensorRT works on the current CUDA device: an engine for cuda:1 is deserialised, given its
    execution context and run with cuda:1 current."""
    device = torch.device(device)
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def _shape(dims: "trt.Dims") -> Tuple[int, ...]:
    return tuple(dims[i] for i in range(len(dims)))


class TensorRTGraph:
    """An engine as a GraphRunner: inputs bound as they are (made contiguous, cast to the
    engine's types), outputs written into buffers allocated once and copied out (the next run
    overwrites them), run on torch's current CUDA stream of the engine's device."""

    def __init__(self, engine: "trt.ICudaEngine", output_names: Sequence[str], device):
        dtypes = {trt.float32: torch.float32, trt.float16: torch.float16, trt.bfloat16: torch.bfloat16,
                  trt.int64: torch.int64, trt.int32: torch.int32, trt.int8: torch.int8, trt.uint8: torch.uint8,
                  trt.bool: torch.bool}
        self.engine = engine
        with _on_device(device):
            self.context = engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.inputs = {n: dtypes[engine.get_tensor_dtype(n)] for n in names
                       if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT}
        self.outputs = [torch.empty(_shape(engine.get_tensor_shape(n)), dtype=dtypes[engine.get_tensor_dtype(n)],
                                    device=device) for n in output_names]
        for name, buffer in zip(output_names, self.outputs):
            self.context.set_tensor_address(name, buffer.data_ptr())
        # where the buffers really are: "cuda" names no index, its tensors are on cuda:<current>
        self.device = self.outputs[0].device if self.outputs else torch.device(device)

    def __call__(self, inputs: Dict[str, Tensor]) -> List[Tensor]:
        bound = []  # kept alive until the run is enqueued
        for name, dtype in self.inputs.items():
            if inputs[name].device != self.device:  # TensorRT reads device memory: a host pointer is garbage
                raise ValueError(f"TensorRT engine input {name} is on {inputs[name].device}, the engine on "
                                 f"{self.device}")
            tensor = inputs[name].to(dtype).contiguous()
            bound.append(tensor)
            self.context.set_tensor_address(name, tensor.data_ptr())
        with _on_device(self.device):
            ran = self.context.execute_async_v3(torch.cuda.current_stream(self.device).cuda_stream)
        if not ran:
            raise RuntimeError("TensorRT execution failed (its log says why)")
        return [buffer.clone() for buffer in self.outputs]


def tensorrt_opener(cache_dir: str, device, built: List[str], log=LOG):
    """Opens graphs as TensorRT engines from the engine cache (building them when needed), in the
    precision of the graph's spec; built collects a line per engine built, with the reason."""
    props = torch.cuda.get_device_properties(device)
    timing_cache = os.path.join(cache_dir, f"timing_{props.name.replace(' ', '_')}_trt{trt.__version__}.cache")
    cache = EngineCache(lambda onnx, key: build_serialized_engine(onnx, key, timing_cache, log), deserializer(),
                        cache_dir, log)

    def open_graph(path: str, spec: GraphSpec, example: Dict[str, Tensor]) -> GraphRunner:
        with _on_device(device):
            cached = cache.get(path, engine_key(trt.__version__, path, spec.precision, example, device))
        if cached.built:
            built.append(f"{os.path.basename(cached.path)}: {cached.reason}")
        return TensorRTGraph(cached.engine, ENCODER_OUTPUTS if spec.graph == "encoder" else DECODER_OUTPUTS,
                             device)
    return open_graph

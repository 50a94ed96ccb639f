"""Native TensorRT (the `tensorrt` Python API, TensorRT 10, as JetPack ships it): engines built
from the exported ONNX graphs and kept by EngineCache, run with torch CUDA tensors as bindings on
the current CUDA stream (no host copies).

fp16 builds keep LayerNorm, softmax and the layers producing the outputs (the mask logits) in
fp32 through layer precision constraints: fp16 LayerNorm overflows in SAM-like encoders
(NVIDIA/TensorRT#2564, segment-anything#696). fp32 builds disable TF32, so that fp32 means fp32.
"""
import logging
import os
import time
from typing import Callable, Dict, List, Sequence

import torch
from torch import Tensor

from seem_ros.runtime.engine_cache import EngineCache, EngineKey, GraphSpec, write_atomically
from seem_ros.runtime.exported import GraphRunner
from seem_ros.runtime.onnx_graphs import DECODER_OUTPUTS, ENCODER_OUTPUTS
from seem_ros.weights import remembered_sha256

LOG = logging.getLogger(__name__)
BUILDER_FLAGS = {"fp32": ("no TF32",), "fp16": ("no TF32", "FP16", "OBEY_PRECISION_CONSTRAINTS",
                                                "fp32: LayerNorm, softmax, outputs")}


def import_tensorrt():
    """The tensorrt module; ImportError with what to install when it is absent."""
    try:
        import tensorrt
    except ImportError as exc:
        raise ImportError("backend 'tensorrt' needs TensorRT's Python package (`import tensorrt`): on a Jetson it "
                          "comes with JetPack (python3-libnvinfer), on a desktop `pip install tensorrt` "
                          f"({exc})") from exc
    return tensorrt


def engine_key(trt_version: str, onnx_path: str, precision: str, example: Dict[str, Tensor], device) -> EngineKey:
    props = torch.cuda.get_device_properties(device)
    return EngineKey(tensorrt=trt_version, gpu=props.name, compute_capability=f"{props.major}.{props.minor}",
                     onnx_sha256=remembered_sha256(onnx_path), precision=precision,
                     shapes=tuple((name, tuple(t.shape)) for name, t in example.items()),
                     builder_flags=BUILDER_FLAGS[precision])


def _progress_monitor(trt, log):
    """Build progress in the log (builds take minutes on a Jetson)."""
    class Progress(trt.IProgressMonitor):
        def __init__(self):
            trt.IProgressMonitor.__init__(self)
            self.last = 0.0

        def phase_start(self, phase_name, parent_phase, num_steps):
            log.info("TensorRT build: %s (%d steps)", phase_name, num_steps)

        def step_complete(self, phase_name, step):
            if time.monotonic() - self.last > 5.0:
                self.last = time.monotonic()
                log.info("TensorRT build: %s, step %d", phase_name, step + 1)
            return True  # go on building

        def phase_finish(self, phase_name):
            pass
    return Progress()


def _keep_fp32(trt, network) -> None:
    outputs = {network.get_output(i).name for i in range(network.num_outputs)}
    floats = (trt.float32, trt.float16)
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        produces_output = any(layer.get_output(j).name in outputs for j in range(layer.num_outputs))
        if layer.type in (trt.LayerType.NORMALIZATION, trt.LayerType.SOFTMAX) or produces_output:
            layer.precision = trt.float32
            for j in range(layer.num_outputs):
                if layer.get_output(j).dtype in floats:
                    layer.set_output_type(j, trt.float32)


def build_serialized_engine(onnx_path: str, key: EngineKey, timing_cache_path: str, log=LOG,
                            workspace_bytes: int = 4 << 30) -> bytes:
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch only
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(onnx_path):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    config.clear_flag(trt.BuilderFlag.TF32)
    if key.precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        _keep_fp32(trt, network)
    timing = b""
    if os.path.isfile(timing_cache_path):
        with open(timing_cache_path, "rb") as f:
            timing = f.read()
    config.set_timing_cache(config.create_timing_cache(timing), ignore_mismatch=True)
    config.progress_monitor = _progress_monitor(trt, log)
    started = time.monotonic()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT could not build an engine from {onnx_path} (its log says why)")
    log.info("TensorRT engine built in %.0f s", time.monotonic() - started)
    write_atomically(timing_cache_path, bytes(config.get_timing_cache().serialize()))
    return bytes(serialized)


def deserializer(trt) -> Callable[[bytes], object]:
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))

    def deserialize(data: bytes):
        engine = runtime.deserialize_cuda_engine(data)
        if engine is None:  # a version or GPU mismatch, or damaged data: TensorRT logged why
            raise RuntimeError("deserialize_cuda_engine returned nothing")
        return engine
    return deserialize


class TensorRTGraph:
    """An engine as a GraphRunner: inputs bound as they are (made contiguous, cast to the
    engine's types), outputs written into buffers allocated once and copied out (the next run
    overwrites them), run on torch's current CUDA stream."""

    def __init__(self, trt, engine, output_names: Sequence[str], device):
        dtypes = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int64: torch.int64,
                  trt.int32: torch.int32, trt.bool: torch.bool}
        self.engine = engine
        self.context = engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.inputs = {n: dtypes[engine.get_tensor_dtype(n)] for n in names
                       if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT}
        self.outputs = [torch.empty(tuple(engine.get_tensor_shape(n)), dtype=dtypes[engine.get_tensor_dtype(n)],
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
        if not self.context.execute_async_v3(torch.cuda.current_stream().cuda_stream):
            raise RuntimeError("TensorRT execution failed (its log says why)")
        return [buffer.clone() for buffer in self.outputs]


def tensorrt_opener(precision: str, cache_dir: str, device, built: List[str], log=LOG):
    """Opens graphs as TensorRT engines from the engine cache (building them when needed);
    built collects a line per engine built, with the reason."""
    trt = import_tensorrt()
    props = torch.cuda.get_device_properties(device)
    timing_cache = os.path.join(cache_dir, f"timing_{props.name.replace(' ', '_')}_trt{trt.__version__}.cache")
    cache = EngineCache(lambda onnx, key: build_serialized_engine(onnx, key, timing_cache, log), deserializer(trt),
                        cache_dir, log)

    def open_graph(path: str, spec: GraphSpec, example: Dict[str, Tensor]) -> GraphRunner:
        cached = cache.get(path, engine_key(trt.__version__, path, precision, example, device))
        if cached.built:
            built.append(f"{os.path.basename(cached.path)}: {cached.reason}")
        return TensorRTGraph(trt, cached.engine, ENCODER_OUTPUTS if spec.graph == "encoder" else DECODER_OUTPUTS,
                             device)
    return open_graph

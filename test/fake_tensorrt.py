"""A recording stand-in for the `tensorrt` module, with the names and signatures of its stubs
(tensorrt-stubs 10.13), for driving the TensorRT backend where TensorRT cannot run: what is built
(flags, network creation flags, the parsed graph's inputs and outputs), what is deserialized, and
what each execution binds (addresses, stream). It computes nothing: a test double for the calls,
never proof that an engine runs.

`fake_tensorrt("10.13.0")` still has weak typing's builder flags (BuilderFlag.FP16,
OBEY_PRECISION_CONSTRAINTS), which a strongly typed network refuses; `fake_tensorrt("11.0.0")` has
not, as in TensorRT 11."""
import enum
import json
import types
from typing import Dict, List

import onnx

ONNX_TYPES = {onnx.TensorProto.FLOAT: "FLOAT", onnx.TensorProto.FLOAT16: "HALF", onnx.TensorProto.BFLOAT16: "BF16",
              onnx.TensorProto.INT8: "INT8", onnx.TensorProto.UINT8: "UINT8", onnx.TensorProto.INT32: "INT32",
              onnx.TensorProto.INT64: "INT64", onnx.TensorProto.BOOL: "BOOL"}


class DataType(enum.Enum):
    FLOAT, HALF, INT8, INT32, BOOL, UINT8, FP8, BF16, INT64 = 0, 1, 2, 3, 4, 5, 6, 7, 8


class TensorIOMode(enum.Enum):
    NONE, INPUT, OUTPUT = 0, 1, 2


class NetworkDefinitionCreationFlag(enum.IntEnum):
    EXPLICIT_BATCH, STRONGLY_TYPED = 0, 1


class MemoryPoolType(enum.Enum):
    WORKSPACE = 0


class ILogger:
    class Severity(enum.IntEnum):
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = 0, 1, 2, 3, 4


class Logger(ILogger):
    WARNING = ILogger.Severity.WARNING

    def __init__(self, min_severity: ILogger.Severity = ILogger.Severity.WARNING) -> None:
        self.min_severity = min_severity


class IProgressMonitor:
    def __init__(self) -> None:
        pass


class Dims(tuple):
    """tensorrt.Dims: a sequence of ints (indexing and len)."""


class ITensor:
    def __init__(self, name: str, dtype: DataType, shape: tuple) -> None:
        self.name, self.dtype, self.shape = name, dtype, Dims(shape)


class INetworkDefinition:
    def __init__(self, flags: int) -> None:
        self.flags = flags
        self.inputs: List[ITensor] = []
        self.outputs: List[ITensor] = []
        self.fp16_values = 0  # fp16 weights and Casts to fp16 in the parsed graph


class ParserError:
    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text


class OnnxParser:
    """Reads the ONNX graph's inputs and outputs (names, types, shapes) and counts its fp16 values."""

    def __init__(self, network: INetworkDefinition, logger: ILogger) -> None:
        self.network = network
        self.errors: List[ParserError] = []

    @property
    def num_errors(self) -> int:
        return len(self.errors)

    def get_error(self, index: int) -> ParserError:
        return self.errors[index]

    def parse_from_file(self, model: str) -> bool:
        graph = onnx.load(model, load_external_data=False).graph
        initializers = {i.name for i in graph.initializer}

        def tensor(value) -> ITensor:
            kind = value.type.tensor_type
            shape = tuple(d.dim_value for d in kind.shape.dim)
            return ITensor(value.name, DataType[ONNX_TYPES[kind.elem_type]], shape)
        self.network.inputs = [tensor(v) for v in graph.input if v.name not in initializers]
        self.network.outputs = [tensor(v) for v in graph.output]
        half = onnx.TensorProto.FLOAT16
        self.network.fp16_values = (sum(i.data_type == half for i in graph.initializer)
                                    + sum(n.op_type == "Cast" and n.attribute[0].i == half for n in graph.node))
        return True


class ITimingCache:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def serialize(self) -> bytes:
        return self.data + b"+"


class IBuilderConfig:
    def __init__(self) -> None:
        self.flags = set()
        self.cleared = set()
        self.pools: Dict[MemoryPoolType, int] = {}
        self.timing_cache = None
        self.progress_monitor = None

    def set_memory_pool_limit(self, pool: MemoryPoolType, pool_size: int) -> None:
        self.pools[pool] = pool_size

    def set_flag(self, flag) -> None:
        self.flags.add(flag.name)

    def clear_flag(self, flag) -> None:
        self.cleared.add(flag.name)

    def create_timing_cache(self, serialized_timing_cache: bytes) -> ITimingCache:
        return ITimingCache(bytes(serialized_timing_cache))

    def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
        self.timing_cache = cache
        return True

    def get_timing_cache(self) -> ITimingCache:
        return self.timing_cache


class IExecutionContext:
    def __init__(self, engine: "ICudaEngine") -> None:
        self.engine = engine
        self.addresses: Dict[str, int] = {}

    def set_tensor_address(self, name: str, memory: int) -> bool:
        self.addresses[name] = memory
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        missing = [t["name"] for t in self.engine.spec["tensors"] if t["name"] not in self.addresses]
        assert not missing, f"tensors without an address: {missing}"
        self.engine.module.executions.append((dict(self.addresses), stream_handle))
        return True


class ICudaEngine:
    def __init__(self, module, spec: dict) -> None:
        self.module, self.spec = module, spec

    @property
    def num_io_tensors(self) -> int:
        return len(self.spec["tensors"])

    def _tensor(self, name: str) -> dict:
        return next(t for t in self.spec["tensors"] if t["name"] == name)

    def get_tensor_name(self, index: int) -> str:
        return self.spec["tensors"][index]["name"]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return TensorIOMode[self._tensor(name)["mode"]]

    def get_tensor_dtype(self, name: str) -> DataType:
        return DataType[self._tensor(name)["dtype"]]

    def get_tensor_shape(self, name: str) -> Dims:
        return Dims(self._tensor(name)["shape"])

    def create_execution_context(self) -> IExecutionContext:
        return IExecutionContext(self)


def fake_tensorrt(version: str) -> types.ModuleType:
    """A fresh fake module; `builds`, `deserialized` and `executions` record what happened."""
    module = types.ModuleType("tensorrt")
    weak_typing = int(version.split(".")[0]) < 11
    flags = ["TF32"] + (["FP16", "OBEY_PRECISION_CONSTRAINTS"] if weak_typing else [])
    module.BuilderFlag = enum.Enum("BuilderFlag", flags)
    module.builds, module.deserialized, module.executions = [], [], []

    class Builder:
        def __init__(self, logger: ILogger) -> None:
            self.logger = logger

        def create_network(self, flags: int = 0) -> INetworkDefinition:
            return INetworkDefinition(flags)

        def create_builder_config(self) -> IBuilderConfig:
            return IBuilderConfig()

        def build_serialized_network(self, network: INetworkDefinition, config: IBuilderConfig) -> bytes:
            strongly_typed = bool(network.flags & 1 << int(NetworkDefinitionCreationFlag.STRONGLY_TYPED))
            if strongly_typed and config.flags & {"FP16", "OBEY_PRECISION_CONSTRAINTS"}:
                raise AssertionError("a strongly typed network takes no precision flags")
            tensors = ([dict(name=t.name, mode="INPUT", dtype=t.dtype.name, shape=list(t.shape)) for t in network.inputs]
                       + [dict(name=t.name, mode="OUTPUT", dtype=t.dtype.name, shape=list(t.shape))
                          for t in network.outputs])
            module.builds.append(dict(strongly_typed=strongly_typed, flags=sorted(config.flags),
                                      cleared=sorted(config.cleared), fp16_values=network.fp16_values,
                                      progress_monitor=isinstance(config.progress_monitor, IProgressMonitor)))
            return json.dumps(dict(version=version, tensors=tensors)).encode()

    class Runtime:
        def __init__(self, logger: ILogger) -> None:
            self.logger = logger

        def deserialize_cuda_engine(self, serialized_engine: bytes) -> ICudaEngine:
            spec = json.loads(bytes(serialized_engine))
            if spec["version"] != version:
                return None  # TensorRT refuses an engine of another version
            module.deserialized.append(len(serialized_engine))
            return ICudaEngine(module, spec)

    names = dict(__version__=version, Builder=Builder, Runtime=Runtime, Logger=Logger, ILogger=ILogger,
                 OnnxParser=OnnxParser, IProgressMonitor=IProgressMonitor, DataType=DataType,
                 TensorIOMode=TensorIOMode, NetworkDefinitionCreationFlag=NetworkDefinitionCreationFlag,
                 MemoryPoolType=MemoryPoolType, float32=DataType.FLOAT,
                 float16=DataType.HALF, bfloat16=DataType.BF16, int8=DataType.INT8, uint8=DataType.UINT8,
                 int32=DataType.INT32, int64=DataType.INT64, bool=DataType.BOOL)
    for name, value in names.items():
        setattr(module, name, value)
    return module

"""A recording stand-in for the `tensorrt` module, with the names and signatures of its stubs
(tensorrt-stubs 10.13), for driving the TensorRT backend where TensorRT cannot run: what is built
(flags, network creation flags, the parsed graph's inputs and outputs), what is deserialized, and
what each execution binds (addresses, stream). It computes nothing: a test double for the calls,
never proof that an engine runs.

`fake_tensorrt("10.13.0")` has weak typing (BuilderFlag.FP16, OBEY_PRECISION_CONSTRAINTS, layer
precisions); `fake_tensorrt("11.0.0")` has not, as in TensorRT 11."""
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


class LayerType(enum.Enum):
    CONVOLUTION, NORMALIZATION, SOFTMAX, MATRIX_MULTIPLY = 0, 1, 2, 3


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


class ILayer:
    def __init__(self, layer_type: LayerType, outputs: List[ITensor]) -> None:
        self.type = layer_type
        self._outputs = outputs
        self.num_outputs = len(outputs)
        self.output_types: Dict[int, DataType] = {}
        self._precision = None

    @property
    def precision(self) -> DataType:
        return self._precision

    @precision.setter
    def precision(self, dtype: DataType) -> None:
        self._precision = dtype

    def get_output(self, index: int) -> ITensor:
        return self._outputs[index]

    def set_output_type(self, index: int, dtype: DataType) -> None:
        self.output_types[index] = dtype


class INetworkDefinition:
    def __init__(self, flags: int) -> None:
        self.flags = flags
        self.inputs: List[ITensor] = []
        self.outputs: List[ITensor] = []
        self.layers: List[ILayer] = []

    @property
    def num_outputs(self) -> int:
        return len(self.outputs)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def get_output(self, index: int) -> ITensor:
        return self.outputs[index]

    def get_layer(self, index: int) -> ILayer:
        return self.layers[index]


class ParserError:
    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text


class OnnxParser:
    """Reads the ONNX graph's inputs and outputs (names, types, shapes) and its layers' kinds."""

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
        by_name = {t.name: t for t in self.network.outputs}
        kinds = {"LayerNormalization": LayerType.NORMALIZATION, "Softmax": LayerType.SOFTMAX,
                 "MatMul": LayerType.MATRIX_MULTIPLY}
        for node in graph.node:
            outputs = [by_name.get(name) or ITensor(name, DataType.FLOAT, ()) for name in node.output]
            self.network.layers.append(ILayer(kinds.get(node.op_type, LayerType.CONVOLUTION), outputs))
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
            constrained = [i for i, layer in enumerate(network.layers) if layer.precision is not None]
            if strongly_typed and (config.flags & {"FP16", "OBEY_PRECISION_CONSTRAINTS"} or constrained):
                raise AssertionError("a strongly typed network takes no precision flags or layer precisions")
            tensors = ([dict(name=t.name, mode="INPUT", dtype=t.dtype.name, shape=list(t.shape)) for t in network.inputs]
                       + [dict(name=t.name, mode="OUTPUT", dtype=t.dtype.name, shape=list(t.shape))
                          for t in network.outputs])
            module.builds.append(dict(strongly_typed=strongly_typed, flags=sorted(config.flags),
                                      cleared=sorted(config.cleared), constrained_layers=len(constrained),
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
                 MemoryPoolType=MemoryPoolType, LayerType=LayerType, float32=DataType.FLOAT,
                 float16=DataType.HALF, bfloat16=DataType.BF16, int8=DataType.INT8, uint8=DataType.UINT8,
                 int32=DataType.INT32, int64=DataType.INT64, bool=DataType.BOOL)
    for name, value in names.items():
        setattr(module, name, value)
    return module

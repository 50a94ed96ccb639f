"""An exported fp32 ONNX graph rewritten in fp16 with fp32 islands: the graph a strongly typed
TensorRT network (the only kind TensorRT 11 builds) computes in fp16 from.

Where a tensor is fp16 and where it stays fp32, and why:
- the heavy operators (convolutions, matmuls, einsums) compute in fp16: nearly all of the time;
- normalisations, softmax, reductions, powers, exp/log, cumulative sums and sin/cos stay fp32:
  fp16 LayerNorm and softmax overflow in SAM-like models (NVIDIA/TensorRT#2564,
  segment-anything#696), and the sine position encodings take arguments of up to hundreds,
  where fp16 keeps two bits after the point;
- every other operator (elementwise, data movement, comparisons) computes in the type of what it
  is given, fp16 if any of its computed inputs is fp16: fp16 spreads from the heavy operators and
  fp32 from the islands, with one Cast wherever they meet;
- the graph's inputs and outputs keep their fp32 types, and the operators that compute the
  outputs (back through reshapes and slices) compute in fp32, so that mask logits and scores are
  not rounded to fp16 at the end;
- constants take the type of the operator that reads them (fp16 copies clipped to fp16's finite
  range; infinities stay infinite).
"""
from typing import Dict, List, Set, Tuple

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HEAVY = {"Conv", "ConvTranspose", "MatMul", "Gemm", "Einsum"}
FP32_ISLANDS = {"LayerNormalization", "InstanceNormalization", "GroupNormalization", "BatchNormalization", "Softmax",
                "LogSoftmax", "ReduceMean", "ReduceSum", "ReduceL1", "ReduceL2", "ReduceSumSquare", "ReduceLogSum",
                "ReduceLogSumExp", "ReduceProd", "Pow", "Sqrt", "Reciprocal", "Exp", "Log", "CumSum", "Sin", "Cos",
                "Range"}
# operators that only move or select values: the operators computing the graph's outputs are found through them
DATA_MOVEMENT = {"Reshape", "Transpose", "Slice", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Concat", "Gather",
                 "GatherElements", "GatherND", "Expand", "Tile", "Split", "Where", "Pad"}
# float inputs whose type the operator's schema fixes, whatever the data's type
FIXED_FP32_INPUTS = {"Resize": {1, 2}}
FP16_MAX = float(np.finfo(np.float16).max)
FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16


def to_mixed_precision(model: onnx.ModelProto) -> onnx.ModelProto:
    """The fp16 graph with fp32 islands for an fp32 graph (see the module's description)."""
    graph = model.graph
    for node in graph.node:
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            raise ValueError(f"{node.op_type} node {node.name} has a subgraph, which this pass does not rewrite")
    types = _value_types(model)
    float_constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer if t.data_type == FLOAT}
    float_constants.update({n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in graph.node
                            if n.op_type == "Constant" and n.attribute[0].name == "value"
                            and n.attribute[0].t.data_type == FLOAT})
    rewriter = _Rewriter(types, float_constants)
    rewriter.initializers.extend(t for t in graph.initializer if t.data_type != FLOAT)
    forced_fp32 = _computing_outputs(graph, types)
    for index, node in enumerate(graph.node):
        if not (node.op_type == "Constant" and node.output[0] in float_constants):  # emitted where read
            rewriter.add(node, index in forced_fp32)
    mixed = helper.make_model(
        helper.make_graph(rewriter.nodes, graph.name, list(graph.input), list(graph.output), rewriter.initializers),
        opset_imports=model.opset_import, producer_name="seem_ros mixed precision", ir_version=model.ir_version)
    onnx.checker.check_model(mixed, full_check=True)  # every operator's input types agree with its schema
    return mixed


def _value_types(model: onnx.ModelProto) -> Dict[str, int]:
    graph = onnx.shape_inference.infer_shapes(model, strict_mode=True).graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*graph.value_info, *graph.input, *graph.output]}
    types.update({t.name: t.data_type for t in graph.initializer})
    return types


def _computing_outputs(graph: onnx.GraphProto, types: Dict[str, int]) -> Set[int]:
    """Indices of the nodes that compute the float outputs: their producers, followed back through
    data movement to the operators that compute (a Constant found so is emitted where read anyway)."""
    producer = {o: i for i, node in enumerate(graph.node) for o in node.output}
    found: Set[int] = set()
    todo = [v.name for v in graph.output if types.get(v.name) == FLOAT]
    while todo:
        value = todo.pop()
        index = producer.get(value)
        if index is None or index in found:
            continue
        found.add(index)
        if graph.node[index].op_type in DATA_MOVEMENT:
            todo.extend(i for i in graph.node[index].input if types.get(i) == FLOAT)
    return found


class _Rewriter:
    """Emits the nodes in their order, each float input in the type its node computes in."""

    def __init__(self, types: Dict[str, int], float_constants: Dict[str, np.ndarray]):
        self.original = types
        self.types = dict(types)  # as rewritten: FLOAT values that became FLOAT16
        self.float_constants = float_constants
        self.nodes: List[onnx.NodeProto] = []
        self.initializers: List[onnx.TensorProto] = []
        self.converted: Dict[Tuple[str, int], str] = {}  # (value, type) -> its name in that type

    def precision(self, node: onnx.NodeProto, forced_fp32: bool) -> int:
        """The type node computes its float values in."""
        if forced_fp32 or node.op_type in FP32_ISLANDS:
            return FLOAT
        if node.op_type in HEAVY:
            return HALF
        computed = [self.types[i] for i in node.input
                    if i and self.original.get(i) == FLOAT and i not in self.float_constants]
        return HALF if HALF in computed else FLOAT

    def add(self, node: onnx.NodeProto, forced_fp32: bool) -> None:
        new = onnx.NodeProto()
        new.CopyFrom(node)
        precision = self.precision(node, forced_fp32)
        fixed_fp32 = FIXED_FP32_INPUTS.get(node.op_type, set())
        for k, name in enumerate(node.input):
            if name and self.original.get(name) == FLOAT:
                if node.op_type == "Cast":  # a Cast reads any type: from a computed value, the type it has
                    wanted = FLOAT if name in self.float_constants else self.types[name]
                else:
                    wanted = FLOAT if k in fixed_fp32 else precision
                new.input[k] = self.in_type(name, wanted)
        if node.op_type != "Cast":  # a Cast's output has the type its `to` names
            for name in node.output:
                if self.original.get(name) == FLOAT:
                    self.types[name] = precision
        self.nodes.append(new)

    def in_type(self, name: str, wanted: int) -> str:
        """name in the type wanted: as it is, a constant's copy in that type, or through a Cast."""
        if name not in self.float_constants and self.types[name] == wanted:
            return name
        if (name, wanted) not in self.converted:
            if name in self.float_constants:
                array = self.float_constants[name]
                suffix = ""
                if wanted == HALF:  # clipped to fp16's finite range; infinities stay infinite
                    array = np.where(np.isfinite(array), np.clip(array, -FP16_MAX, FP16_MAX), array)
                    array, suffix = array.astype(np.float16), "__fp16"
                self.initializers.append(numpy_helper.from_array(array, name + suffix))
                self.converted[(name, wanted)] = name + suffix
            else:
                cast = f"{name}__{'fp16' if wanted == HALF else 'fp32'}"
                self.nodes.append(helper.make_node("Cast", [name], [cast], to=wanted, name=cast))
                self.converted[(name, wanted)] = cast
        return self.converted[(name, wanted)]

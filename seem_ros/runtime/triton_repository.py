"""`seem-ros export-triton`: a model repository that NVIDIA's Triton Inference Server images serve
with their own ONNX Runtime backend (on the GPU, optionally through its TensorRT execution
accelerator), without seem_ros or torch on the server:

  seem_image_encoder/1/model.onnx  FrameEncoderGraph: canvas images -> features, batched across robots
                                   by Triton's dynamic batcher
  seem_point_decoder/1/model.onnx  PointDecoderGraph: one frame's objects in fixed slots
  seem_frame_slots/1/              the ensemble chaining the two: what a robot calls, one frame per request;
                                   who serves (ServerInfo) in its config's parameters

The graphs have one canvas (an engine shape fixed ahead of time): one repository per camera
resolution. What a robot sends is the frame server's request (triton_protocol.FrameRequest) laid out
in the decoder's fixed slots (slot_passes); what seem-ros serve does beyond it, this repository does
not: objects found by an appearance or an example region on another image (their image would be
encoded beside the frame), and the object queries over a vocabulary (segment-everything, categories)."""
import os
import tempfile
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np
import onnx
import torch

from seem_ros.model.seem import SEEM
from seem_ros.runtime.mixed_precision import to_mixed_precision
from seem_ros.runtime.onnx_graphs import OPSET, DecoderSlots, FrameEncoderGraph, PointDecoderGraph
from seem_ros.runtime.triton_protocol import TEXT, VISUAL, FrameRequest, FrameResponse, ServerInfo, mask_size

ENCODER_MODEL = "seem_image_encoder"
DECODER_MODEL = "seem_point_decoder"
ENSEMBLE_MODEL = "seem_frame_slots"
MODEL_VERSION = "1"
MODELS = (ENCODER_MODEL, DECODER_MODEL, ENSEMBLE_MODEL)  # the repository's folders
INFO_PARAMETER = "seem_ros_server_info"  # the ensemble's parameter holding ServerInfo as JSON

ENCODER_INPUTS = ["image", "input_hw"]
FEATURES = ["mask_features", "level0", "level1", "level2"]
SLOT_INPUTS = ["text_tokens", "text_valid", "sentence", "points", "memory", "has_memory", "select_text"]
SLOT_OUTPUTS = ["text_logits", "text_match", "visual_logits", "visual_match"]
ONNX_TO_TRITON = {onnx.TensorProto.FLOAT: "TYPE_FP32", onnx.TensorProto.UINT8: "TYPE_UINT8",
                  onnx.TensorProto.INT32: "TYPE_INT32", onnx.TensorProto.BOOL: "TYPE_BOOL",
                  onnx.TensorProto.INT64: "TYPE_INT64", onnx.TensorProto.FLOAT16: "TYPE_FP16"}


@dataclass(frozen=True)
class RepositoryOptions:
    canvas: Tuple[int, int]  # the padded input HxW the graphs are built for
    slots: DecoderSlots
    max_batch_size: int = 8  # frames the encoder takes at once (Triton's dynamic batcher)
    queue_delay_us: int = 2000
    instances: int = 1  # model instances per device
    kind: str = "gpu"  # where the instances run: gpu or cpu
    accelerator: str = "none"  # none, or tensorrt: ONNX Runtime's TensorRT execution provider on the GPU
    precision: str = "fp32"  # fp32, or fp16 (the mixed-precision graphs: fp32 islands, fp32 inputs and outputs)


def slot_passes(request: FrameRequest, slots: DecoderSlots) -> List[Dict[str, np.ndarray]]:
    """A frame request as the ensemble's inputs (no batch dimension): its rows in the decoder's fixed
    slots, further passes where it has more objects of a kind than slots. ValueError for what the
    repository does not serve (rows on another image, a vocabulary)."""
    if len(request.class_embeddings):
        raise ValueError("an exported repository does not run the object queries over a vocabulary "
                         "(segment-everything, categories): serve with seem-ros serve")
    kinds = request.row_kind
    visual = [i for i, kind in enumerate(kinds) if kind == VISUAL]
    if any(int(request.point_image[i]) >= 0 for i in visual):
        raise ValueError("an exported repository does not serve objects found on another image (an appearance, "
                         "an example region): serve with seem-ros serve")
    text = [i for i, kind in enumerate(kinds) if kind == TEXT]
    levels_plus_mean = request.points.shape[1]
    dim = request.sentence.shape[1]
    h4, w4 = mask_size(request)
    passes = []
    for p in range(max(-(-len(text) // slots.text), -(-len(visual) // slots.visual), 1)):
        t_rows = text[p * slots.text:(p + 1) * slots.text]
        v_rows = visual[p * slots.visual:(p + 1) * slots.visual]
        arrays = {
            "image": request.image, "input_hw": request.input_hw.astype(np.int32),
            "text_tokens": np.zeros((slots.text, slots.text_length, request.text_tokens.shape[2]), np.float32),
            "text_valid": np.zeros((slots.text, slots.text_length), bool),
            "sentence": np.zeros((slots.text, dim), np.float32),
            "points": np.zeros((slots.visual, levels_plus_mean, slots.token_length, 3), np.float32),
            "memory": np.zeros((slots.visual, h4, w4), np.float32),
            "has_memory": np.zeros(slots.visual, bool),
            "select_text": np.zeros((slots.visual, dim), np.float32)}
        arrays["text_valid"][:, 0] = True  # an unused row: one (zero) token, so that no row is all padding
        for slot, i in enumerate(t_rows):
            length = int(request.text_length[i])
            arrays["text_tokens"][slot, :length] = request.text_tokens[i, :length]
            arrays["text_valid"][slot] = np.arange(slots.text_length) < length
            arrays["sentence"][slot] = request.sentence[i]
        for slot, i in enumerate(v_rows):
            arrays["points"][slot, :, :request.points.shape[2]] = request.points[i]
            arrays["select_text"][slot] = request.sentence[i]
            if len(request.memory) and request.has_memory[i]:
                arrays["memory"][slot] = request.memory[i]
                arrays["has_memory"][slot] = True
        passes.append(arrays)
    return passes


def response_from_passes(request: FrameRequest, outputs: Sequence[Dict[str, np.ndarray]]) -> FrameResponse:
    """The ensemble's outputs of slot_passes(request) (no batch dimension) as the frame server's response."""
    kinds = request.row_kind
    text = [i for i, kind in enumerate(kinds) if kind == TEXT]
    visual = [i for i, kind in enumerate(kinds) if kind == VISUAL]
    rows = sorted(text + visual)
    h4, w4 = outputs[0]["visual_logits"].shape[1:]
    used = rows[-1] + 1 if rows else 1
    logits, match = np.zeros((used, h4, w4), np.float32), np.ones(used, np.float32)
    text_slots, visual_slots = outputs[0]["text_match"].shape[0], outputs[0]["visual_match"].shape[0]
    for p, out in enumerate(outputs):
        t_rows, v_rows = text[p * text_slots:(p + 1) * text_slots], visual[p * visual_slots:(p + 1) * visual_slots]
        logits[t_rows], match[t_rows] = out["text_logits"][:len(t_rows)], out["text_match"][:len(t_rows)]
        logits[v_rows], match[v_rows] = out["visual_logits"][:len(v_rows)], out["visual_match"][:len(v_rows)]
    return FrameResponse(logits, match, np.zeros((0, 0), np.float32), np.zeros((0, h4, w4), np.float32))


def ensemble_layout(config) -> Tuple[DecoderSlots, Tuple[int, int]]:
    """The slots and canvas of an exported ensemble, from its config (tritonclient's ModelConfig)."""
    dims = {tensor.name: list(tensor.dims) for tensor in config.input}
    return (DecoderSlots(text=dims["sentence"][0], visual=dims["select_text"][0], text_length=dims["text_tokens"][1],
                         token_length=dims["points"][2]), (dims["image"][0], dims["image"][1]))


# ------------------------------------------------------------------------------------------- writing
def write_repository(model: SEEM, out: str, options: RepositoryOptions, info: ServerInfo) -> List[str]:
    """Exports the graphs and writes the repository's models (MODELS) into the folder `out` (claimed
    by the caller) -> the files written, relative to out."""
    with tempfile.TemporaryDirectory() as scratch:
        encoder, decoder = os.path.join(scratch, "encoder.onnx"), os.path.join(scratch, "decoder.onnx")
        export_frame_graphs(model, options.canvas, options.slots, encoder, decoder)
        graphs = {ENCODER_MODEL: onnx.load(encoder), DECODER_MODEL: onnx.load(decoder)}
    if options.precision == "fp16":
        graphs = {name: to_mixed_precision(graph) for name, graph in graphs.items()}
    from google.protobuf import text_format
    files: Dict[str, bytes] = {f"{name}/config.pbtxt": text_format.MessageToString(config).encode()
                               for name, config in model_configs(graphs, options, info).items()}
    files.update({f"{name}/{MODEL_VERSION}/model.onnx": graph.SerializeToString() for name, graph in graphs.items()})
    for relative, content in files.items():
        path = os.path.join(out, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(content)
    os.makedirs(os.path.join(out, ENSEMBLE_MODEL, MODEL_VERSION), exist_ok=True)  # an ensemble's version: empty
    return sorted(files)


def export_frame_graphs(model: SEEM, canvas: Tuple[int, int], slots: DecoderSlots, encoder_path: str,
                        decoder_path: str) -> None:
    """FrameEncoderGraph (batch dimension free) and PointDecoderGraph (batch 1) for `canvas` as ONNX."""
    device = model.device
    image = torch.zeros((1, *canvas, 3), dtype=torch.uint8, device=device)
    input_hw = torch.tensor([canvas], dtype=torch.int32, device=device)
    encoder = FrameEncoderGraph(model).eval()
    with torch.no_grad():
        torch.onnx.export(encoder, (image, input_hw), encoder_path, opset_version=OPSET,
                          input_names=ENCODER_INPUTS, output_names=FEATURES,
                          dynamic_axes={name: {0: "batch"} for name in ENCODER_INPUTS + FEATURES}, dynamo=False)
        features = encoder(image, input_hw)
    graph = onnx.load(encoder_path)  # the outputs' sizes, which the exporter leaves free: fixed by the canvas
    for output, feature in zip(graph.graph.output, features):
        for dim, size in zip(list(output.type.tensor_type.shape.dim)[1:], feature.shape[1:]):
            dim.Clear()
            dim.dim_value = size
    onnx.save(graph, encoder_path)
    cfg = model.decoder.cfg
    dim = model.language.lang_proj.shape[1]
    h4, w4 = features[0].shape[-2:]
    levels = model.decoder.num_feature_levels
    slot_example = (torch.zeros((1, slots.text, slots.text_length, cfg.hidden_dim), device=device),
                    torch.ones((1, slots.text, slots.text_length), dtype=torch.bool, device=device),
                    torch.zeros((1, slots.text, dim), device=device),
                    torch.zeros((1, slots.visual, levels + 1, slots.token_length, 3), device=device),
                    torch.zeros((1, slots.visual, h4, w4), device=device),
                    torch.zeros((1, slots.visual), dtype=torch.bool, device=device),
                    torch.zeros((1, slots.visual, dim), device=device))
    with torch.no_grad():
        torch.onnx.export(PointDecoderGraph(model).eval(), (*features, *slot_example), decoder_path,
                          opset_version=OPSET, input_names=FEATURES + SLOT_INPUTS, output_names=SLOT_OUTPUTS,
                          dynamo=False)


def graph_tensors(graph: onnx.ModelProto, which: str) -> List[Tuple[str, str, List[int]]]:
    """(name, Triton data type, dims with -1 for a named (free) dimension) of a graph's inputs or outputs."""
    values = graph.graph.input if which == "input" else graph.graph.output
    return [(v.name, ONNX_TO_TRITON[v.type.tensor_type.elem_type],
             [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim]) for v in values]


def model_configs(graphs: Dict[str, onnx.ModelProto], options: RepositoryOptions, info: ServerInfo) -> Dict[str, object]:
    """Each model's config (tritonclient's ModelConfig protobuf), from the graphs' own inputs and outputs."""
    from tritonclient.grpc import model_config_pb2 as pb
    kind = pb.ModelInstanceGroup.KIND_GPU if options.kind == "gpu" else pb.ModelInstanceGroup.KIND_CPU

    def tensors(config, field: str, entries, drop_batch: bool) -> None:
        for name, dtype, dims in entries:
            tensor = getattr(config, field).add()
            tensor.name, tensor.data_type = name, pb.DataType.Value(dtype)
            tensor.dims.extend(dims[1:] if drop_batch else dims)

    def onnx_model(name: str, max_batch_size: int):
        graph = graphs[name]
        config = pb.ModelConfig(name=name, backend="onnxruntime", max_batch_size=max_batch_size)
        tensors(config, "input", graph_tensors(graph, "input"), drop_batch=max_batch_size > 0)
        tensors(config, "output", graph_tensors(graph, "output"), drop_batch=max_batch_size > 0)
        config.version_policy.specific.versions.append(int(MODEL_VERSION))
        config.instance_group.add(count=options.instances, kind=kind)
        if options.accelerator == "tensorrt":
            trt = config.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
            trt.parameters["precision_mode"] = "FP16" if options.precision == "fp16" else "FP32"
            trt.parameters["trt_engine_cache_enable"] = "true"
            trt.parameters["trt_engine_cache_path"] = f"/tmp/seem_ros_trt/{name}"
        return config

    encoder = onnx_model(ENCODER_MODEL, options.max_batch_size)
    encoder.dynamic_batching.max_queue_delay_microseconds = options.queue_delay_us
    decoder = onnx_model(DECODER_MODEL, 0)  # one frame per run: its objects are the decoder's batch
    ensemble = pb.ModelConfig(name=ENSEMBLE_MODEL, platform="ensemble", max_batch_size=1)
    encoder_inputs = graph_tensors(graphs[ENCODER_MODEL], "input")
    decoder_inputs = graph_tensors(graphs[DECODER_MODEL], "input")
    tensors(ensemble, "input", encoder_inputs + [t for t in decoder_inputs if t[0] in SLOT_INPUTS], drop_batch=True)
    tensors(ensemble, "output", graph_tensors(graphs[DECODER_MODEL], "output"), drop_batch=True)
    ensemble.version_policy.specific.versions.append(int(MODEL_VERSION))
    ensemble.parameters[INFO_PARAMETER].string_value = info.to_json()
    steps = ensemble.ensemble_scheduling.step
    encode = steps.add(model_name=ENCODER_MODEL, model_version=-1)
    encode.input_map.update({name: name for name in ENCODER_INPUTS})
    encode.output_map.update({name: name for name in FEATURES})
    decode = steps.add(model_name=DECODER_MODEL, model_version=-1)
    decode.input_map.update({name: name for name in FEATURES + SLOT_INPUTS})
    decode.output_map.update({name: name for name in SLOT_OUTPUTS})
    return {ENCODER_MODEL: encoder, DECODER_MODEL: decoder, ENSEMBLE_MODEL: ensemble}

"""The exported graphs (onnx_graphs) run by ONNX Runtime or TensorRT in place of the torch
encoder and the frame engine's slot decoder: one encoder and one decoder per input canvas
(a camera has one), taken from the persistent cache (engine_cache) or exported into it. fp16
graphs are the fp32 ones rewritten with fp32 islands (mixed_precision), cached beside them."""
import logging
from collections import OrderedDict
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import onnx
import torch
from torch import Tensor

from seem_ros.inference.frame_engine import FrameFeatures

from seem_ros.inference.frame_slots import SlotOutputs, TextSlots, VisualSlots
from seem_ros.model.seem import SEEM
from seem_ros.runtime.engine_cache import GraphSpec, cached_onnx
from seem_ros.runtime.mixed_precision import to_mixed_precision
from seem_ros.runtime.onnx_graphs import (DECODER_INPUTS, DECODER_OUTPUTS, DecoderSlots, ENCODER_OUTPUTS, export_image_encoder,
                                          export_slot_decoder, pad_slots, slot_inputs)

LOG = logging.getLogger(__name__)
# a graph runner: {input name: tensor} -> outputs in the graph's output order, on the inputs' device
# (by name: an exporter may drop an input the graph does not use)
GraphRunner = Callable[[Dict[str, Tensor]], List[Tensor]]


class OrtGraph:
    """An ONNX Runtime session as a GraphRunner (host copies in and out)."""

    def __init__(self, session, output_names: Sequence[str]):
        self.session = session
        self.inputs = [i.name for i in session.get_inputs()]
        self.outputs = list(output_names)

    def __call__(self, inputs: Dict[str, Tensor]) -> List[Tensor]:
        device = next(iter(inputs.values())).device
        feeds = {name: inputs[name].detach().cpu().numpy() for name in self.inputs}
        return [torch.from_numpy(o).to(device) for o in self.session.run(self.outputs, feeds)]


class ExportedGraphs:
    """open_graph(onnx_path, spec, example_inputs) -> GraphRunner opens a graph on the runtime
    (an ONNX Runtime session, a TensorRT engine). Graphs are opened on first use per canvas and
    dropped by release() (their device memory with them); the ONNX files stay in the cache.
    precision: "fp32", or "fp16" for the mixed-precision graphs (inputs and outputs stay fp32)."""

    def __init__(self, model: SEEM, variant: str, checkpoint_sha256: str, slots: DecoderSlots,
                 open_graph: Callable[[str, GraphSpec, Dict[str, Tensor]], GraphRunner], cache_dir: str = "",
                 max_canvases: int = 4, precision: str = "fp32"):
        self.model = model
        self.variant = variant
        self.checkpoint_sha256 = checkpoint_sha256
        self.slots = slots
        self.open_graph = open_graph
        self.cache_dir = cache_dir
        self.max_canvases = max_canvases
        self.precision = precision
        self.graphs: "OrderedDict[Tuple[str, Tuple[int, int]], GraphRunner]" = OrderedDict()

    def spec(self, graph: str, canvas: Tuple[int, int], precision: str = "") -> GraphSpec:
        return GraphSpec(graph, self.variant, self.checkpoint_sha256, tuple(canvas),
                         slots=self.slots.describe() if graph == "decoder" else "", precision=precision or self.precision)

    def onnx_path(self, graph: str, canvas: Tuple[int, int]) -> str:
        """The graph's ONNX file in the cache, exported (and rewritten in mixed precision) when missing."""
        def export_fp32(path: str) -> None:
            if graph == "encoder":
                export_image_encoder(self.model, canvas, path)
            else:
                export_slot_decoder(self.model, canvas, self.slots, path)
        fp32 = cached_onnx(self.spec(graph, canvas, "fp32"), export_fp32, self.cache_dir)
        if self.precision == "fp32":
            return fp32
        return cached_onnx(self.spec(graph, canvas), lambda path: onnx.save(to_mixed_precision(onnx.load(fp32)), path),
                           self.cache_dir)

    def graph(self, graph: str, canvas: Tuple[int, int], example: Callable[[], Dict[str, Tensor]]) -> GraphRunner:
        key = (graph, tuple(canvas))
        if key not in self.graphs:
            self.graphs[key] = self.open_graph(self.onnx_path(graph, canvas), self.spec(graph, canvas), example())
            while len(self.graphs) > 2 * self.max_canvases:  # frames of ever new sizes: keep the newest
                (graph_name, size), _ = self.graphs.popitem(last=False)
                LOG.info("closed the %s for %dx%d (the least recently used of more than %d canvases)",
                         graph_name, size[0], size[1], self.max_canvases)
        self.graphs.move_to_end(key)
        return self.graphs[key]

    def prepare(self, canvas: Tuple[int, int]) -> None:
        """Exports (or builds) and opens both graphs for canvas now, rather than at the first frame."""
        device = self.model.device
        mask_features, levels = self.encode_image(torch.zeros((1, 3, *canvas), device=device))
        ((text, visual, _, _),) = pad_slots(None, None, self.slots, self.model, tuple(mask_features.shape[-2:]), device)
        inputs = dict(zip(DECODER_INPUTS, [mask_features, *levels] + slot_inputs(text, visual)))
        self.graph("decoder", tuple(canvas), lambda: inputs)

    def release(self) -> None:
        self.graphs.clear()

    # ------------------------------------------------------------ in place of the torch code
    def __call__(self, image: Tensor) -> Tuple[Tensor, List[Tensor]]:
        return self.encode_image(image)

    def encode_image(self, image: Tensor) -> Tuple[Tensor, List[Tensor]]:
        inputs = {"image": image.float()}
        mask_features, *levels = self.graph("encoder", tuple(image.shape[-2:]), lambda: inputs)(inputs)
        return mask_features, levels

    def decode_slots(self, frame: FrameFeatures, text: Optional[TextSlots], visual: Optional[VisualSlots],
                     class_embeddings: Optional[Tensor] = None) -> SlotOutputs:
        """FrameEngine.decode_slots through the exported decoder. Segment-everything stays with
        the torch engine."""
        size = tuple(frame.mask_features.shape[-2:])
        return decode_in_fixed_slots(lambda example: self.graph("decoder", (size[0] * 4, size[1] * 4), example),
                                     self.model, self.slots, frame, text, visual)


def decode_in_fixed_slots(graph_for: Callable[[Callable[[], Dict[str, Tensor]]], GraphRunner], model: SEEM,
                          slots: DecoderSlots, frame: FrameFeatures, text: Optional[TextSlots],
                          visual: Optional[VisualSlots]) -> SlotOutputs:
    """The objects packed by the frame engine, run through a fixed-slot decoder graph (graph_for(
    example inputs) -> its runner); more objects of a kind than slots take further passes."""
    device = frame.mask_features.device
    frame_inputs = [t.float() for t in (frame.mask_features, *frame.multi_scale)]
    passes = [(dict(zip(DECODER_INPUTS, frame_inputs + slot_inputs(text_rows, visual_rows))), used_text, used_visual)
              for text_rows, visual_rows, used_text, used_visual in pad_slots(
                  text, visual, slots, model, tuple(frame.mask_features.shape[-2:]), device)]
    run = graph_for(lambda: passes[0][0])
    text_logits, text_match, visual_logits, visual_match = [], [], [], []
    for inputs, used_text, used_visual in passes:
        t_logits, t_match, v_logits, v_match = run(inputs)
        text_logits.append(t_logits[:used_text])
        text_match.append(t_match[:used_text])
        visual_logits.append(v_logits[:used_visual])
        visual_match.append(v_match[:used_visual])
    return SlotOutputs(text_logits=torch.cat(text_logits), text_match=torch.cat(text_match),
                       visual_logits=torch.cat(visual_logits), visual_match=torch.cat(visual_match))


def ort_opener(providers: List[str], in_use: Dict[str, List[str]]
               ) -> Callable[[str, GraphSpec, Dict[str, Tensor]], GraphRunner]:
    """Opens graphs as ONNX Runtime sessions; in_use[graph] records the providers each really got."""
    import onnxruntime

    def open_graph(path: str, spec: GraphSpec, example: List[Tensor]) -> GraphRunner:
        session = onnxruntime.InferenceSession(path, providers=providers)
        in_use[spec.graph] = session.get_providers()
        return OrtGraph(session, ENCODER_OUTPUTS if spec.graph == "encoder" else DECODER_OUTPUTS)
    return open_graph

"""torch on CUDA, replayed from CUDA graphs: the image encoder and the frame engine's fixed-slot
decoder. A camera's frames all have one shape and the decoder's slots are fixed, so after a
warm-up each costs one graph launch instead of hundreds of kernel launches and host round trips."""
import logging
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor

from seem_ros.inference.frame_engine import FrameFeatures

from seem_ros.inference.frame_slots import SlotOutputs, TextSlots, VisualSlots
from seem_ros.model.seem import SEEM
from seem_ros.runtime.exported import decode_in_fixed_slots
from seem_ros.runtime.onnx_graphs import DECODER_INPUTS, DecoderSlots, SlotDecoderGraph

LOG = logging.getLogger(__name__)


def _clone(outputs):
    """Copies (nested tuples / lists of) tensors out of a graph's buffers, which the next replay overwrites."""
    if isinstance(outputs, Tensor):
        return outputs.clone()
    return type(outputs)(_clone(o) for o in outputs)


class CudaGraphRunner:
    """fn(inputs) replayed from CUDA graphs, one per input shapes and autocast dtype (at most
    max_graphs: shapes that keep changing are not a stream, and run eagerly). A capture that
    fails is logged once and the function runs eagerly from then on. on_cpu: what runs inputs on
    the CPU (default fn; a compiled fn's eager original, so that a model moved to the CPU is not
    compiled again for it)."""

    def __init__(self, fn: Callable[[Dict[str, Tensor]], object], what: str, max_graphs: int = 4,
                 on_cpu: Optional[Callable[[Dict[str, Tensor]], object]] = None):
        self.fn = fn
        self.on_cpu = on_cpu or fn
        self.what = what
        self.max_graphs = max_graphs
        self.graphs: Dict[tuple, tuple] = {}  # key -> (graph, static inputs, static outputs)
        self.failed = ""  # why capturing failed ("" = it did not)
        self._stream: Optional[torch.cuda.Stream] = None  # one capture stream: one cuBLAS workspace

    def __call__(self, inputs: Dict[str, Tensor]):
        if any(t.device.type != "cuda" for t in inputs.values()):
            # the model is on the CPU (an inactive node answering a service): nothing to capture
            return self.on_cpu(inputs)
        autocast = torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else None
        key = (tuple((name, tuple(t.shape), t.dtype) for name, t in inputs.items()), autocast)
        if key not in self.graphs:
            if self.failed or len(self.graphs) >= self.max_graphs:
                return self.fn(inputs)
            try:
                self.graphs[key] = self._capture(inputs)
            except Exception as exc:  # noqa: BLE001 - an op that cannot be captured: run eagerly, say so
                self.failed = f"{type(exc).__name__}: {exc}"
                LOG.warning("cannot replay the %s from a CUDA graph (%s): it runs eagerly", self.what, self.failed)
                self._stream = None
                return self.fn(inputs)
        graph, static_in, static_out = self.graphs[key]
        for name, tensor in inputs.items():
            static_in[name].copy_(tensor)
        graph.replay()
        return _clone(static_out)

    def _capture(self, inputs: Dict[str, Tensor]) -> tuple:
        static_in = {name: t.clone() for name, t in inputs.items()}
        device = next(iter(inputs.values())).device
        if self._stream is None:
            self._stream = torch.cuda.Stream(device)
        self._stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self._stream):
            for _ in range(3):  # warm-up: cuDNN picks its algorithms, the allocator settles
                self.fn(static_in)
        torch.cuda.current_stream().wait_stream(self._stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=self._stream):
            static_out = self.fn(static_in)
        return graph, static_in, static_out

    def release(self) -> None:
        """Drops the graphs and their memory pools (and the capture stream's cuBLAS workspace)."""
        self.graphs.clear()
        self._stream = None
        self.failed = ""  # the next device (or a fixed driver) gets a fresh try
        if hasattr(torch._C, "_cuda_clearCublasWorkspaces"):
            torch._C._cuda_clearCublasWorkspaces()


class CudaGraphEncoder(CudaGraphRunner):
    """model.encode_image (or encode: the same compiled) replayed from a CUDA graph per input shape
    and precision. Outputs are copied out of the graph's buffers, so that features kept by the
    caller survive the next replay."""

    def __init__(self, model: SEEM, encode: Optional[Callable] = None, max_graphs: int = 4):
        encode = encode or model.encode_image
        super().__init__(lambda inputs: encode(inputs["image"]), "image encoder", max_graphs,
                         on_cpu=lambda inputs: model.encode_image(inputs["image"]))

    def __call__(self, image: Tensor) -> Tuple[Tensor, List[Tensor]]:
        return super().__call__({"image": image})


class CudaGraphSlotDecoder(CudaGraphRunner):
    """FrameEngine.decode_slots (with the frame's preparation) over fixed slots, replayed from a
    CUDA graph per canvas: an engine's run_slots. Objects are packed into `slots` rows of each kind
    (more take further passes); segment-everything runs eagerly. compiled: the graph through
    torch.compile first (its kernels fused; the warm-up before the capture compiles it)."""

    def __init__(self, model: SEEM, slots: DecoderSlots, max_graphs: int = 4, compiled: bool = False):
        eager = SlotDecoderGraph(model)
        graph = torch.compile(eager, dynamic=False) if compiled else eager
        super().__init__(lambda inputs: graph(*(inputs[name] for name in DECODER_INPUTS)), "frame decoder", max_graphs,
                         on_cpu=lambda inputs: eager(*(inputs[name] for name in DECODER_INPUTS)))
        self.model = model
        self.slots = slots

    def decode_slots(self, frame: FrameFeatures, text: Optional[TextSlots], visual: Optional[VisualSlots],
                     class_embeddings: Optional[Tensor] = None) -> SlotOutputs:
        return decode_in_fixed_slots(lambda example: self, self.model, self.slots, frame, text, visual)

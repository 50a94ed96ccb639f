"""backend triton: a SeemPredictor whose frame work runs on a SEEM frame server over gRPC: seem-ros
serve (model seem_frame), or a Triton Inference Server serving a repository of seem-ros
export-triton (model seem_frame_slots: the same request in the decoder's fixed slots, without
objects on other images or segment-everything).

The robot keeps the model for what is not per frame (text embeddings, class embeddings: once per
prompt) and everything stateful; each frame is one request (triton_protocol). The server is looked
for at configure but need not be there: until it answers, frames fail with the reason (the node
counts them and goes on) and the connection is retried with backoff; a server that runs another
protocol version or checkpoint is refused, both named."""
import logging
import threading
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from seem_ros.inference.frame_engine import Decoded
from seem_ros.inference.frame_slots import ObjectQuery
from seem_ros.inference.predictor import EncodedImage, SeemPredictor
from seem_ros.model.visual_sampler import draw_prompt_points
from seem_ros.runtime.triton_protocol import (EMPTY, INFO_MODEL, OPTIONAL, PROTOCOL_VERSION, RESPONSE_TENSORS,
                                              ROW_SLOTS, TEXT, VISUAL, FrameRequest, FrameResponse, ServerInfo,
                                              from_arrays, mask_size, points_length, points_table, to_arrays)
from seem_ros.runtime.triton_repository import (INFO_PARAMETER, SLOT_OUTPUTS, ensemble_layout, response_from_passes,
                                                slot_passes)
from seem_ros.runtime.triton_shared_memory import SharedMemoryIO

LOG = logging.getLogger(__name__)


class ServerUnavailable(RuntimeError):
    """The frame server cannot be used now. kind: unreachable (not reachable or not ready; retried
    after a backoff), waiting (within that backoff), timeout, or refused (the server refused the
    request: a full queue, a bad request)."""

    def __init__(self, message: str, kind: str = "unreachable"):
        super().__init__(message)
        self.kind = kind


class ServerMismatch(RuntimeError):
    """The frame server runs another protocol version or checkpoint than this client."""


@dataclass
class RemotePrompt:
    """A visual prompt's points, drawn on an image the server encodes: the current frame (image
    None), or an earlier frame or an example image kept here (an appearance, a reference region)."""
    points: np.ndarray  # float32 (levels + 1, P, 3), as FrameRequest.points
    image: Optional[np.ndarray] = None  # uint8 canvas image
    input_hw: Optional[np.ndarray] = None  # int32 (2,)

    def to(self, device) -> "RemotePrompt":  # the tracker moves prompts with the model: these stay on the host
        return self


class TritonTransport:
    """One server, one model: requests with a timeout, the server's identity checked once per
    connection, reconnection with backoff after a failure (0.5 s doubling to 2 s: a restarted server
    is found within 2 s of being ready, and a missing one costs a refused connection per try)."""

    def __init__(self, url: str, model: str, timeout_ms: int, expected: ServerInfo, shared_memory: bool = False,
                 object_queries: int = 101):
        self.url = url
        self.model = model
        self.timeout_s = timeout_ms / 1000.0
        self.expected = expected
        self.info: Optional[ServerInfo] = None
        self.layout = None  # an exported ensemble's (slots, canvas); None: seem-ros serve's frame model
        self.failures = {"unreachable": 0, "timeout": 0, "refused": 0}
        self._client = None
        self._lock = threading.Lock()
        self._retry_at = 0.0
        self._backoff_s = 0.5
        self.last_error = ""
        self.shared_memory = shared_memory  # asked for: inputs and outputs through system shared memory
        self.shared_memory_problem = ""  # why the server could not use it ("" when it does or was not asked)
        self.object_queries = object_queries  # rows of the object queries' outputs (segment-everything)
        self._shm: Optional[SharedMemoryIO] = None
        self._io_lock = threading.Lock()  # one request at a time in the shared-memory regions

    @property
    def shared_memory_regions(self) -> List[str]:
        """The system shared-memory regions the server holds registered for this client ([]: none)."""
        return [] if self._shm is None else self._shm.names()

    def describe(self) -> str:
        served = f", server backend {self.info.backend}" if self.info else ", server not connected"
        shared = ", shared memory" if self._shm is not None else ""
        return f"triton {self.url} model {self.model} v{PROTOCOL_VERSION}{served}{shared}"

    @property
    def problem(self) -> str:
        """Why the server cannot be used now ("" when connected)."""
        return "" if self.info else f"frame server {self.url} unavailable: {self.last_error or 'not tried yet'}"

    def connect(self) -> ServerInfo:
        """Checks the server now: -> its ServerInfo. ServerUnavailable, ServerMismatch."""
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException
        try:
            if self._client is None:
                self._client = grpcclient.InferenceServerClient(self.url)
            if not self._client.is_model_ready(self.model, str(PROTOCOL_VERSION), client_timeout=self.timeout_s):
                versions = (list(self._client.get_model_metadata(self.model, client_timeout=self.timeout_s).versions)
                            if self._client.is_model_ready(self.model, client_timeout=self.timeout_s) else [])
                if versions:
                    raise ServerMismatch(f"{self.url} serves {self.model} version(s) {', '.join(versions)}, this "
                                         f"client speaks version {PROTOCOL_VERSION}")
                raise ServerUnavailable(f"{self.url} has no ready model {self.model!r}")
            config = self._client.get_model_config(self.model, client_timeout=self.timeout_s).config
            if INFO_PARAMETER in config.parameters:  # an exported repository's ensemble says it in its config
                text = config.parameters[INFO_PARAMETER].string_value
                self.layout = ensemble_layout(config)
            else:
                text = self._client.infer(INFO_MODEL, [_input("request", np.zeros(1, np.int8))],
                                          client_timeout=self.timeout_s).as_numpy("info").reshape(-1)[0].decode()
                self.layout = None
        except InferenceServerException as exc:
            raise ServerUnavailable(f"{self.url}: {_reason(exc)}") from exc
        info = ServerInfo.from_json(text)
        mismatch = info.mismatch(self.expected)
        if mismatch:
            raise ServerMismatch(f"{self.url} refused: {mismatch}")
        if self.shared_memory:
            self._register_shared_memory()
        self.info = info
        return info

    def _register_shared_memory(self) -> None:
        """The regions registered with this (new or restarted) server; one that cannot open them (on
        another host) is used through gRPC alone, said once per connection."""
        from tritonclient.utils import InferenceServerException
        with self._io_lock:
            self._shm = self._shm or SharedMemoryIO(self._client, self.timeout_s)
            try:
                self._shm.register()
                self.shared_memory_problem = ""
            except InferenceServerException as exc:
                self.shared_memory_problem = _reason(exc)
                self._shm.release(registered=False)
                self._shm = None
                LOG.warning("frame server %s cannot use this host's shared memory (%s): requests go through gRPC",
                            self.url, self.shared_memory_problem)

    def infer(self, request: FrameRequest) -> FrameResponse:
        with self._lock:
            if self.info is None:
                now = time.monotonic()
                if now < self._retry_at:
                    raise ServerUnavailable(f"{self.url} not connected ({self.last_error}); next try in "
                                            f"{self._retry_at - now:.1f} s", "waiting")
                try:
                    self.connect()
                except (ServerUnavailable, ServerMismatch) as exc:
                    self._failed("unreachable", str(exc))
                    raise
                self._backoff_s = 0.5
        if self.layout is not None:
            return self._infer_in_slots(request)
        arrays = to_arrays(request)
        rows, (h4, w4) = len(request.row_kind), mask_size(request)
        classes, queries = len(request.class_embeddings) + 1, self.object_queries  # + background
        largest = {"logits": rows * h4 * w4, "match": rows, "class_logits": queries * classes,
                   "object_masks": queries * h4 * w4}
        wanted = [(name, 4 * largest[name]) for name, _, _ in RESPONSE_TENSORS
                  if name not in OPTIONAL or "class_embeddings" in arrays]
        result = self._call(arrays, wanted)
        return from_arrays(FrameResponse, {name: array[0] for name, array in result.items()})

    def _infer_in_slots(self, request: FrameRequest) -> FrameResponse:
        """The request through an exported ensemble: a call per pass of its fixed slots."""
        slots, canvas = self.layout
        try:
            if tuple(request.image.shape[:2]) != tuple(canvas):
                raise ValueError(f"{self.model} at {self.url} takes a {canvas[0]}x{canvas[1]} canvas, not "
                                 f"{request.image.shape[0]}x{request.image.shape[1]}: set input_canvas "
                                 f"{canvas[0]}x{canvas[1]}")
            passes = slot_passes(request, slots)
        except ValueError as exc:
            with self._lock:
                self._failed("refused", str(exc), reconnect=False)
            raise ServerUnavailable(str(exc), "refused") from exc
        h4, w4 = mask_size(request)
        rows = {"text": slots.text, "visual": slots.visual}
        wanted = [(name, 4 * rows[name.split("_")[0]] * (h4 * w4 if name.endswith("logits") else 1))
                  for name in SLOT_OUTPUTS]
        outputs = []
        for arrays in passes:
            outputs.append({name: array[0] for name, array in self._call(arrays, wanted).items()})
        return response_from_passes(request, outputs)

    def _call(self, arrays: Dict[str, np.ndarray], outputs: Sequence[Tuple[str, int]]) -> Dict[str, np.ndarray]:
        """One inference of the model: arrays without the batch dimension, outputs as (name, largest
        byte size) -> the outputs with it. Through shared memory where registered; failures counted by kind."""
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException
        batched = {name: array[None] for name, array in arrays.items()}
        try:
            with self._io_lock:
                if self._shm is not None:
                    result = self._client.infer(self.model, self._shm.inputs(batched), outputs=self._shm.outputs(outputs),
                                                model_version=str(PROTOCOL_VERSION), client_timeout=self.timeout_s)
                    return self._shm.read(result, outputs)
            result = self._client.infer(self.model, [_input(name, array) for name, array in batched.items()],
                                        outputs=[grpcclient.InferRequestedOutput(name) for name, _ in outputs],
                                        model_version=str(PROTOCOL_VERSION), client_timeout=self.timeout_s)
            return {name: result.as_numpy(name) for name, _ in outputs}
        except InferenceServerException as exc:
            reason = _reason(exc)
            kind = _failure_kind(reason)
            with self._lock:
                self._failed(kind, reason, reconnect=kind == "unreachable")
            raise ServerUnavailable(f"{self.url}: {reason}", kind) from exc

    def _failed(self, kind: str, reason: str, reconnect: bool = True) -> None:
        self.failures[kind] += 1
        self.last_error = reason
        if reconnect:  # checked again (identity too: a restarted server may be another) after a backoff
            self.info = None
            self._retry_at = time.monotonic() + self._backoff_s
            self._backoff_s = min(self._backoff_s * 2, 2.0)

    def release(self) -> None:
        with self._io_lock:
            if self._shm is not None:
                self._shm.release(registered=self.info is not None)
                self._shm = None
        if self._client is not None:
            self._client.close()
        self._client, self.info = None, None


def _input(name: str, array: np.ndarray):
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import np_to_triton_dtype
    tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
    tensor.set_data_from_numpy(array)
    return tensor


def _failure_kind(reason: str) -> str:
    """timeout, refused (the server answered no: a full queue, a bad request) or unreachable (the
    connection failed or broke: a server killed mid-request)."""
    lowered = reason.lower()
    if "deadline" in lowered or "timeout" in lowered:
        return "timeout"
    if "queue" not in lowered and any(sign in lowered for sign in (
            "unavailable", "connect", "socket closed", "connection reset", "stream removed", "broken pipe")):
        return "unreachable"
    return "refused"


def _reason(exc) -> str:
    return " ".join(str(exc.message() if hasattr(exc, "message") else exc).split())[:300]


class RemotePredictor(SeemPredictor):
    """SeemPredictor over a frame server: set_image keeps the frame; queries hold drawn points
    (RemotePrompt) instead of spatial tokens; every decode is one request."""

    def __init__(self, model, transport: TritonTransport, **kwargs):
        super().__init__(model, **kwargs)
        self.transport = transport
        self.image_encoder = transport  # what runs the frame work (describe_backend, release)

    def _encode(self, image_rgb: np.ndarray) -> EncodedImage:
        resized = self.fit_to_canvas(image_rgb)
        h, w = resized.shape[:2]
        size = self.model.cfg.size_divisibility
        canvas = self.canvas or (-(-h // size) * size, -(-w // size) * size)
        image = np.zeros((*canvas, 3), np.uint8)
        image[:h, :w] = resized
        return EncodedImage(None, [], (h, w), tuple(canvas), image_rgb.shape[:2],  # type: ignore[arg-type]
                            (h / image_rgb.shape[0], w / image_rgb.shape[1]), canvas_image=image)

    @property
    def frame(self):
        raise RuntimeError("backend triton: the frame's features are on the server")

    def _prompts_on_image(self, pos: Sequence[Tensor], neg: Sequence[Tensor]) -> List[RemotePrompt]:
        cfg = self.model.decoder.cfg
        levels = self.model.decoder.num_feature_levels
        drawn = draw_prompt_points([m.cpu() for m in pos], [m.cpu() for m in neg], cfg.max_spatial_len, levels,
                                   self.rng)
        return [RemotePrompt(points_table(drawn, i, cfg.max_spatial_len)) for i in range(len(pos))]

    def _with_this_image(self, prompts: Sequence[RemotePrompt]) -> List[RemotePrompt]:
        """The prompts carrying the current image, which the server encodes when they are used."""
        f = self.features
        return [RemotePrompt(p.points, f.canvas_image, np.array(f.input_hw, np.int32)) for p in prompts]

    def appearance(self, results) -> List[RemotePrompt]:
        """The masks' points on this frame, with the frame."""
        return self._with_this_image(super().appearance(results))

    def encode_reference_masks(self, pos: Sequence[Tensor], neg: Sequence[Tensor]) -> RemotePrompt:
        """An example region's points, with its image (encode_reference sets it as the current one)."""
        if len(pos) != 1:
            raise ValueError(f"backend triton encodes one example region at a time, not {len(pos)}")
        return self._with_this_image(self._prompts_on_image(pos, neg))[0]

    def _decode(self, queries: Sequence[ObjectQuery], class_embeddings: Optional[Tensor] = None) -> Decoded:
        request = self._request(queries, class_embeddings)
        response = self.transport.infer(request)
        device = self.model.device
        n = len(queries)
        decoded = Decoded(torch.tensor(response.logits[:n], device=device), torch.tensor(response.match[:n], device=device))
        if class_embeddings is not None:
            decoded.class_logits = torch.tensor(response.class_logits, device=device)
            decoded.object_masks = torch.tensor(response.object_masks, device=device)
        return decoded

    def _request(self, queries: Sequence[ObjectQuery], class_embeddings: Optional[Tensor]) -> FrameRequest:
        f = self.features
        image = f.canvas_image
        cfg = self.model.decoder.cfg
        dim = self.model.language.lang_proj.shape[1]
        context = self.model.language.lang_encoder.positional_embedding.shape[0]
        longest = max((len(q.text_tokens) for q in queries if q.grounded), default=1)
        tokens_max = min(-(-longest // 16) * 16, context)  # a few token lengths: requests still batch
        n = max(-(-len(queries) // ROW_SLOTS) * ROW_SLOTS, ROW_SLOTS)
        h4, w4 = f.mask_hw
        request = FrameRequest(
            image=image, input_hw=np.array(f.input_hw, np.int32), row_kind=np.full(n, EMPTY, np.int8),
            text_tokens=np.zeros((n, tokens_max, dim), np.float32), text_length=np.zeros(n, np.int32),
            sentence=np.zeros((n, dim), np.float32),
            points=np.zeros((n, self.model.decoder.num_feature_levels + 1, points_length(cfg.max_spatial_len), 3),
                            np.float32),
            point_image=np.full(n, -1, np.int32), memory=np.zeros((n, h4, w4), np.float32),
            has_memory=np.zeros(n, np.int8), reference_images=np.zeros((0, *image.shape), np.uint8),
            reference_sizes=np.zeros((0, 4), np.int32),
            class_embeddings=(np.zeros((0, dim), np.float32) if class_embeddings is None
                              else class_embeddings.float().cpu().numpy()))
        references: List[RemotePrompt] = []
        for i, query in enumerate(queries):
            if query.sentence is not None:
                request.sentence[i] = query.sentence.float().cpu().numpy()
            if query.grounded:
                request.row_kind[i] = TEXT
                tokens = query.text_tokens.float().cpu().numpy()
                request.text_tokens[i, :len(tokens)] = tokens
                request.text_length[i] = len(tokens)
                continue
            prompt = query.spatial
            if not isinstance(prompt, RemotePrompt):
                raise TypeError(f"backend triton takes prompts made by its own predictor, not {type(prompt).__name__}")
            request.row_kind[i] = VISUAL
            request.points[i] = prompt.points
            if prompt.image is not None and prompt.image is not image:
                same = [r for r, known in enumerate(references) if known.image is prompt.image]
                if not same:
                    references.append(prompt)
                request.point_image[i] = same[0] if same else len(references) - 1
            if query.memory is not None:
                memory = query.memory.float()
                if tuple(memory.shape) != (h4, w4):  # a previous frame of another size
                    memory = F.interpolate(memory[None, None], (h4, w4), mode="bilinear", align_corners=False)[0, 0]
                request.memory[i] = memory.cpu().numpy()
                request.has_memory[i] = 1
        if not request.has_memory.any():  # not sent
            request.memory = request.memory[:0]
        if references:
            height, width = (max(r.image.shape[i] for r in references) for i in (0, 1))
            request.reference_images = np.zeros((len(references), height, width, 3), np.uint8)
            for r, reference in zip(request.reference_images, references):
                r[:reference.image.shape[0], :reference.image.shape[1]] = reference.image
            request.reference_sizes = np.array([[*r.input_hw, *r.image.shape[:2]] for r in references], np.int32)
        return request

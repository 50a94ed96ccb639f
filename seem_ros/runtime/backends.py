"""Inference backends. Each gives a SeemPredictor whose image encoder (backbone + pixel decoder,
the expensive part) runs on the chosen runtime; the prompt decoder runs in PyTorch.

- torch: CPU or CUDA, fp32, fp16 autocast (CUDA) or the image encoder in bf16 (where the device
  computes bf16 natively); on CUDA the image encoder replayed from CUDA graphs.
- onnxruntime: the image encoder and the frame engine's slot decoder exported to ONNX (one pair
  per input canvas, kept in the engine cache) and run by ONNX Runtime (CPU, or CUDA where
  onnxruntime-gpu is installed).
- tensorrt: the same ONNX graphs built into native TensorRT engines (engine cache with manifests).
- triton: a SEEM frame server (seem-ros serve) does each frame's image encoding and decoding; the
  robot keeps the model for text and class embeddings (triton_client).
Text encoding, prompt sampling and segment-everything stay in torch (on the server, for triton).
"""
import contextlib
import hashlib
import importlib
import io
import json
import logging
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor

from seem_ros.inference.coco_classes import COCO_PANOPTIC_CLASSES, NUM_THING_CLASSES
from seem_ros.inference.predictor import SeemPredictor
from seem_ros.model.prompt_templates import PROMPT_TEMPLATES
from seem_ros.model.seem import SEEM
from seem_ros.model.variants import VARIANTS
from seem_ros.model.visual_sampler import DeterministicSampling
from seem_ros.runtime.cuda_graphs import CudaGraphEncoder, CudaGraphRunner, CudaGraphSlotDecoder
from seem_ros.runtime.engine_cache import default_cache_dir, export_code_digest, write_atomically
from seem_ros.runtime.exported import ExportedGraphs, ort_opener
from seem_ros.runtime.host_memory import keep_frame_buffers
from seem_ros.runtime.onnx_graphs import DecoderSlots, default_slots
from seem_ros.runtime.tensorrt_backend import import_tensorrt, tensorrt_opener
from seem_ros.runtime.triton_client import RemotePredictor, ServerMismatch, ServerUnavailable, TritonTransport
from seem_ros.runtime.triton_protocol import PROTOCOL_VERSION, ServerInfo
from seem_ros.weights import load_seem, remembered_sha256, resolve_checkpoint

LOG = logging.getLogger(__name__)
BACKENDS = ("torch", "onnxruntime", "tensorrt", "triton")
PRECISIONS = ("fp32", "fp16", "bf16")
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")  # x86 (Cooper Lake, Zen 4, Sapphire Rapids on), aarch64


class BackendError(RuntimeError):
    pass


TORCH_DEFAULT_THREADS = torch.get_num_threads()  # this process's, before anything here sets them


@dataclass
class BackendConfig:
    checkpoint: str
    model_config: str = "focalt_v1"
    backend: str = "torch"
    device: str = "cpu"
    precision: str = "fp32"
    short_side: int = 512
    vocabulary: Tuple[str, ...] = ()
    engine_cache_dir: str = ""  # exported graphs and engines; "" = default_cache_dir() (~/.cache/seem_ros/engines)
    decoder_slots: Tuple[int, int] = (4, 16)  # exported decoder: (text, visual) objects per pass
    cuda_graphs: bool = True  # torch on CUDA: the image encoder replayed from CUDA graphs
    compile: bool = False  # torch: the image encoder (and the CUDA-graph frame decoder) through torch.compile
    canvas: Optional[Tuple[int, int]] = None  # one padded input size for all images (None: each its own)
    triton_url: str = "localhost:8001"  # backend triton: the frame server's gRPC address
    triton_model: str = "seem_frame"
    triton_timeout_ms: int = 2000  # one frame's request; a request over it fails (counted), the next goes on
    triton_shared_memory: bool = False  # a server on this host: requests and results through system shared memory
    cpu_threads: int = 0  # torch's threads in a process of one predictor (apply_cpu_threads)
    # class embeddings take ~45 s for the COCO vocabulary on a 2-core CPU: kept here between runs
    embedding_cache_dir: str = os.path.join(os.path.expanduser("~"), ".cache", "seem_ros")


def _onnx_providers(cfg: BackendConfig) -> Tuple[List[str], str]:
    """-> (execution providers, a warning when the requested device cannot be used)."""
    import onnxruntime
    available = onnxruntime.get_available_providers()
    if cfg.device.startswith("cuda"):
        if "CUDAExecutionProvider" not in available:
            return ["CPUExecutionProvider"], (f"ONNX Runtime runs on the CPU although device is {cfg.device!r}: this "
                                              "onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu)")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"], ""
    return ["CPUExecutionProvider"], ""


def variant_name(model_config: str) -> str:
    """A released variant's name, or custom-<hash of the YAML> (the file's name says nothing of its content)."""
    if model_config in VARIANTS:
        return model_config
    with open(model_config, "rb") as f:
        return "custom-" + hashlib.sha256(f.read()).hexdigest()[:12]


class RuntimeGraphs(ExportedGraphs):
    """ExportedGraphs that say which runtime really runs them."""

    def __init__(self, *args, runtime: str, fallback_warning: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.runtime = runtime
        self.fallback_warning = fallback_warning
        self.providers: Dict[str, List[str]] = {}  # ONNX Runtime: graph -> providers its session really got
        self.built: List[str] = []  # TensorRT: engines built by this process, and why
        self.version = ""  # TensorRT: its version

    def describe(self) -> str:
        if self.runtime == "onnxruntime":
            used = sorted({p for providers in self.providers.values() for p in providers if p != "CPUExecutionProvider"})
            return f"onnxruntime [{', '.join(used or ['CPUExecutionProvider'])}]"
        return f"tensorrt {self.version}"


def _slots(cfg: BackendConfig, model: SEEM) -> DecoderSlots:
    return default_slots(model, visual=cfg.decoder_slots[1], text=cfg.decoder_slots[0])


def _exported_graphs(cfg: BackendConfig, model: SEEM) -> RuntimeGraphs:
    sha = remembered_sha256(resolve_checkpoint(cfg.checkpoint))
    slots = _slots(cfg, model)
    cache_dir = cfg.engine_cache_dir or default_cache_dir()
    common = dict(model=model, variant=variant_name(cfg.model_config), checkpoint_sha256=sha, slots=slots,
                  cache_dir=cache_dir)
    if cfg.backend == "onnxruntime":
        providers, warning = _onnx_providers(cfg)
        if cfg.precision != "fp32":
            warning = "; ".join(filter(None, [warning, f"precision {cfg.precision} is for torch on CUDA and TensorRT: "
                                                       "ONNX Runtime runs the fp32 graphs"]))
        if warning:
            LOG.warning(warning)
        graphs = RuntimeGraphs(open_graph=None, runtime="onnxruntime", fallback_warning=warning, **common)
        graphs.open_graph = ort_opener(providers, graphs.providers)
        return graphs
    if not cfg.device.startswith("cuda"):
        raise BackendError("backend 'tensorrt' runs on a GPU: set device to cuda")
    graphs = RuntimeGraphs(open_graph=None, runtime="tensorrt", precision=cfg.precision, **common)
    try:  # TensorRT is looked for before anything is exported
        graphs.open_graph = tensorrt_opener(cache_dir, torch.device(cfg.device), graphs.built, LOG)
        graphs.version = import_tensorrt().__version__
    except ImportError as exc:
        raise BackendError(str(exc)) from exc
    return graphs


def apply_cpu_threads(cfg: BackendConfig) -> int:
    """For a process that runs one predictor (the node, a command): torch's intra-op threads set to
    cfg.cpu_threads, or with 0 to torch's default for this process (one per core, or OMP_NUM_THREADS),
    except with backend triton: 1. The model's work is then the server's; the robot's own
    (post-processing) gains little from more threads, and idle OpenMP threads spin while the robot
    waits for each frame (~18 ms of a core per frame on a 2-core CPU), taken from the robot's other
    software or a server on its host. Set at every call: a node configured again with another
    backend gets the threads of that one. -> the threads now."""
    if cfg.cpu_threads < 0:
        raise BackendError(f"cpu threads must be 0 (torch's default) or more, not {cfg.cpu_threads}")
    torch.set_num_threads(cfg.cpu_threads or (1 if cfg.backend == "triton" else TORCH_DEFAULT_THREADS))
    return torch.get_num_threads()


def create_predictor(cfg: BackendConfig) -> SeemPredictor:
    """Loads the checkpoint and returns a predictor running on the configured backend; this
    process's allocator keeps a frame's buffers for the next frame from now on (host_memory)."""
    if cfg.backend not in BACKENDS:
        raise BackendError(f"unknown backend {cfg.backend!r} (one of {', '.join(BACKENDS)})")
    if cfg.precision not in PRECISIONS:
        raise BackendError(f"precision must be one of {', '.join(PRECISIONS)}, not {cfg.precision!r}")
    if cfg.precision == "bf16":
        if cfg.backend != "torch":
            raise BackendError(f"precision bf16 is for the torch backend; {cfg.backend} runs fp32 or fp16 graphs")
        missing = bf16_unsupported(cfg.device)
        if missing:
            raise BackendError(f"precision bf16 refused: {missing}; use precision fp32")
    if cfg.backend == "triton" and cfg.precision != "fp32":
        raise BackendError(f"precision {cfg.precision} is the server's choice with backend triton (seem-ros serve "
                           "--precision); the robot's side computes text embeddings in fp32")
    if cfg.compile and cfg.backend != "torch":
        raise BackendError(f"torch_compile is for the torch backend; {cfg.backend} runs its own graphs")
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise BackendError(f"device {cfg.device!r} requested but CUDA is not available")
    if min(cfg.decoder_slots) < 1:
        raise BackendError(f"decoder slots must be at least 1 each, not {cfg.decoder_slots}")
    keep_frame_buffers()
    model = load_seem(cfg.checkpoint, cfg.model_config, device=cfg.device)
    if cfg.backend == "triton":
        return _remote_predictor(cfg, model)
    if cfg.precision == "bf16":
        model.hold_image_encoder_in(torch.bfloat16)
    # compiled for one shape (a camera's canvas); on the CPU the decoder stays eager: its exact-size
    # decode costs less there than a fixed-slot graph however compiled
    encoder = torch.compile(model.encode_image, dynamic=False) if cfg.compile else None
    graphs = decoder = None
    if cfg.backend == "torch" and cfg.device.startswith("cuda") and cfg.cuda_graphs:
        encoder = CudaGraphEncoder(model, encoder)
        decoder = CudaGraphSlotDecoder(model, _slots(cfg, model), compiled=cfg.compile)
    elif cfg.backend != "torch":
        encoder = graphs = _exported_graphs(cfg, model)
    vocabulary, things, embeddings = _vocabulary(cfg, model)
    predictor = SeemPredictor(model, vocabulary, things, short_side=cfg.short_side, image_encoder=encoder,
                              class_embeddings=embeddings, rng=DeterministicSampling(), canvas=cfg.canvas)
    if decoder is not None:
        predictor.engine.run_slots = decoder.decode_slots
    if graphs is not None:
        predictor.engine.run_slots = graphs.decode_slots
        if cfg.canvas is not None:  # known now: export (or build) at configure, not at the first frame
            graphs.prepare(tuple(cfg.canvas))
    return predictor


def _vocabulary(cfg: BackendConfig, model: SEEM) -> Tuple[List[str], int, Tensor]:
    """segment-everything's classes: (names, how many are things, their embeddings + background's)."""
    vocabulary = list(cfg.vocabulary) or list(COCO_PANOPTIC_CLASSES)
    things = NUM_THING_CLASSES if not cfg.vocabulary else len(vocabulary)
    return vocabulary, things, cached_class_embeddings(model, resolve_checkpoint(cfg.checkpoint), vocabulary,
                                                       cfg.embedding_cache_dir)


def server_info(cfg: BackendConfig, backend: str = "", max_batch_size: int = 0) -> ServerInfo:
    """What a frame server of this configuration runs (and what a client of it expects)."""
    return ServerInfo(PROTOCOL_VERSION, variant_name(cfg.model_config),
                      remembered_sha256(resolve_checkpoint(cfg.checkpoint)), backend, max_batch_size)


def _remote_predictor(cfg: BackendConfig, model: SEEM) -> SeemPredictor:
    """A predictor whose frames go to the frame server at cfg.triton_url: checked now, and refused
    when it runs another protocol or checkpoint, or is an exported repository built for another
    canvas; not reachable yet, it is looked for again at the frames (which fail until it answers)."""
    transport = TritonTransport(cfg.triton_url, cfg.triton_model, cfg.triton_timeout_ms, server_info(cfg),
                                shared_memory=cfg.triton_shared_memory, object_queries=model.decoder.num_queries)
    try:
        importlib.import_module("tritonclient.grpc")  # looked for now, not at the first frame
    except ImportError as exc:
        raise BackendError(f"backend triton needs tritonclient (pip install 'tritonclient[grpc]'): {exc}") from exc
    try:
        transport.connect()
    except ServerMismatch as exc:
        raise BackendError(str(exc)) from exc
    except ServerUnavailable as exc:
        transport.last_error = str(exc)
        LOG.warning("frame server not available yet (%s): frames fail until it answers; retried with backoff", exc)
    if transport.layout is not None and tuple(cfg.canvas or ()) != tuple(transport.layout[1]):
        height, width = transport.layout[1]
        raise BackendError(f"{cfg.triton_model} at {cfg.triton_url} is built for a {height}x{width} canvas: set "
                           f"input_canvas {height}x{width}")
    vocabulary, things, embeddings = _vocabulary(cfg, model)
    return RemotePredictor(model, transport, class_names=vocabulary, num_thing_classes=things,
                           short_side=cfg.short_side, class_embeddings=embeddings, rng=DeterministicSampling(),
                           canvas=cfg.canvas)


def cpu_flags() -> List[str]:
    """The CPU's feature flags as Linux lists them (x86 "flags", aarch64 "Features"); [] elsewhere."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name.strip() in ("flags", "Features"):
                    return value.split()
    except OSError:
        pass
    return []


def bf16_unsupported(device: str) -> str:
    """Why device cannot compute bf16 natively ("" where it can). Without native bf16 (AVX512-BF16,
    AMX, ARMv8.6 BF16) torch emulates it, slower than fp32."""
    if device.startswith("cuda"):
        return "" if torch.cuda.is_bf16_supported() else f"{torch.cuda.get_device_name(device)} has no bf16 arithmetic"
    if set(BF16_CPU_FLAGS) & set(cpu_flags()):
        return ""
    return (f"this CPU has no native bf16 arithmetic (none of the CPU flags {', '.join(BF16_CPU_FLAGS)}), "
            "where bf16 would be emulated and slower than fp32")


def cached_class_embeddings(model: SEEM, checkpoint_path: str, vocabulary: List[str], cache_dir: str) -> Tensor:
    """Class embeddings of vocabulary + background, read from / written to cache_dir ("" = no cache).
    The key covers the checkpoint file (path, size, modification time), the vocabulary, the prompt
    templates and the code that computes them (the model package's source digest)."""
    if not cache_dir:
        return model.language.class_embeddings(vocabulary + ["background"])
    stat = os.stat(checkpoint_path)
    key = json.dumps([os.path.abspath(checkpoint_path), stat.st_size, stat.st_mtime_ns, vocabulary,
                      list(PROMPT_TEMPLATES), export_code_digest()])
    path = os.path.join(cache_dir, f"class_embeddings_{hashlib.sha256(key.encode()).hexdigest()[:20]}.pt")
    if os.path.isfile(path):
        try:
            embeddings = torch.load(path, map_location="cpu", weights_only=True)
            if embeddings.shape[0] == len(vocabulary) + 1:
                return embeddings
        except Exception as exc:  # a damaged cache file is recomputed, not fatal
            LOG.warning("ignoring unreadable class-embedding cache %s: %s", path, exc)
    embeddings = model.language.class_embeddings(vocabulary + ["background"]).cpu()
    try:
        buffer = io.BytesIO()
        torch.save(embeddings, buffer)
        write_atomically(path, buffer.getvalue())  # two nodes starting together never read a half file
    except OSError as exc:
        LOG.warning("cannot cache class embeddings in %s: %s", cache_dir, exc)
    return embeddings


def _runtime_parts(predictor: SeemPredictor) -> list:
    """What runs the predictor's graphs besides torch's own code: the image encoder's and the
    frame decoder's runners (CUDA graphs, ONNX Runtime sessions, TensorRT engines)."""
    parts = [predictor.image_encoder, getattr(predictor.engine.run_slots, "__self__", None)]
    return [part for i, part in enumerate(parts) if isinstance(part, (CudaGraphRunner, ExportedGraphs, TritonTransport))
            and part not in parts[:i]]


def move_predictor(predictor: SeemPredictor, device: str) -> None:
    """Moves the predictor's model, caches and runtime sessions to `device` ("cpu" frees the GPU)."""
    predictor.to(device)
    for part in _runtime_parts(predictor):
        part.release()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def backend_unavailable(predictor: SeemPredictor) -> str:
    """Why the backend cannot run frames now ("" when it can): a frame server not reachable."""
    return predictor.image_encoder.problem if isinstance(predictor.image_encoder, TritonTransport) else ""


def describe_backend(cfg: BackendConfig, predictor: SeemPredictor) -> Tuple[str, str]:
    """-> (the backend really in use, a warning when it is not what was configured)."""
    encoder = predictor.image_encoder
    if isinstance(encoder, TritonTransport):
        return encoder.describe(), ""
    if isinstance(encoder, RuntimeGraphs):
        built = f"; engines built: {' | '.join(encoder.built)}" if encoder.built else ""
        return f"{encoder.describe()} (image encoder and decoder), {encoder.precision}{built}", encoder.fallback_warning
    replayed = [part for part in _runtime_parts(predictor) if isinstance(part, CudaGraphRunner)]
    graphs = "".join(f", {part.what} {'eager: capture failed' if part.failed else 'in CUDA graphs'}"
                     for part in replayed)
    failed = "; ".join(f"the {part.what} cannot be replayed from a CUDA graph ({part.failed}): it runs eagerly"
                       for part in replayed if part.failed)
    precision = "bf16 image encoder, fp32 decoder" if cfg.precision == "bf16" else cfg.precision
    compiled = ", compiled (torch.compile)" if cfg.compile else ""
    return f"torch {cfg.device} {precision}{compiled}{graphs}", failed


@contextlib.contextmanager
def inference_context(cfg: BackendConfig):
    """Inference mode (no autograd graph, no version counters: a frame's tensors hold no graph of
    the features behind them), with fp16 autocast on CUDA when asked."""
    with torch.inference_mode():
        if cfg.precision == "fp16" and cfg.device.startswith("cuda"):
            with torch.autocast("cuda", dtype=torch.float16):
                yield
        else:
            yield

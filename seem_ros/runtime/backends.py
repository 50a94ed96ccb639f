"""Inference backends. Each gives a SeemPredictor whose image encoder (backbone + pixel decoder,
the expensive part) runs on the chosen runtime; the prompt decoder runs in PyTorch.

- torch: CPU or CUDA, fp32 or fp16 autocast.
- onnxruntime: the image encoder exported to ONNX and run by ONNX Runtime (CPU, or CUDA/TensorRT
  execution providers where installed), re-exported when the input size changes.
- tensorrt: the same ONNX encoder built into a TensorRT engine (needs the tensorrt package).
"""
import contextlib
import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from ..model.checkpoint import load_seem, resolve_checkpoint
from ..model.coco_classes import COCO_PANOPTIC_CLASSES, NUM_THING_CLASSES
from ..model.predictor import SeemPredictor
from ..model.seem import SEEM
from ..model.visual_sampler import DeterministicSampling

LOG = logging.getLogger(__name__)
BACKENDS = ("torch", "onnxruntime", "tensorrt")


class BackendError(RuntimeError):
    pass


@dataclass
class BackendConfig:
    checkpoint: str
    model_config: str = "focalt_v1"
    backend: str = "torch"
    device: str = "cpu"
    precision: str = "fp32"
    short_side: int = 512
    vocabulary: Tuple[str, ...] = ()
    engine_cache_dir: str = ""
    cuda_graphs: bool = True  # torch on CUDA: the image encoder replayed from CUDA graphs
    canvas: Optional[Tuple[int, int]] = None  # one padded input size for all images (None: each its own)
    # class embeddings take ~45 s for the COCO vocabulary on a 2-core CPU: kept here between runs
    embedding_cache_dir: str = os.path.join(os.path.expanduser("~"), ".cache", "seem_ros")


class _ImageEncoder(nn.Module):
    """backbone + pixel decoder as one graph: normalised padded image -> (mask_features, 3 levels)."""

    def __init__(self, model: SEEM):
        super().__init__()
        self.model = model

    def forward(self, image: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        mask_features, multi_scale = self.model.encode_image(image)
        return (mask_features, *multi_scale)


class OnnxImageEncoder:
    """SEEM.encode_image run by ONNX Runtime: one exported graph and session per input size."""

    def __init__(self, model: SEEM, providers: List[str], cache_dir: str, fallback_warning: str = ""):
        import onnxruntime  # noqa: F401 - fail at configure time, not at the first frame
        self.model = model
        self.providers = providers
        self.fallback_warning = fallback_warning
        self.cache_dir = cache_dir or tempfile.mkdtemp(prefix="seem_ros_onnx_")
        self.sessions: Dict[Tuple[int, int], object] = {}

    def release(self) -> None:
        """Drops the sessions (and the device memory they hold); they are re-created when needed."""
        self.sessions.clear()

    def providers_in_use(self) -> List[str]:
        used = {p for session in self.sessions.values() for p in session.get_providers()}
        return [p for p in self.providers if p in used] or self.providers

    def session(self, shape: Tuple[int, int]):
        if shape not in self.sessions:
            import onnxruntime
            path = os.path.join(self.cache_dir, f"seem_encoder_{shape[0]}x{shape[1]}.onnx")
            if not os.path.exists(path):
                LOG.info("exporting the image encoder for %dx%d to %s", shape[0], shape[1], path)
                dummy = torch.zeros((1, 3, *shape), device=self.model.device)
                with torch.no_grad():
                    torch.onnx.export(_ImageEncoder(self.model).eval(), (dummy,), path, opset_version=17,
                                      input_names=["image"], dynamo=False,
                                      output_names=["mask_features", "level0", "level1", "level2"])
            self.sessions[shape] = onnxruntime.InferenceSession(path, providers=self.providers)
        return self.sessions[shape]

    def __call__(self, image: Tensor) -> Tuple[Tensor, List[Tensor]]:
        outputs = self.session(tuple(image.shape[-2:])).run(None, {"image": image.detach().cpu().numpy()})
        tensors = [torch.from_numpy(o).to(image.device) for o in outputs]
        return tensors[0], tensors[1:]


class CudaGraphEncoder:
    """model.encode_image replayed from a CUDA graph, one per input shape and precision: the frames
    of a camera all have one shape, so after a warm-up each costs one graph launch instead of
    hundreds of kernel launches. Outputs are copied out of the graph's buffers, so that features
    kept by the caller survive the next replay."""

    def __init__(self, model: SEEM, max_graphs: int = 4):
        self.model = model
        self.max_graphs = max_graphs
        self.graphs: Dict[tuple, tuple] = {}  # (shape, autocast dtype) -> (graph, input, outputs)
        self._stream: Optional[torch.cuda.Stream] = None  # one capture stream: one cuBLAS workspace

    def __call__(self, image: Tensor) -> Tuple[Tensor, List[Tensor]]:
        key = (tuple(image.shape), torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else None)
        if key not in self.graphs:
            if len(self.graphs) >= self.max_graphs:  # shapes keep changing: not a camera stream
                return self.model.encode_image(image)
            self.graphs[key] = self._capture(image)
        graph, static_in, static_out = self.graphs[key]
        static_in.copy_(image)
        graph.replay()
        mask_features, multi_scale = static_out
        return mask_features.clone(), [level.clone() for level in multi_scale]

    def _capture(self, image: Tensor) -> tuple:
        static_in = image.clone()
        if self._stream is None:
            self._stream = torch.cuda.Stream(image.device)
        self._stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self._stream):
            for _ in range(3):  # warm-up: cuDNN picks its algorithms, the allocator settles
                self.model.encode_image(static_in)
        torch.cuda.current_stream().wait_stream(self._stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=self._stream):
            static_out = self.model.encode_image(static_in)
        return graph, static_in, static_out

    def release(self) -> None:
        """Drops the graphs and their memory pools (and the capture stream's cuBLAS workspace)."""
        self.graphs.clear()
        self._stream = None
        if hasattr(torch._C, "_cuda_clearCublasWorkspaces"):
            torch._C._cuda_clearCublasWorkspaces()


def _onnx_providers(cfg: BackendConfig) -> Tuple[List[str], str]:
    """-> (execution providers, a warning when the requested device cannot be used)."""
    import onnxruntime
    available = onnxruntime.get_available_providers()
    wanted = ["CPUExecutionProvider"]
    if cfg.backend == "tensorrt":
        if "TensorrtExecutionProvider" not in available:
            raise BackendError("backend 'tensorrt' needs TensorRT: install the tensorrt package and an onnxruntime "
                               f"build with the TensorRT execution provider (available: {', '.join(available)})")
        return ["TensorrtExecutionProvider", "CUDAExecutionProvider"] + wanted, ""
    if cfg.device.startswith("cuda"):
        if "CUDAExecutionProvider" not in available:
            return wanted, ("onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu): the image encoder "
                            f"runs on the CPU although device is {cfg.device!r}")
        wanted = ["CUDAExecutionProvider"] + wanted
    return wanted, ""


def create_predictor(cfg: BackendConfig) -> SeemPredictor:
    """Loads the checkpoint and returns a predictor running on the configured backend."""
    if cfg.backend not in BACKENDS:
        raise BackendError(f"unknown backend {cfg.backend!r} (one of {', '.join(BACKENDS)})")
    if cfg.precision not in ("fp32", "fp16"):
        raise BackendError(f"precision must be fp32 or fp16, not {cfg.precision!r}")
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise BackendError(f"device {cfg.device!r} requested but CUDA is not available")
    model = load_seem(cfg.checkpoint, cfg.model_config, device=cfg.device)
    encoder = None
    if cfg.backend == "torch" and cfg.device.startswith("cuda") and cfg.cuda_graphs:
        encoder = CudaGraphEncoder(model)
    elif cfg.backend != "torch":
        providers, warning = _onnx_providers(cfg)
        if warning:
            LOG.warning(warning)
        encoder = OnnxImageEncoder(model, providers, cfg.engine_cache_dir, warning)
    vocabulary = list(cfg.vocabulary) or list(COCO_PANOPTIC_CLASSES)
    things = NUM_THING_CLASSES if not cfg.vocabulary else len(vocabulary)
    embeddings = cached_class_embeddings(model, resolve_checkpoint(cfg.checkpoint), vocabulary,
                                         cfg.embedding_cache_dir)
    return SeemPredictor(model, vocabulary, things, short_side=cfg.short_side, image_encoder=encoder,
                         class_embeddings=embeddings, rng=DeterministicSampling(), canvas=cfg.canvas)


def cached_class_embeddings(model: SEEM, checkpoint_path: str, vocabulary: List[str], cache_dir: str) -> Tensor:
    """Class embeddings of vocabulary + background, read from / written to cache_dir ("" = no cache).
    The key covers the checkpoint file (path, size, modification time) and the vocabulary."""
    if not cache_dir:
        return model.language.class_embeddings(vocabulary + ["background"])
    stat = os.stat(checkpoint_path)
    key = json.dumps([os.path.abspath(checkpoint_path), stat.st_size, stat.st_mtime_ns, vocabulary])
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
        os.makedirs(cache_dir, exist_ok=True)
        torch.save(embeddings, path)
    except OSError as exc:
        LOG.warning("cannot cache class embeddings in %s: %s", cache_dir, exc)
    return embeddings


def move_predictor(predictor: SeemPredictor, device: str) -> None:
    """Moves the predictor's model, caches and runtime sessions to `device` ("cpu" frees the GPU)."""
    predictor.to(device)
    if isinstance(predictor.image_encoder, (OnnxImageEncoder, CudaGraphEncoder)):
        predictor.image_encoder.release()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def describe_backend(cfg: BackendConfig, predictor: SeemPredictor) -> Tuple[str, str]:
    """-> (the backend really in use, a warning when it is not what was configured)."""
    encoder = predictor.image_encoder
    if isinstance(encoder, OnnxImageEncoder):
        return f"onnxruntime [{', '.join(encoder.providers_in_use())}], {cfg.precision}", encoder.fallback_warning
    graphs = ", image encoder in CUDA graphs" if isinstance(encoder, CudaGraphEncoder) else ""
    return f"torch {cfg.device} {cfg.precision}{graphs}", ""


def inference_context(cfg: BackendConfig):
    """fp16 autocast on CUDA when asked; plain fp32 otherwise."""
    if cfg.precision == "fp16" and cfg.device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()

"""Persistent caches of exported ONNX graphs and TensorRT engines.

An ONNX file is named by what it was exported from (graph, model variant, checkpoint sha256,
input shape, slot layout, precision), so that another checkpoint or shape never meets it. A
TensorRT engine is only valid for the TensorRT version, GPU and ONNX it was built from: each
engine has a JSON manifest beside it holding that key, and a cached engine is used only when the
key matches, the file is whole (its sha256) and TensorRT deserialises it; otherwise it is rebuilt
and the reason is logged (a JetPack upgrade, another GPU, a corrupt file). A matching key never
rebuilds. Files are written to a temporary name and renamed, so that a crash mid-write never
leaves a half file under the real name.
"""
import contextlib
import fcntl
import functools
import hashlib
import json
import logging
import os
import pathlib
import re
import tempfile
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, Optional, Tuple

import torch

from seem_ros.weights import cache_root, remembered_sha256, sha256_of

LOG = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1)
def export_code_digest() -> str:
    """The sha256 (16 hex digits) of the source the graphs are traced from (the model and inference
    packages, where the frame engine lives, onnx_graphs.py, and mixed_precision.py, which rewrites
    them for fp16): a change to any of it exports anew. A hand-bumped format number was forgotten twice while the exported decoder changed."""
    package = pathlib.Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    traced = sorted((package / "model").glob("*.py")) + sorted((package / "inference").glob("*.py"))
    for path in traced + [package / "runtime" / "onnx_graphs.py", package / "runtime" / "mixed_precision.py"]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def default_cache_dir() -> str:
    return os.path.join(cache_root(), "engines")


@contextlib.contextmanager
def replacing(path: str, prefix: Optional[str] = None, suffix: str = ""):
    """A temporary path beside `path` for the block to write; once written it is synced to disk and
    renamed over `path` (a crash or a power cut leaves the old file or the new one, never a half
    one); a block that fails leaves nothing behind."""
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=folder, prefix=prefix or os.path.basename(path) + ".", suffix=suffix)
    os.close(handle)
    try:
        yield partial
        with open(partial, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(partial, 0o644)  # readable by a service running as another user, like a file written in place
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def write_atomically(path: str, data: bytes) -> None:
    with replacing(path) as partial, open(partial, "wb") as f:
        f.write(data)


@contextlib.contextmanager
def locked(path: str):
    """An exclusive lock on path + ".lock" for as long as the block runs: two processes that would
    export or build the same file (two nodes starting together) do it one after the other, the
    second then finding the first one's file."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path + ".lock", "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _read_manifest(path: str) -> Optional[dict]:
    try:
        with open(path) as f:
            manifest = json.load(f)
        return manifest if isinstance(manifest, dict) else None
    except (OSError, ValueError):
        return None


def _differences(old: dict, new: dict) -> str:
    return "; ".join(f"{name}: {old.get(name)!r} -> {new[name]!r}" for name in new if old.get(name) != new[name])


# ---------------------------------------------------------------- ONNX
@dataclass(frozen=True)
class GraphSpec:
    """What an exported ONNX graph is of."""
    graph: str  # "encoder" or "decoder"
    variant: str  # model variant name (or "custom-<hash>" for a YAML config)
    checkpoint_sha256: str
    canvas: Tuple[int, int]  # padded input (height, width)
    slots: str = ""  # decoder slot layout (DecoderSlots.describe())
    precision: str = "fp32"  # or "fp16": the fp32 graph rewritten with fp32 islands (mixed_precision)
    exporter: Dict[str, Any] = field(default_factory=lambda: {"torch": torch.__version__,
                                                              "code": export_code_digest()}, compare=False)

    def file_name(self) -> str:
        """Two installs of different code sharing one cache keep a file each."""
        slots = f"_{self.slots}" if self.slots else ""
        return (f"seem_{self.graph}_{self.variant}_{self.checkpoint_sha256[:16]}_{self.canvas[0]}x{self.canvas[1]}"
                f"{slots}_{self.precision}_{self.exporter['code'][:8]}.onnx")

    def manifest(self) -> dict:
        return {name: list(value) if isinstance(value, tuple) else value for name, value in asdict(self).items()}


def cached_onnx(spec: GraphSpec, export: Callable[[str], None], cache_dir: str = "", log=LOG) -> str:
    """The path of spec's ONNX file in cache_dir (default: default_cache_dir()), exported by
    export(path) when missing, exported by another exporter version, or changed since."""
    path = os.path.join(cache_dir or default_cache_dir(), spec.file_name())
    folder = os.path.dirname(path)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise NotADirectoryError(f"the engine cache {folder} is not a folder")
    with locked(path):
        reason = _stale_onnx(path, spec)
        if reason is None:
            return path
        log.info("exporting the %s to %s (%s)", spec.graph, path, reason)
        with replacing(path, prefix=spec.graph + ".", suffix=".onnx") as partial:
            export(partial)
        manifest = spec.manifest()
        manifest["onnx_sha256"] = sha256_of(path)
        write_atomically(path + ".json", json.dumps(manifest, indent=1).encode())
        return path


def _stale_onnx(path: str, spec: GraphSpec) -> Optional[str]:
    if not os.path.isfile(path):
        return "not exported yet"
    manifest = _read_manifest(path + ".json")
    if manifest is None:
        return "its manifest is missing or unreadable"
    expected = spec.manifest()
    changed = _differences({k: manifest.get(k) for k in expected}, expected)
    if changed:
        return f"exported differently ({changed})"
    if remembered_sha256(path) != manifest.get("onnx_sha256"):
        return "the file changed since it was exported (sha256 differs from its manifest)"
    return None


# ---------------------------------------------------------------- TensorRT
@dataclass(frozen=True)
class EngineKey:
    """Everything a serialized TensorRT engine depends on."""
    tensorrt: str
    gpu: str
    compute_capability: str
    onnx_sha256: str
    precision: str
    shapes: Tuple[Tuple[str, Tuple[int, ...]], ...]  # (input name, shape) of every input
    builder_flags: Tuple[str, ...] = ()

    def as_dict(self) -> dict:
        return {"tensorrt": self.tensorrt, "gpu": self.gpu, "compute_capability": self.compute_capability,
                "onnx_sha256": self.onnx_sha256, "precision": self.precision,
                "shapes": {name: list(shape) for name, shape in self.shapes},
                "builder_flags": list(self.builder_flags)}


@dataclass
class CachedEngine:
    engine: Any  # what deserialize() returned
    path: str
    built: bool  # False: loaded from the cache
    reason: str  # why it was built ("" when loaded)


class EngineCache:
    """TensorRT engines built from ONNX files, kept beside their manifests.

    build(onnx_path, key) -> serialized engine bytes; deserialize(bytes) -> engine (raises when
    TensorRT refuses the data). Both are passed in: the real ones come from tensorrt_backend,
    tests pass their own to check the cache logic where TensorRT is absent."""

    def __init__(self, build: Callable[[str, EngineKey], bytes], deserialize: Callable[[bytes], Any],
                 cache_dir: str = "", log=LOG):
        self.build = build
        self.deserialize = deserialize
        self.cache_dir = cache_dir or default_cache_dir()
        self.log = log

    def engine_path(self, onnx_path: str, key: EngineKey) -> str:
        """Named by its GPU and TensorRT version too: two GPUs or TensorRT versions sharing a cache
        keep an engine each instead of rebuilding over each other at every start."""
        stem = os.path.splitext(os.path.basename(onnx_path))[0]
        gpu = re.sub(r"[^A-Za-z0-9.]+", "-", f"{key.gpu}-sm{key.compute_capability}").strip("-")
        return os.path.join(self.cache_dir, f"{stem}_{key.precision}_{gpu}_trt{key.tensorrt}.engine")

    def get(self, onnx_path: str, key: EngineKey) -> CachedEngine:
        path = self.engine_path(onnx_path, key)
        with locked(path):  # another process building the same engine: wait, then use its engine
            return self._get(onnx_path, key, path)

    def _get(self, onnx_path: str, key: EngineKey, path: str) -> CachedEngine:
        reason = self.why_rebuild(path, key)
        if reason is None:
            with open(path, "rb") as f:
                data = f.read()
            try:
                return CachedEngine(self.deserialize(data), path, built=False, reason="")
            except Exception as exc:  # noqa: BLE001 - any refusal means: build it anew
                reason = f"TensorRT could not deserialise the cached engine ({exc})"
        (self.log.info if reason == "no cached engine" else self.log.warning)(
            "building the TensorRT engine %s: %s", path, reason)
        data = self.build(onnx_path, key)
        write_atomically(path, data)
        manifest = {"key": key.as_dict(), "engine_sha256": sha256_of(path), "onnx": os.path.basename(onnx_path)}
        write_atomically(path + ".json", json.dumps(manifest, indent=1).encode())
        return CachedEngine(self.deserialize(data), path, built=True, reason=reason)

    @staticmethod
    def why_rebuild(path: str, key: EngineKey) -> Optional[str]:
        """None when the engine at path can be used for key, else why not."""
        if not os.path.isfile(path):
            return "no cached engine"
        manifest = _read_manifest(path + ".json")
        if manifest is None or not isinstance(manifest.get("key"), dict):
            return "its manifest is missing or unreadable"
        changed = _differences(manifest["key"], key.as_dict())
        if changed:
            return f"built for another setup ({changed})"
        if sha256_of(path) != manifest.get("engine_sha256"):
            return "the engine file is corrupt (sha256 differs from its manifest)"
        return None

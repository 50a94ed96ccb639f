"""Obtaining, verifying and loading SEEM checkpoints.

An official checkpoint is a bare float32 state_dict (no `model.` prefix). Unlike the official
loader, which silently keeps random weights for missing or mis-shaped keys, loading here is strict:
any missing, unexpected or mis-shaped key is an error that names it.

A released file's sha256 is computed once per file identity (path, size, modification time,
inode) and remembered in a small JSON file under SEEM_ROS_CACHE_DIR (default ~/.cache/seem_ros):
hashing 0.7-1.4 GB at every configure costs seconds. Files are read memory-mapped, so that the
state_dict does not sit in memory beside the model.
"""
import hashlib
import json
import logging
import os
import tempfile
from typing import Dict, Optional, Union

import torch
import yaml

from seem_ros.model.seem import SEEM, SeemConfig
from seem_ros.model.variants import VARIANTS, official_config

LOG = logging.getLogger(__name__)
HUB_REPO = "xdecoder/SEEM"
# sha256 and size of the released files (from the hub's LFS pointers)
KNOWN_CHECKPOINTS = {
    "seem_focalt_v1.pt": ("675e86a033a3cc4bc6fa906e4c7e1878dd11728ef8858a457a4a45cf3f2987b2", 658792514),
    "seem_focall_v1.pt": ("06cad58bde442ce4f2b3ce00e3a218791dfb060a2d7f2d709ff509669c28a705", 1365136278),
    "seem_samvitb_v1.pt": ("fd6f9eb3d73917d0465dc35c4bc9f2f1019dccc0e741d31ced42f5333cbb35da", None),
}


class CheckpointError(RuntimeError):
    pass


def sha256_of(path: str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def cache_root() -> str:
    """$SEEM_ROS_CACHE_DIR, default ~/.cache/seem_ros: checksums, exported graphs, engines."""
    return os.path.expanduser(os.environ.get("SEEM_ROS_CACHE_DIR", "~/.cache/seem_ros"))


def _checksum_file() -> str:
    return os.path.join(cache_root(), "checksums.json")


def remembered_sha256(path: str) -> str:
    """sha256_of(path), computed once per file identity; a changed file is hashed again."""
    stat = os.stat(path)
    identity = json.dumps([os.path.abspath(path), stat.st_size, stat.st_mtime_ns, stat.st_ino])
    store = _checksum_file()
    try:
        with open(store) as f:
            known = json.load(f)
    except (OSError, ValueError):  # none yet, or damaged: start afresh
        known = {}
    if identity in known:
        return known[identity]
    digest = known[identity] = sha256_of(path)
    try:
        os.makedirs(os.path.dirname(store), exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=os.path.dirname(store), delete=False) as f:
            json.dump(known, f)
        os.replace(f.name, store)  # another process reading it sees the old or the new file, whole
    except OSError as exc:
        LOG.warning("cannot remember the checksum of %s in %s: %s", path, store, exc)
    return digest


def verify_known_checkpoint(path: str) -> None:
    """If the file name is a released checkpoint's, its size and sha256 must match."""
    name = os.path.basename(path)
    if name not in KNOWN_CHECKPOINTS:
        return
    digest, size = KNOWN_CHECKPOINTS[name]
    actual_size = os.path.getsize(path)
    if size is not None and actual_size != size:
        raise CheckpointError(f"{path}: {actual_size} bytes, expected {size} for {name} (incomplete download?)")
    actual = remembered_sha256(path)
    if actual != digest:
        raise CheckpointError(f"{path}: sha256 {actual} does not match the released {name} ({digest})")


def resolve_checkpoint(name_or_path: str, cache_dir: Optional[str] = None) -> str:
    """A local path, or a released file name (a bare name, no folder) fetched from the hub into its
    cache. A path with a folder that does not exist is an error naming it: a typo in
    /data/models/seem_focalt_v1.pt must not start a 0.7-1.7 GB download."""
    if os.path.isfile(name_or_path):
        return name_or_path
    name = os.path.basename(name_or_path)
    if name != name_or_path or name_or_path.startswith("~"):
        raise CheckpointError(f"checkpoint {name_or_path} does not exist (a path is never downloaded; a released "
                              f"checkpoint is named without a folder, e.g. {next(iter(KNOWN_CHECKPOINTS))})")
    LOG.info("checkpoint %s is not a file here: fetching the released one from huggingface.co/%s into %s",
             name, HUB_REPO, cache_dir or "the Hugging Face cache")
    try:
        from huggingface_hub import hf_hub_download
        return hf_hub_download(HUB_REPO, name, cache_dir=cache_dir)
    except Exception as exc:  # offline, unknown file, hub error: say exactly what to do
        known = KNOWN_CHECKPOINTS.get(name)
        hint = f" (sha256 {known[0]})" if known else ""
        raise CheckpointError(
            f"checkpoint {name_or_path!r} is not a file and could not be downloaded from "
            f"huggingface.co/{HUB_REPO} ({type(exc).__name__}: {exc}). Download {name}{hint} and place it at "
            f"{os.path.abspath(name_or_path)}, or set the checkpoint parameter to its path.") from exc


def check_state_dict(expected: Dict[str, torch.Tensor], actual: Dict[str, torch.Tensor], source: str) -> None:
    missing = [k for k in expected if k not in actual]
    unexpected = [k for k in actual if k not in expected]
    mismatched = [f"{k}: checkpoint {tuple(actual[k].shape)} vs model {tuple(expected[k].shape)}"
                  for k in expected if k in actual and tuple(actual[k].shape) != tuple(expected[k].shape)]
    problems = []
    for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched)):
        if items:
            shown = ", ".join(items[:10]) + (f" ... (+{len(items) - 10} more)" if len(items) > 10 else "")
            problems.append(f"{len(items)} {title}: {shown}")
    if problems:
        raise CheckpointError(f"{source} does not fit this SEEM configuration: " + "; ".join(problems))


def _load_state(path: str):
    """torch.load with weights_only, memory-mapped where the file format allows it (zip archives,
    torch >= 1.6); older files are read whole."""
    import zipfile
    return torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))


def config_for(variant_or_yaml: Union[str, dict]) -> SeemConfig:
    if isinstance(variant_or_yaml, dict):
        return SeemConfig.from_official(variant_or_yaml)
    if variant_or_yaml in VARIANTS:
        return SeemConfig.from_official(official_config(variant_or_yaml))
    with open(variant_or_yaml) as f:
        return SeemConfig.from_official(yaml.safe_load(f))


def load_seem(checkpoint: str, config: Union[str, dict] = "focalt_v1", device: str = "cpu",
              cache_dir: Optional[str] = None) -> SEEM:
    """Build the model for `config` (variant name, official YAML path or dict) and load `checkpoint`
    (path or released file name) strictly, with weights_only=True."""
    model = SEEM(config_for(config))
    path = resolve_checkpoint(checkpoint, cache_dir)
    verify_known_checkpoint(path)
    try:
        state = _load_state(path)
    except Exception as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} is not a bare state_dict of tensors (official SEEM format)")
    check_state_dict(model.state_dict(), state, path)
    model.load_state_dict(state, strict=True)
    LOG.info("loaded SEEM checkpoint %s (%d tensors)", path, len(state))
    # inference only: with parameters requiring grad every tensor computed from them carries an
    # autograd graph that holds the features behind it (a frame's, kept by the tracker)
    return model.requires_grad_(False).to(device).eval()

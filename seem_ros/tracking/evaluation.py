"""Video object segmentation metrics and runs on DAVIS-layout sequences (no ROS).

A DAVIS-layout folder holds `JPEGImages/480p/<sequence>/<frame>.jpg` and
`Annotations/480p/<sequence>/<frame>.png` (non-zero = the object). Each sequence is prompted by
its first frame's ground-truth mask and segmented in three ways:
- `referring`: the official SEEM video demo's way: the first frame and its mask are an example
  region, and every later frame is segmented against that one reference on its own;
- `propagation`: the official mask propagation (the `g_video_maskprop` reference cases): frame
  t's mask prompts frame t + 1;
- `tracker`: the ObjectTracker as the node runs it (its object defined by the same mask).
Metrics follow the DAVIS benchmark: J is the region IoU, F the boundary F-measure with a
tolerance of 0.008 of the image diagonal, J&F their mean, each averaged over the frames after the
first (the prompt) and before the last, as the DAVIS evaluation does; id switches count frames
where the object best covering the ground truth has another id than before.
"""
import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import cv2
import numpy as np
import torch
from PIL import Image

from ..model.predictor import SeemPredictor, VisualPrompt
from .tracker import ObjectTracker

MODES = ("referring", "propagation", "tracker")


def region_similarity(mask: np.ndarray, truth: np.ndarray) -> float:
    """J: intersection over union (1 when both are empty)."""
    union = np.logical_or(mask, truth).sum()
    return 1.0 if union == 0 else float(np.logical_and(mask, truth).sum() / union)


def _boundary(mask: np.ndarray) -> np.ndarray:
    """The mask's one-pixel boundary (DAVIS seg2bmap at the mask's own size): pixels of the mask
    whose right, lower or lower-right neighbour differs."""
    mask = mask.astype(bool)
    east, south, south_east = np.zeros_like(mask), np.zeros_like(mask), np.zeros_like(mask)
    east[:, :-1], south[:-1, :], south_east[:-1, :-1] = mask[:, 1:], mask[1:, :], mask[1:, 1:]
    boundary = (mask ^ east) | (mask ^ south) | (mask ^ south_east)
    boundary[-1, :] = mask[-1, :] ^ east[-1, :]
    boundary[:, -1] = mask[:, -1] ^ south[:, -1]
    boundary[-1, -1] = False
    return boundary


def boundary_f_measure(mask: np.ndarray, truth: np.ndarray, tolerance: float = 0.008) -> float:
    """F: boundary precision and recall, a boundary pixel counting as matched when the other
    boundary lies within tolerance x the image diagonal (1 when both are empty)."""
    radius = max(1, math.ceil(tolerance * math.hypot(*mask.shape)))
    ours, theirs = _boundary(mask), _boundary(truth)
    if not ours.any() and not theirs.any():
        return 1.0
    if not ours.any() or not theirs.any():
        return 0.0
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    near_theirs = cv2.dilate(theirs.astype(np.uint8), disk).astype(bool)
    near_ours = cv2.dilate(ours.astype(np.uint8), disk).astype(bool)
    precision = (ours & near_theirs).sum() / ours.sum()
    recall = (theirs & near_ours).sum() / theirs.sum()
    return 0.0 if precision + recall == 0 else float(2 * precision * recall / (precision + recall))


@dataclass
class VideoSequence:
    name: str
    frames: List[str]  # image paths, in order
    truths: List[np.ndarray]  # bool (H, W) per frame


def read_davis(root: str, sequences: Optional[Sequence[str]] = None, resolution: str = "480p",
               max_frames: int = 0) -> List[VideoSequence]:
    images = os.path.join(root, "JPEGImages", resolution)
    annotations = os.path.join(root, "Annotations", resolution)
    if not os.path.isdir(images) or not os.path.isdir(annotations):
        raise FileNotFoundError(f"{root} is not a DAVIS-layout folder (no JPEGImages/{resolution} and "
                                f"Annotations/{resolution})")
    names = sorted(sequences or os.listdir(images))
    out = []
    for name in names:
        frames = sorted(f for f in os.listdir(os.path.join(images, name)) if f.lower().endswith((".jpg", ".png")))
        if max_frames:
            frames = frames[:max_frames]
        truths = [np.asarray(Image.open(os.path.join(annotations, name, os.path.splitext(f)[0] + ".png"))) > 0
                  for f in frames]
        out.append(VideoSequence(name, [os.path.join(images, name, f) for f in frames],
                             [t if t.ndim == 2 else t.any(-1) for t in truths]))
    return out


@dataclass
class ModeResult:
    mode: str
    sequence: str
    j: float
    f: float
    id_switches: int
    fps: float
    per_frame_j: List[float] = field(default_factory=list)

    @property
    def jf(self) -> float:
        return (self.j + self.f) / 2


def _rgb(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def run_sequence(predictor: SeemPredictor, sequence: VideoSequence, mode: str,
                 tracker_factory: Callable[[], ObjectTracker] = ObjectTracker) -> ModeResult:
    """Segments frames 1.. of the sequence prompted by frame 0's ground truth; metrics over the
    frames between the first and the last (all after the first when there are two)."""
    first, truth0 = _rgb(sequence.frames[0]), sequence.truths[0]
    masks: List[np.ndarray] = []
    ids: List[Optional[int]] = []
    started = time.perf_counter()
    with torch.inference_mode():
        if mode == "referring":
            reference = predictor.encode_reference(first, truth0)
            for path in sequence.frames[1:]:
                predictor.set_image(_rgb(path))
                masks.append(predictor.decode([predictor.reference_query(reference)])[0].mask)
                ids.append(1)
        elif mode == "propagation":
            previous = VisualPrompt(mask=truth0)
            for path in sequence.frames[1:]:
                predictor.set_image(_rgb(path))
                result = predictor.decode([predictor.visual_query(previous)])[0]
                masks.append(result.mask)
                ids.append(1)
                if result.mask.any():  # an empty mask cannot prompt: keep the last one
                    previous = VisualPrompt(mask=result.mask)
        elif mode == "tracker":
            tracker = tracker_factory()
            tracker.add("object", visual=VisualPrompt(mask=truth0))
            for path, truth in zip(sequence.frames[1:], sequence.truths[1:]):
                predictor.set_image(_rgb(path))
                objects = tracker.step(predictor)
                best = max(objects, key=lambda o: region_similarity(o.mask, truth), default=None)
                masks.append(best.mask if best is not None else np.zeros_like(truth))
                ids.append(best.id if best is not None else None)
        else:
            raise ValueError(f"unknown mode {mode!r} (one of {', '.join(MODES)})")
    elapsed = time.perf_counter() - started
    scored = list(range(len(masks) - 1)) if len(masks) > 1 else list(range(len(masks)))  # not the last frame
    js = [region_similarity(masks[i], sequence.truths[i + 1]) for i in scored]
    fs = [boundary_f_measure(masks[i], sequence.truths[i + 1]) for i in scored]
    switches = sum(1 for a, b in zip(ids, ids[1:]) if a != b)
    return ModeResult(mode, sequence.name, float(np.mean(js)) if js else 0.0, float(np.mean(fs)) if fs else 0.0,
                      switches, len(masks) / elapsed if elapsed > 0 else 0.0, js)


def evaluate(predictor: SeemPredictor, sequences: Sequence[VideoSequence], modes: Sequence[str] = MODES,
             progress: Callable[[str], None] = lambda line: None) -> Dict[str, List[ModeResult]]:
    results: Dict[str, List[ModeResult]] = {mode: [] for mode in modes}
    for sequence in sequences:
        for mode in modes:
            result = run_sequence(predictor, sequence, mode)
            progress(f"{sequence.name:16s} {mode:12s} J {result.j:.3f}  F {result.f:.3f}  J&F {result.jf:.3f}  "
                     f"id switches {result.id_switches}  {result.fps:.2f} fps")
            results[mode].append(result)
    return results


def table(results: Dict[str, List[ModeResult]]) -> str:
    """Per sequence and mode, and the mean over sequences per mode."""
    lines = [f"{'sequence':16s} {'mode':12s} {'J':>6s} {'F':>6s} {'J&F':>6s} {'id sw':>6s} {'fps':>7s}"]
    for mode, rows in results.items():
        for r in rows:
            lines.append(f"{r.sequence:16s} {mode:12s} {r.j:6.3f} {r.f:6.3f} {r.jf:6.3f} {r.id_switches:6d} "
                         f"{r.fps:7.2f}")
    for mode, rows in results.items():
        if rows:
            lines.append(f"{'mean':16s} {mode:12s} {np.mean([r.j for r in rows]):6.3f} "
                         f"{np.mean([r.f for r in rows]):6.3f} {np.mean([r.jf for r in rows]):6.3f} "
                         f"{sum(r.id_switches for r in rows):6d} {np.mean([r.fps for r in rows]):7.2f}")
    return "\n".join(lines)

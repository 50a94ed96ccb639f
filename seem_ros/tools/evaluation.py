"""Video object segmentation metrics and runs on DAVIS-layout sequences (no ROS).

A DAVIS-layout folder holds `JPEGImages/480p/<sequence>/<frame>.jpg` and
`Annotations/480p/<sequence>/<frame>.png`. An annotation is a label image: DAVIS 2017 gives each
object its own value (1, 2, ...; 255 = void, left out of the scores), DAVIS 2016 marks its one
object with 255 (any other annotation with a single non-zero value is one object too). A frame
without an annotation is segmented but not scored. As in the DAVIS toolkit, every object of the
first frame is prompted by its own ground-truth mask there and scored on its own, and segmented
in three ways:
- `referring`: the official SEEM video demo's way: the first frame and the object's mask are an
  example region, and every later frame is segmented against that one reference on its own;
- `propagation`: the official mask propagation (the `g_video_maskprop` reference cases): frame
  t's mask prompts frame t + 1;
- `tracker`: the ObjectTracker as the node runs it (an object per ground-truth object, all
  tracked together).
Metrics follow the DAVIS benchmark: J is the region IoU, F the boundary F-measure with a
tolerance of 0.008 of the image diagonal, J&F their mean, each averaged per object over its
annotated frames after the first (the prompt) and before the last, then over objects (a sequence's
figure: its objects'; the overall mean: every object's, as the DAVIS toolkit averages); id
switches count frames where the tracked object best covering an object's ground truth has another
id than before.
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

from seem_ros.inference.predictor import SeemPredictor

from seem_ros.inference.visual_prompt import VisualPrompt
from seem_ros.tracking.tracker import ObjectTracker

MODES = ("referring", "propagation", "tracker")


def region_similarity(mask: np.ndarray, truth: np.ndarray, void: Optional[np.ndarray] = None) -> float:
    """J: intersection over union (1 when both are empty), void pixels left out."""
    if void is not None:
        mask, truth = mask & ~void, truth & ~void
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


VOID = 255  # DAVIS 2017: pixels left out of the scores


@dataclass
class VideoSequence:
    name: str
    frames: List[str]  # image paths, in order
    labels: List[Optional[np.ndarray]]  # per frame a (H, W) label image (0 = background), None: not annotated
    objects: List[int]  # the label values of the first frame's objects

    def truth(self, frame: int, obj: int) -> Optional[np.ndarray]:
        """Object obj's bool mask in a frame (None: the frame is not annotated)."""
        labels = self.labels[frame]
        return None if labels is None else labels == obj

    def void(self, frame: int) -> Optional[np.ndarray]:
        labels = self.labels[frame]
        return None if labels is None or VOID in self.objects else labels == VOID


def read_labels(path: str) -> np.ndarray:
    """An annotation as a label image: palette indices or grey values; colour annotations (one
    object drawn in any colour) become 0/1."""
    labels = np.asarray(Image.open(path))
    return labels.any(-1).astype(np.uint8) if labels.ndim == 3 else labels


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
        paths = [os.path.join(annotations, name, os.path.splitext(f)[0] + ".png") for f in frames]
        labels = [read_labels(p) if os.path.isfile(p) else None for p in paths]
        if labels[0] is None:
            raise FileNotFoundError(f"{name}: the first frame has no annotation ({paths[0]}): it prompts the objects")
        values = [int(v) for v in np.unique(labels[0]) if v]
        objects = values if values == [VOID] else [v for v in values if v != VOID]  # DAVIS 2016: 255 is the object
        if not objects:
            raise ValueError(f"{name}: the first frame's annotation {paths[0]} marks no object")
        out.append(VideoSequence(name, [os.path.join(images, name, f) for f in frames], labels, objects))
    return out


@dataclass
class ObjectScores:
    j: float
    f: float
    id_switches: int
    per_frame_j: List[float] = field(default_factory=list)


@dataclass
class ModeResult:
    mode: str
    sequence: str
    objects: List[ObjectScores]
    fps: float

    @property
    def j(self) -> float:
        return float(np.mean([o.j for o in self.objects]))

    @property
    def f(self) -> float:
        return float(np.mean([o.f for o in self.objects]))

    @property
    def jf(self) -> float:
        return (self.j + self.f) / 2

    @property
    def id_switches(self) -> int:
        return sum(o.id_switches for o in self.objects)


def _rgb(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def run_sequence(predictor: SeemPredictor, sequence: VideoSequence, mode: str,
                 tracker_factory: Callable[[], ObjectTracker] = ObjectTracker) -> ModeResult:
    """Segments frames 1.. of the sequence, every object prompted by its frame-0 ground truth;
    each object scored on its annotated frames between the first and the last (all after the
    first when there are two)."""
    first = _rgb(sequence.frames[0])
    firsts = [sequence.truth(0, obj) for obj in sequence.objects]
    masks: List[List[np.ndarray]] = []  # per frame after the first: a mask per object
    ids: List[List[Optional[int]]] = []  # per frame after the first: the id that found each object
    started = time.perf_counter()
    with torch.inference_mode():
        if mode == "referring":
            references = [predictor.encode_reference(first, truth) for truth in firsts]
            for path in sequence.frames[1:]:
                predictor.set_image(_rgb(path))
                masks.append([r.mask for r in predictor.decode([predictor.reference_query(r) for r in references])])
                ids.append(list(sequence.objects))
        elif mode == "propagation":
            previous = [VisualPrompt(mask=truth) for truth in firsts]
            for path in sequence.frames[1:]:
                predictor.set_image(_rgb(path))
                results = predictor.decode([predictor.visual_query(p) for p in previous])
                masks.append([r.mask for r in results])
                ids.append(list(sequence.objects))
                # an empty mask cannot prompt: the object keeps its last one
                previous = [VisualPrompt(mask=r.mask) if r.mask.any() else p for r, p in zip(results, previous)]
        elif mode == "tracker":
            tracker = tracker_factory()
            for truth in firsts:
                tracker.add("object", visual=VisualPrompt(mask=truth))
            for t, path in enumerate(sequence.frames[1:], start=1):
                predictor.set_image(_rgb(path))
                objects = tracker.step(predictor)
                found, frame_ids = [], []
                for obj in sequence.objects:  # the tracked object best covering each ground-truth object
                    truth = sequence.truth(t, obj)
                    best = (max(objects, key=lambda o: region_similarity(o.mask, truth), default=None)
                            if truth is not None else None)
                    found.append(best.mask if best is not None else np.zeros(first.shape[:2], bool))
                    frame_ids.append(best.id if best is not None else None)
                masks.append(found)
                ids.append(frame_ids)
        else:
            raise ValueError(f"unknown mode {mode!r} (one of {', '.join(MODES)})")
    elapsed = time.perf_counter() - started
    scored = range(1, len(sequence.frames) - 1) if len(sequence.frames) > 2 else range(1, len(sequence.frames))
    scores = []
    for k, obj in enumerate(sequence.objects):
        annotated = [t for t in scored if sequence.labels[t] is not None]
        js = [region_similarity(masks[t - 1][k], sequence.truth(t, obj), sequence.void(t)) for t in annotated]
        fs = [boundary_f_measure(masks[t - 1][k], sequence.truth(t, obj)) for t in annotated]
        seen = [frame_ids[k] for frame_ids in ids if frame_ids[k] is not None]
        scores.append(ObjectScores(float(np.mean(js)) if js else 0.0, float(np.mean(fs)) if fs else 0.0,
                                   sum(1 for a, b in zip(seen, seen[1:]) if a != b), js))
    return ModeResult(mode, sequence.name, scores, len(masks) / elapsed if elapsed > 0 else 0.0)


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


def overall(rows: Sequence[ModeResult]) -> Dict[str, float]:
    """J, F, J&F averaged over every object of every sequence (the DAVIS toolkit's mean)."""
    objects = [o for r in rows for o in r.objects]
    j, f = float(np.mean([o.j for o in objects])), float(np.mean([o.f for o in objects]))
    return {"J": j, "F": f, "JF": (j + f) / 2, "objects": len(objects)}


def table(results: Dict[str, List[ModeResult]]) -> str:
    """Per sequence and mode (its objects' mean), and per mode the mean over all objects."""
    lines = [f"{'sequence':16s} {'mode':12s} {'J':>6s} {'F':>6s} {'J&F':>6s} {'id sw':>6s} {'fps':>7s} {'objects':>7s}"]
    for mode, rows in results.items():
        for r in rows:
            lines.append(f"{r.sequence:16s} {mode:12s} {r.j:6.3f} {r.f:6.3f} {r.jf:6.3f} {r.id_switches:6d} "
                         f"{r.fps:7.2f} {len(r.objects):7d}")
    for mode, rows in results.items():
        if rows:
            mean = overall(rows)
            lines.append(f"{'mean':16s} {mode:12s} {mean['J']:6.3f} {mean['F']:6.3f} {mean['JF']:6.3f} "
                         f"{sum(r.id_switches for r in rows):6d} {np.mean([r.fps for r in rows]):7.2f} "
                         f"{mean['objects']:7d}")
    return "\n".join(lines)

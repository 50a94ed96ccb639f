"""A visual prompt (clicks, a box, scribbles, a mask) in pixels of an image, and its rasterisation
into the positive and negative masks SEEM's visual sampler reads, drawn as the official demo draws
them."""
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

CLICK_RADIUS = 1  # a click is a 3x3 square, as the official click sampler draws it
SCRIBBLE_THICKNESS = 5


@dataclass
class VisualPrompt:
    """One object's visual prompt, in pixels of the image given to set_image.
    points: (x, y, label) with label 1 = positive, 0 = negative; box: (x0, y0, x1, y1) inclusive,
    drawn filled; scribbles: polylines [(x, y), ...] of positive strokes; mask: (H, W) bool, or uint8
    where > 0 is on (resized like the official demo sketch: bilinear on the uint8 values, then > 0).
    image_hw: (height, width) of the image the coordinates were given on, when it may differ from
    the image given to set_image (a camera that changed resolution); None = that image."""
    points: Sequence[Tuple[float, float, int]] = ()
    box: Optional[Tuple[float, float, float, float]] = None
    scribbles: Sequence[Sequence[Tuple[float, float]]] = ()
    negative_scribbles: Sequence[Sequence[Tuple[float, float]]] = ()
    mask: Optional[np.ndarray] = None
    image_hw: Optional[Tuple[int, int]] = None

    def has_positive(self) -> bool:
        """Something marks the object itself (negative clicks/strokes alone cannot prompt)."""
        return (any(label for _, _, label in self.points) or self.box is not None or len(self.scribbles) > 0
                or self.mask is not None)

    def has_negative(self) -> bool:
        return any(not label for _, _, label in self.points) or len(self.negative_scribbles) > 0


def rasterize(prompt: VisualPrompt, hw: Tuple[int, int], scale: Tuple[float, float]) -> Tuple[np.ndarray, np.ndarray]:
    """-> (positive, negative) uint8 masks at model-input size. scale = input/original (y, x)."""
    h, w = hw
    sy, sx = scale
    pos = np.zeros((h, w), np.uint8)
    neg = np.zeros((h, w), np.uint8)

    def px(x, y):
        return int(round(x * sx)), int(round(y * sy))

    for x, y, label in prompt.points:
        cx, cy = px(x, y)
        target = pos if label else neg
        target[max(cy - CLICK_RADIUS, 0):cy + CLICK_RADIUS + 1, max(cx - CLICK_RADIUS, 0):cx + CLICK_RADIUS + 1] = 1
    if prompt.box is not None:
        x0, y0 = px(prompt.box[0], prompt.box[1])
        x1, y1 = px(prompt.box[2], prompt.box[3])
        pos[min(y0, y1):max(y0, y1) + 1, min(x0, x1):max(x0, x1) + 1] = 1
    for strokes, target in ((prompt.scribbles, pos), (prompt.negative_scribbles, neg)):
        for stroke in strokes:
            pts = [px(x, y) for x, y in stroke]
            if len(pts) == 1:
                pts = pts * 2
            for a, b in zip(pts[:-1], pts[1:]):
                cv2.line(target, a, b, 1, SCRIBBLE_THICKNESS)
    if prompt.mask is not None:
        m = np.asarray(prompt.mask)
        m = m if m.dtype == np.uint8 else (m > 0).astype(np.uint8) * 255
        if m.shape != (h, w):
            # official demo: bilinear on the uint8 sketch (not binarised first), then > 0
            m = F.interpolate(torch.from_numpy(m.copy())[None, None], (h, w), mode="bilinear").numpy()[0, 0]
        pos |= (m > 0).astype(np.uint8)
    return pos, neg


def no_negatives(pos: Sequence[Tensor]) -> List[Tensor]:
    """Empty negative masks for positive masks on one canvas: one tensor for all, so that a
    repeatable sampler scans it once (DeterministicSampling's draws are cached per mask)."""
    empty = torch.zeros_like(pos[0]) if pos else None
    return [empty if m.shape == empty.shape else torch.zeros_like(m) for m in pos]


def _image_hw(prompt: VisualPrompt) -> Optional[Tuple[int, int]]:
    """The size of the image a prompt's pixels are on, where it says (image_hw, else its mask's)."""
    if prompt.image_hw is not None:
        return tuple(prompt.image_hw)
    return tuple(np.asarray(prompt.mask).shape[:2]) if prompt.mask is not None else None


def on_image(prompt: VisualPrompt, hw: Optional[Tuple[int, int]]) -> VisualPrompt:
    """prompt's marks in pixels of an image of size hw (a camera that changed resolution)."""
    own = _image_hw(prompt)
    if own is None or hw is None or own == tuple(hw):
        return prompt
    sy, sx = hw[0] / own[0], hw[1] / own[1]
    mask = None if prompt.mask is None else cv2.resize(
        (np.asarray(prompt.mask) > 0).astype(np.uint8), (hw[1], hw[0]), interpolation=cv2.INTER_NEAREST) > 0
    return VisualPrompt(points=[(x * sx, y * sy, label) for x, y, label in prompt.points],
                        box=None if prompt.box is None else (prompt.box[0] * sx, prompt.box[1] * sy,
                                                             prompt.box[2] * sx, prompt.box[3] * sy),
                        scribbles=[[(x * sx, y * sy) for x, y in line] for line in prompt.scribbles],
                        negative_scribbles=[[(x * sx, y * sy) for x, y in line] for line in prompt.negative_scribbles],
                        mask=mask, image_hw=tuple(hw))


def merge_prompts(base: Optional[VisualPrompt], correction: VisualPrompt) -> VisualPrompt:
    """base's marks plus correction's (new clicks and strokes added, masks united, the newer box),
    base's brought to the correction's image size first."""
    if base is None:
        return correction
    base = on_image(base, _image_hw(correction))
    points = list(base.points) + [p for p in correction.points if p not in base.points]
    mask = base.mask if correction.mask is None else correction.mask if base.mask is None else (
        (np.asarray(base.mask) > 0) | (np.asarray(correction.mask) > 0))
    return VisualPrompt(points=points,
                        box=correction.box if correction.box is not None else base.box,
                        scribbles=list(base.scribbles) + list(correction.scribbles),
                        negative_scribbles=list(base.negative_scribbles) + list(correction.negative_scribbles),
                        mask=mask, image_hw=correction.image_hw or base.image_hw)

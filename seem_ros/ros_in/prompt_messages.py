"""SegmentationPrompt messages, clicks and image-size checks -> model prompts.

Works on message objects by their fields only, so it is testable without a ROS graph."""
import math
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np

from seem_ros.inference.visual_prompt import VisualPrompt
from seem_ros.prompts.text_commands import MAX_TEXT_LENGTH
from seem_ros.ros_in.image_conversion import ImageConversionError, ImageLimits, image_to_rgb


class PromptError(ValueError):
    """The prompt cannot be used; the text says why."""


@dataclass
class ParsedPrompt:
    label: str
    text: str
    visual: Optional[VisualPrompt]
    reference: Optional[Tuple[np.ndarray, np.ndarray]]  # (rgb, bool mask)
    object_id: int
    track: bool


def check_pixel(x: float, y: float, size: Optional[Tuple[int, int]], what: str = "click") -> Tuple[float, float]:
    """size: (height, width) of the current camera image, None while unknown."""
    if not (math.isfinite(x) and math.isfinite(y)):
        raise PromptError(f"{what} at ({x}, {y}) is not a finite pixel position")
    if size is not None:
        h, w = size
        if not (0 <= x < w and 0 <= y < h):
            raise PromptError(f"{what} at ({x:.1f}, {y:.1f}) is outside the {w}x{h} image")
    return x, y


def _mono_mask(image, what: str, limits: ImageLimits) -> Optional[np.ndarray]:
    if image.width == 0 and image.height == 0:
        return None
    try:
        return image_to_rgb(image, limits)[..., 0] > 0
    except ImageConversionError as exc:
        raise PromptError(f"{what}: {exc}") from exc


def needs_image_size(msg) -> bool:
    """Whether the prompt has pixel coordinates, which can only be checked against a camera frame."""
    return bool(msg.positive_points or msg.negative_points or len(msg.boxes) or msg.scribbles or msg.mask.width
                or msg.mask.height)


def parse_prompt(msg, image_size: Optional[Tuple[int, int]], limits: ImageLimits = ImageLimits()) -> ParsedPrompt:
    """image_size: (height, width) of the camera frame the prompt applies to."""
    text = " ".join(msg.text.split())
    if len(text) > MAX_TEXT_LENGTH:
        raise PromptError(f"prompt text is {len(text)} characters long (at most {MAX_TEXT_LENGTH})")
    label = " ".join(msg.label.split())
    if len(label) > MAX_TEXT_LENGTH:
        raise PromptError(f"label is {len(label)} characters long (at most {MAX_TEXT_LENGTH})")
    points = [(*check_pixel(p.x, p.y, image_size), 1) for p in msg.positive_points]
    points += [(*check_pixel(p.x, p.y, image_size), 0) for p in msg.negative_points]
    boxes = list(msg.boxes)
    if len(boxes) % 4:
        raise PromptError(f"boxes needs 4 values per box (x0, y0, x1, y1), got {len(boxes)} values")
    if len(boxes) > 4:
        raise PromptError("one box per prompt (send several prompts for several objects)")
    box = None
    if boxes:
        x0, y0 = check_pixel(boxes[0], boxes[1], image_size, "box corner")
        x1, y1 = check_pixel(boxes[2], boxes[3], image_size, "box corner")
        box = (x0, y0, x1, y1)
    positive: List = []
    negative: List = []
    for stroke in msg.scribbles:
        pts = [check_pixel(p.x, p.y, image_size, "scribble point") for p in stroke.points]
        if pts:
            (positive if stroke.positive else negative).append(pts)
    mask = _mono_mask(msg.mask, "mask", limits)
    if mask is not None:
        if image_size is not None and mask.shape != tuple(image_size):
            raise PromptError(f"mask is {mask.shape[1]}x{mask.shape[0]}, the camera image "
                              f"{image_size[1]}x{image_size[0]}")
        if not mask.any():
            raise PromptError("mask is empty (no pixel is non-zero)")
    visual = VisualPrompt(points=points, box=box, scribbles=positive, negative_scribbles=negative, mask=mask,
                          image_hw=tuple(image_size) if image_size is not None else None)
    if not visual.has_positive():
        if visual.has_negative() and not msg.object_id:  # refining a tracked object: its own mask is the positive
            raise PromptError("a prompt needs something on the object, not only negative clicks/strokes")
        if not visual.has_negative():
            visual = None
    reference = None
    ref_mask = _mono_mask(msg.reference_mask, "reference_mask", limits)
    if ref_mask is not None or msg.reference_image.width:
        if ref_mask is None or not msg.reference_image.width:
            raise PromptError("a reference needs both reference_image and reference_mask")
        try:
            ref_rgb = image_to_rgb(msg.reference_image, limits)
        except ImageConversionError as exc:
            raise PromptError(f"reference_image: {exc}") from exc
        if ref_rgb.shape[:2] != ref_mask.shape:
            raise PromptError("reference_mask must have the size of reference_image")
        if not ref_mask.any():
            raise PromptError("reference_mask is empty")
        reference = (ref_rgb, ref_mask)
    if not text and visual is None and reference is None and not msg.object_id:
        raise PromptError("empty prompt: give text, points, a box, scribbles, a mask or a reference")
    return ParsedPrompt(label or text or "object", text, visual, reference, int(msg.object_id), bool(msg.track))


def project_to_pixel(point_xyz: Tuple[float, float, float], k: Tuple[float, ...]) -> Tuple[float, float]:
    """Pinhole projection of a point in the camera optical frame with CameraInfo.k (row-major 3x3)."""
    x, y, z = point_xyz
    if not all(math.isfinite(v) for v in (x, y, z)):
        raise PromptError("clicked point is not finite")
    if z <= 0:
        raise PromptError(f"clicked point is behind the camera (z = {z:.3f} m in the optical frame)")
    fx, cx, fy, cy = k[0], k[2], k[4], k[5]
    if fx == 0 or fy == 0:
        raise PromptError("CameraInfo has no intrinsics (k is zero)")
    return fx * x / z + cx, fy * y / z + cy

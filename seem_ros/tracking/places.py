"""Finding tracked objects by place (ObjectTracker.places): which lost object was last seen under
a click, which objects a detector's boxes already hold; a mask's bounding box (also what the
results and vision_msgs detections report)."""
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from seem_ros.tracking.naming import same_object
from seem_ros.tracking.objects import LOST

Box = Tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels, inclusive


class Place(NamedTuple):
    label: str
    status: str
    mask: Optional[np.ndarray]  # last confident mask, at the camera image size of its frame; None before one
    box: Optional[Box]  # its box prompt, if it has one
    box_hw: Optional[Tuple[int, int]]  # the size of the image the box is on (None: the camera's)


def lost_object_at(places: Dict[int, Place], x: float, y: float,
                   image_hw: Optional[Tuple[int, int]] = None) -> Optional[int]:
    """The lost object whose last mask covers pixel (x, y), if any (the newest when several do).
    image_hw: the size of the image the pixel is on (masks of another size are scaled)."""
    for object_id in sorted(places, reverse=True):
        place = places[object_id]
        if place.status != LOST or place.mask is None:
            continue
        mask = place.mask
        sy, sx = (mask.shape[0] / image_hw[0], mask.shape[1] / image_hw[1]) if image_hw else (1.0, 1.0)
        row, col = int(y * sy), int(x * sx)
        if 0 <= row < mask.shape[0] and 0 <= col < mask.shape[1] and mask[row, col]:
            return object_id
    return None


def objects_holding(places: Dict[int, Place], boxes: Sequence[Tuple[str, Box]], image_hw: Tuple[int, int],
                    min_iou: float) -> List[Optional[int]]:
    """Per (label, box) on an image of size image_hw: the object of that label overlapping the box
    most, by an IoU of at least min_iou with its last mask's bounding box or with its own box prompt
    (a detector's box for an object that has not moved, or has no mask yet); None if none does.
    Each object's boxes are found once for all the boxes (a detector sends every frame)."""
    bounds = {object_id: _bounds(place, image_hw) for object_id, place in places.items()}
    holders: List[Optional[int]] = []
    for label, box in boxes:
        best, best_iou = None, min_iou
        for object_id, place in places.items():
            if not same_object(place.label, label):
                continue
            iou = max((_box_iou(own, box) for own in bounds[object_id]), default=0.0)
            if iou >= best_iou:
                best, best_iou = object_id, iou
        holders.append(best)
    return holders


def bounding_box(mask: np.ndarray) -> Tuple[int, int, int, int]:
    """(x, y, width, height) of the mask's pixels; zeros when empty."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return 0, 0, 0, 0
    return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


def _bounds(place: Place, image_hw: Tuple[int, int]) -> List[Box]:
    """The place's boxes on an image of size image_hw: its last mask's bounding box, its box prompt."""
    bounds = []
    if place.mask is not None:
        x, y, width, height = bounding_box(place.mask)
        if width:
            sy, sx = image_hw[0] / place.mask.shape[0], image_hw[1] / place.mask.shape[1]
            bounds.append((x * sx, y * sy, (x + width) * sx - 1, (y + height) * sy - 1))
    if place.box is not None:
        sy, sx = (image_hw[0] / place.box_hw[0], image_hw[1] / place.box_hw[1]) if place.box_hw else (1.0, 1.0)
        x0, y0, x1, y1 = place.box
        bounds.append((x0 * sx, y0 * sy, (x1 + 1) * sx - 1, (y1 + 1) * sy - 1))
    return bounds


def _box_iou(a: Box, b: Box) -> float:
    """IoU of inclusive pixel boxes."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
    inter = width * height
    union = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - inter
    return inter / union if union > 0 else 0.0

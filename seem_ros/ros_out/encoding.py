"""Mask encodings and images published by the node (no ROS imports: arrays in, arrays out)."""
from typing import Dict, Iterable, List, Sequence, Tuple

import cv2
import numpy as np

from seem_ros.tracking.places import bounding_box


def encode_rle(mask: np.ndarray) -> List[int]:
    """Row-major run lengths of a bool mask, starting with a (possibly empty) background run."""
    flat = np.asarray(mask, bool).ravel()
    if flat.size == 0:
        return []
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    runs = np.diff(bounds).tolist()
    return ([0] + runs) if flat[0] else runs


def decode_rle(runs: Sequence[int], height: int, width: int) -> np.ndarray:
    values = np.zeros(len(runs), bool)
    values[1::2] = True
    return np.repeat(values, runs).reshape(height, width)


class LabelSlots:
    """Small label-image values for object ids: ids grow for the whole process lifetime, past what
    a mono16 image holds, so each live object gets the smallest free value (1..65535) and keeps it
    until it is gone. The value -> id map is published in LabelInfo."""
    MAX_VALUE = 65535

    def __init__(self):
        self._value_of: Dict[int, int] = {}

    def update(self, live_ids: Iterable[int]) -> Dict[int, int]:
        """Frees the values of objects no longer live, gives new objects one; -> {id: value}."""
        live = set(live_ids)
        self._value_of = {i: v for i, v in self._value_of.items() if i in live}
        used = set(self._value_of.values())
        free = (v for v in range(1, self.MAX_VALUE + 1) if v not in used)
        for object_id in sorted(live - set(self._value_of)):
            self._value_of[object_id] = next(free)
        return dict(self._value_of)


def label_image(shape: Tuple[int, int], objects, values: Dict[int, int]) -> np.ndarray:
    """uint16 label values (values[object id]), 0 = background; where objects overlap the higher score wins."""
    labels = np.zeros(shape, np.uint16)
    for obj in sorted(objects, key=lambda o: o.score):
        labels[obj.mask] = values[obj.id]
    return labels


def _colour(object_id: int) -> Tuple[int, int, int]:
    hue = (object_id * 47) % 180  # well-spread, stable per id
    bgr = cv2.cvtColor(np.uint8([[[hue, 220, 255]]]), cv2.COLOR_HSV2BGR)[0, 0]
    return int(bgr[0]), int(bgr[1]), int(bgr[2])


def overlay(rgb: np.ndarray, objects, alpha: float = 0.5) -> np.ndarray:
    """BGR debug image: coloured masks, outlines, and "id label score" at each object."""
    out = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    for obj in objects:
        if not obj.mask.any():
            continue
        colour = np.array(_colour(obj.id), np.float32)
        out[obj.mask] = (out[obj.mask] * (1 - alpha) + colour * alpha).astype(np.uint8)
        contours, _ = cv2.findContours(obj.mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, _colour(obj.id), 2)
        x, y, _, _ = bounding_box(obj.mask)
        cv2.putText(out, f"{obj.id} {obj.label} {obj.score:.2f}", (x, max(y - 4, 12)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return out

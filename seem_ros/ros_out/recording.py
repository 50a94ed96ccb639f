"""What a run over recorded frames leaves in its output folder (no ROS imports):
- overlay.mp4: the frames with coloured masks, outlines and "id label score";
- labels/NNNNNN.png: per frame a 16-bit label image (pixel = the object's label value, 0 = none;
  values -> ids in objects.jsonl);
- objects.jsonl: a line per object and frame: frame, stamp (ns), id, label, label_value, score,
  bbox (x, y, width, height), status, mode;
- bag/: a rosbag2 (MCAP) of the input frames and the node's outputs for them (bag_recording.py).
"""
import json
import logging
import os
import shutil
from typing import Sequence

import cv2

from .bag_recording import BagRecorder
from .encoding import LabelSlots, bounding_box, label_image, overlay


OUTPUTS = ("overlay.mp4", "labels", "objects.jsonl", "bag")


LOG = logging.getLogger(__name__)


class RecordingWriter:
    """Outputs of an earlier run in out_dir are replaced, with a warning that names them."""

    def __init__(self, out_dir: str, fps: float = 10.0, bag: bool = True):
        self.out_dir = out_dir
        self.fps = fps
        replaced = [name for name in OUTPUTS if os.path.exists(os.path.join(out_dir, name))]
        if replaced:
            LOG.warning("replacing the earlier %s in %s", ", ".join(replaced), out_dir)
        for name in replaced:
            path = os.path.join(out_dir, name)
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
        os.makedirs(os.path.join(out_dir, "labels"), exist_ok=True)
        self._bag = BagRecorder(os.path.join(out_dir, "bag")) if bag else None
        self._video = None
        self._size = None  # (width, height) of the first frame: the video's
        self._objects = open(os.path.join(out_dir, "objects.jsonl"), "w")
        self._slots = LabelSlots()
        self.frames = 0

    def write(self, index: int, stamp_ns: int, rgb, objects: Sequence, inference_s: float = 0.0) -> None:
        """One frame and its objects (FrameObject-like: id, label, mask, score, status, mode)."""
        height, width = rgb.shape[:2]
        if self._video is None:
            path = os.path.join(self.out_dir, "overlay.mp4")
            self._video = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (width, height))
            if not self._video.isOpened():
                raise RuntimeError(f"cannot write {path} (OpenCV has no MPEG-4 encoder here)")
            self._size = (width, height)
        elif (width, height) != self._size:
            raise ValueError(f"frame {index} is {width}x{height}, the first was {self._size[0]}x{self._size[1]}: "
                             "a recording keeps one frame size")
        drawn = overlay(rgb, objects)
        self._video.write(drawn)
        values = self._slots.update(o.id for o in objects)
        labels = label_image((height, width), [o for o in objects if o.mask.any()], values)
        cv2.imwrite(os.path.join(self.out_dir, "labels", f"{index:06d}.png"), labels)
        if self._bag is not None:
            self._bag.write(stamp_ns, rgb, objects, labels, drawn, inference_s, values)
        for o in objects:
            self._objects.write(json.dumps({
                "frame": index, "stamp": stamp_ns, "id": o.id, "label": o.label, "label_value": values[o.id],
                "score": round(float(o.score), 4), "bbox": list(bounding_box(o.mask)), "status": o.status,
                "mode": o.mode}) + "\n")
        self.frames += 1

    def close(self) -> None:
        if self._video is not None:
            self._video.release()
        if self._bag is not None:
            self._bag.close()
        self._objects.close()

    def __enter__(self) -> "RecordingWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

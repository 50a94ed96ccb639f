"""What a run over recorded frames leaves in its output folder (no ROS imports):
- overlay.mp4: the frames with coloured masks, outlines and "id label score";
- labels/NNNNNN.png: per frame a 16-bit label image (pixel = the object's label value, 0 = none;
  values -> ids in objects.jsonl);
- objects.jsonl: a line per object and frame: frame, stamp (ns), id, label, label_value, score,
  bbox (x, y, width, height), status, mode;
- bag/: a rosbag2 (MCAP) of the input frames and the node's outputs for them (bag_recording.py);
- .seem_ros_output.json: the marker that lists what seem_ros wrote there, so that a later run
  replaces exactly that and never a file of the user's.
"""
import json
import logging
import os
import shutil
from typing import Sequence, Tuple

import cv2

from seem_ros.ros_out.encoding import LabelSlots, label_image, overlay

from seem_ros.tools.bag_recording import BagRecorder
from seem_ros.tracking.places import bounding_box


OUTPUTS = ("overlay.mp4", "labels", "objects.jsonl", "bag")
MARKER = ".seem_ros_output.json"

LOG = logging.getLogger(__name__)


class OutputFolderRefused(ValueError):
    """The output folder holds files seem_ros did not write there."""


def claim_output_folder(out_dir: str, outputs: Tuple[str, ...] = OUTPUTS, overwrite: bool = False) -> None:
    """Makes out_dir ready for a run's outputs without deleting anything seem_ros did not write.

    An empty or new folder is used as it is. A folder with the marker of an earlier seem_ros run
    has that run's outputs (only those the marker lists) removed, with a warning. Any other folder
    with files in it is refused unless overwrite is given; even then none of its files is touched,
    and the run is refused if one of them has the name of an output."""
    existing = os.listdir(out_dir) if os.path.isdir(out_dir) else []
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise OutputFolderRefused(f"--out {out_dir} is a file, not a folder")
    earlier = _earlier_outputs(out_dir) if MARKER in existing else []
    others = [name for name in existing if name not in earlier and name != MARKER]
    if others and not overwrite:
        raise OutputFolderRefused(
            f"--out {out_dir} already holds files that seem_ros did not write there ({', '.join(sorted(others)[:5])}"
            f"{', ...' if len(others) > 5 else ''}): choose an empty or new folder, or give --overwrite to write "
            "beside them (nothing of theirs is deleted)")
    clashing = sorted(set(others) & set(outputs))
    if clashing:
        raise OutputFolderRefused(f"--out {out_dir} already has {', '.join(clashing)}, not written by seem_ros: "
                                  "it is not replaced; choose another folder")
    if earlier:
        LOG.warning("replacing the earlier seem_ros outputs in %s: %s", out_dir, ", ".join(earlier))
    for name in earlier:
        path = os.path.join(out_dir, name)
        shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.remove(path)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, MARKER), "w") as f:  # before any output: a crash mid-run still leaves it
        json.dump({"written_by": "seem_ros", "outputs": list(outputs)}, f)


def _earlier_outputs(out_dir: str) -> list:
    """What the marker of an earlier run lists and is still there (plain names only)."""
    try:
        with open(os.path.join(out_dir, MARKER)) as f:
            listed = json.load(f).get("outputs", [])
    except (OSError, ValueError, AttributeError):
        raise OutputFolderRefused(f"--out {out_dir}: its {MARKER} is unreadable; remove it to reuse the folder") from None
    return [name for name in listed if isinstance(name, str) and name == os.path.basename(name)
            and name not in ("", ".", "..") and os.path.lexists(os.path.join(out_dir, name))]


class RecordingWriter:
    """Writes a run's outputs into a folder claimed with claim_output_folder."""

    def __init__(self, out_dir: str, fps: float = 10.0, bag: bool = True):
        self.out_dir = out_dir
        self.fps = fps
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

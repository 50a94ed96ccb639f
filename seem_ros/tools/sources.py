"""Recorded camera frames without a ROS install: a video file, a folder of images, or a rosbag2
(sqlite3 or MCAP, read with the `rosbags` package: sensor_msgs Image and CompressedImage topics).
No ROS imports: the same frames a camera node would have published, as RGB arrays."""
import os
from dataclasses import dataclass
from typing import Iterator

import cv2
import numpy as np

from seem_ros.ros_in.image_conversion import compressed_to_rgb, image_to_rgb

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
FOLDER_FPS = 30.0  # stamps of a folder's images: nominal 30 frames per second


@dataclass
class Frame:
    index: int
    stamp_ns: int  # the recording's time (bag: the message's header stamp; video: its position)
    rgb: np.ndarray  # uint8 (H, W, 3)


class FrameSource:
    """Iterates the frames of `path`: a video file, a folder of images (sorted by name) or a rosbag2
    folder / file. topic: the bag's image topic (needed when it has several). max_frames: 0 = all."""

    def __init__(self, path: str, topic: str = "", max_frames: int = 0):
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path} does not exist")
        self.path, self.topic, self.max_frames = path, topic, max_frames
        self.kind = "bag" if _is_bag(path) else "folder" if os.path.isdir(path) else "video"
        if self.kind == "folder":
            self._files = sorted(os.path.join(path, f) for f in os.listdir(path) if f.lower().endswith(IMAGE_EXTENSIONS))
            if not self._files:
                raise ValueError(f"{path} holds no images ({', '.join(IMAGE_EXTENSIONS)}) and is not a rosbag2")
        elif self.kind == "bag":
            self.topic = self._bag_topic()
        elif cv2.VideoCapture(path).read()[0] is False:
            raise ValueError(f"{path} is neither a video OpenCV can read, a folder of images, nor a rosbag2")

    def __len__(self) -> int:
        """The number of frames (a video's as its container states it)."""
        if self.kind == "folder":
            count = len(self._files)
        elif self.kind == "bag":
            with self._bag() as reader:
                count = sum(c.msgcount for c in reader.connections if c.topic == self.topic)
        else:
            count = int(cv2.VideoCapture(self.path).get(cv2.CAP_PROP_FRAME_COUNT))
        return min(count, self.max_frames) if self.max_frames else count

    def first(self) -> Frame:
        """The first frame (its size is the recording's); ValueError when there is none."""
        frame = next(iter(self), None)
        if frame is None:
            raise ValueError(f"{self.path} has no frames")
        return frame

    def __iter__(self) -> Iterator[Frame]:
        frames = {"folder": self._folder, "video": self._video, "bag": self._bag_frames}[self.kind]()
        for frame in frames:
            if self.max_frames and frame.index >= self.max_frames:
                return
            yield frame

    def _folder(self) -> Iterator[Frame]:
        for i, name in enumerate(self._files):
            bgr = cv2.imread(name, cv2.IMREAD_COLOR)
            if bgr is None:
                raise ValueError(f"cannot read the image {name}")
            yield Frame(i, int(i * 1e9 / FOLDER_FPS), np.ascontiguousarray(bgr[..., ::-1]))

    def _video(self) -> Iterator[Frame]:
        capture = cv2.VideoCapture(self.path)
        index = 0
        while True:
            stamp_ms = capture.get(cv2.CAP_PROP_POS_MSEC)
            ok, bgr = capture.read()
            if not ok:
                return
            yield Frame(index, int(stamp_ms * 1e6), np.ascontiguousarray(bgr[..., ::-1]))
            index += 1

    def _bag(self):
        from pathlib import Path
        from rosbags.highlevel import AnyReader
        from rosbags.typesys import Stores, get_typestore
        return AnyReader([Path(self.path)], default_typestore=get_typestore(Stores.ROS2_KILTED))

    def _bag_topic(self) -> str:
        with self._bag() as reader:
            topics = sorted({c.topic for c in reader.connections if c.msgtype in IMAGE_TYPES})
        if self.topic:
            if self.topic not in topics:
                raise ValueError(f"{self.path} has no image topic {self.topic!r}; its image topics: "
                                 f"{', '.join(topics) or 'none'}")
            return self.topic
        if len(topics) != 1:
            raise ValueError(f"{self.path} has {len(topics)} image topics ({', '.join(topics) or 'none'}): "
                             "choose one with --topic")
        return topics[0]

    def _bag_frames(self) -> Iterator[Frame]:
        with self._bag() as reader:
            connections = [c for c in reader.connections if c.topic == self.topic]
            for index, (connection, timestamp, raw) in enumerate(reader.messages(connections=connections)):
                msg = reader.deserialize(raw, connection.msgtype)
                stamp = msg.header.stamp.sec * 10 ** 9 + msg.header.stamp.nanosec or timestamp
                to_rgb = compressed_to_rgb if connection.msgtype.endswith("CompressedImage") else image_to_rgb
                yield Frame(index, stamp, to_rgb(msg))


def _is_bag(path: str) -> bool:
    if os.path.isdir(path):
        return os.path.exists(os.path.join(path, "metadata.yaml"))
    return path.endswith((".mcap", ".db3"))


"""The input frames and what the node publishes for them, as a rosbag2 (MCAP) that Foxglove or RViz
can open, written without a ROS install (the `rosbags` package). The package's own message types
are registered from its msg/ files, so the bag carries their definitions. Topics are the node's:
/image (the input, rgb8), /seem_node/result, /seem_node/label_image (mono16), /seem_node/overlay
(bgr8) and /seem_node/label_info (when it changes, as the node publishes it)."""
import os
from pathlib import Path
from typing import Dict, Sequence

import numpy as np

from seem_ros.tracking.places import bounding_box

INTERFACES = "seem_ros"  # the package that holds the message types
TOPICS = {"/image": "sensor_msgs/msg/Image",
          "/seem_node/result": f"{INTERFACES}/msg/SegmentationResult",
          "/seem_node/label_image": "sensor_msgs/msg/Image",
          "/seem_node/overlay": "sensor_msgs/msg/Image",
          "/seem_node/label_info": f"{INTERFACES}/msg/LabelInfo"}


def interface_message_dir() -> Path:
    """The package's msg/ folder: inside a pip-installed seem_ros (setup.py ships it), beside the
    seem_ros package in a checkout, else where a ROS install put them (share/seem_ros/msg)."""
    package = Path(__file__).resolve().parents[1]
    candidates = [package / "msg", package.parent / "msg"]
    candidates += [Path(prefix) / "share" / INTERFACES / "msg"
                   for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if prefix]
    for folder in candidates:
        if (folder / "SegmentationResult.msg").exists():
            return folder
    raise FileNotFoundError(f"the {INTERFACES} .msg files are in none of: {', '.join(map(str, candidates))}")


def typestore():
    """ROS 2 kilted's message types plus this package's, read from its .msg files."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore
    store = get_typestore(Stores.ROS2_KILTED)
    types: Dict = {}
    for path in sorted(interface_message_dir().glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"{INTERFACES}/msg/{path.stem}"))
    store.register(types)
    return store


class BagRecorder:
    def __init__(self, path: str, frame_id: str = "camera"):
        from rosbags.rosbag2 import StoragePlugin, Writer
        self.store = typestore()
        self.frame_id = frame_id
        self._writer = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        self._connections = {topic: self._writer.add_connection(topic, msgtype, typestore=self.store)
                             for topic, msgtype in TOPICS.items()}
        self._info = None  # the last label info written

    def _type(self, name: str):
        return self.store.types[name]

    def _image(self, header, pixels: np.ndarray, encoding: str):
        pixels = np.ascontiguousarray(pixels)
        height, width = pixels.shape[:2]
        return self._type("sensor_msgs/msg/Image")(
            header=header, height=height, width=width, encoding=encoding, is_bigendian=0,
            step=pixels.strides[0], data=pixels.view(np.uint8).reshape(-1))

    def write(self, stamp_ns: int, rgb: np.ndarray, objects: Sequence, labels: np.ndarray, overlay_bgr: np.ndarray,
              inference_s: float, label_values: Dict[int, int]) -> None:
        """One input frame and its outputs, all stamped stamp_ns (the frame's time); label_values:
        {object id: its value in the label image}."""
        header = self._type("std_msgs/msg/Header")(
            stamp=self._type("builtin_interfaces/msg/Time")(sec=stamp_ns // 10 ** 9, nanosec=stamp_ns % 10 ** 9),
            frame_id=self.frame_id)
        roi = self._type("sensor_msgs/msg/RegionOfInterest")
        segmented = []
        for o in objects:
            x, y, w, h = bounding_box(o.mask)
            segmented.append(self._type(f"{INTERFACES}/msg/SegmentedObject")(
                id=o.id, label=o.label, score=float(o.score), status=o.status, mode=o.mode,
                bbox=roi(x_offset=x, y_offset=y, height=h, width=w, do_rectify=False),
                mask=self._image(header, o.mask.astype(np.uint8) * 255, "mono8"), rle=np.zeros(0, np.uint32)))
        result = self._type(f"{INTERFACES}/msg/SegmentationResult")(
            header=header, height=rgb.shape[0], width=rgb.shape[1], objects=segmented, inference_time=inference_s)
        messages = [("/image", self._image(header, rgb, "rgb8")), ("/seem_node/result", result),
                    ("/seem_node/label_image", self._image(header, labels, "mono16")),
                    ("/seem_node/overlay", self._image(header, overlay_bgr, "bgr8"))]
        info = tuple((o.id, o.label, label_values[o.id], o.status) for o in sorted(objects, key=lambda o: o.id))
        if info != self._info:
            ids, names, values, statuses = zip(*info) if info else ((), (), (), ())
            messages.append(("/seem_node/label_info", self._type(f"{INTERFACES}/msg/LabelInfo")(
                header=header, ids=np.array(ids, np.uint32), labels=list(names),
                label_values=np.array(values, np.uint16), statuses=list(statuses))))
            self._info = info
        for topic, msg in messages:
            self._writer.write(self._connections[topic], stamp_ns, self.store.serialize_cdr(msg, TOPICS[topic]))

    def close(self) -> None:
        self._writer.close()

"""RViz clicked points in another frame than the camera's, transformed into the camera frame with
tf2 where it is installed (a ROS install; the PyPI wheels lack it: points must then come in the
camera's optical frame, and each that does not is refused with a warning saying so)."""
from typing import Optional, Tuple

from geometry_msgs.msg import PointStamped

from seem_ros.throttled_log import ThrottledLog


class PointTransforms:
    def __init__(self, node, log: ThrottledLog):
        """Listens from the start (configure): a listener created at the first click would have no
        transforms yet for it."""
        self.log = log
        try:
            import tf2_geometry_msgs  # noqa: F401 - registers PointStamped with tf2
            import tf2_ros
        except ImportError:
            self._buffer = None
            return
        self._buffer = tf2_ros.Buffer()
        self._listener = tf2_ros.TransformListener(self._buffer, node)

    def transform(self, msg: PointStamped, target: str) -> Optional[Tuple[float, float, float]]:
        """The point in frame `target`, or None with a warning saying why not."""
        if self._buffer is None:
            self.log.warning(
                f"clicked point in {msg.header.frame_id!r} needs a transform to the camera frame {target!r}, "
                "but tf2_ros is not installed; publish points in the camera optical frame")
            return None
        try:
            p = self._buffer.transform(msg, target).point
            return p.x, p.y, p.z
        except Exception as exc:  # noqa: BLE001 - tf2 raises several unrelated types
            self.log.warning(f"clicked point ignored: no transform {msg.header.frame_id!r} -> {target!r}: {exc}")
            return None

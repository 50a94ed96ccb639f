"""Camera frames into the newest-frame mailbox (see latest_frame), counting the frames that never
reached the node: those the middleware reported lost (QoS message-lost events) and gaps in the
publishers' sequence numbers.

The callback only enqueues, so it never waits for inference; it runs in its own callback group.
"""
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CompressedImage, Image

from seem_ros.ros_in.latest_frame import LatestFrame
from seem_ros.ros_in.sequence_gaps import SequenceGaps, publisher_key
from seem_ros.throttled_log import ThrottledLog, guarded


class FrameLosses:
    """Camera frames that never reached the node, kept across activations."""

    def __init__(self):
        self.lost_in_transport = 0  # reported by the middleware (QoS message-lost events)
        self.gaps = SequenceGaps()  # gaps in the publishers' sequence numbers

    def on_message_lost(self, event) -> None:
        self.lost_in_transport += event.total_count_change


class FrameIntake:
    """Camera frames -> the mailbox, counting frames lost before they reached the node."""

    def __init__(self, node, mailbox: LatestFrame, losses: FrameLosses, log: ThrottledLog, topic: str,
                 transport: str, qos: QoSProfile):
        self.node = node
        self.mailbox = mailbox
        self.losses = losses
        msg_type, self.topic = (CompressedImage, f"{topic}/compressed") if transport == "compressed" else (Image, topic)
        self._subscription = node.create_subscription(
            msg_type, self.topic, guarded(log, "camera frame intake", self._on_frame), qos,
            callback_group=MutuallyExclusiveCallbackGroup(),
            event_callbacks=SubscriptionEventCallbacks(
                message_lost=guarded(log, "message-lost event", losses.on_message_lost)))

    def _on_frame(self, msg, info) -> None:
        self.losses.gaps.observe(publisher_key(info), info.get("publication_sequence_number") if info else None)
        self.mailbox.put(msg)

    def destroy(self) -> None:
        self.node.destroy_subscription(self._subscription)

"""Messages lost before they reached a callback, from the publishers' sequence numbers.

Every publisher numbers its messages 1, 2, 3, ...; the middleware hands the number to the
subscriber (rclpy MessageInfo `publication_sequence_number`). A jump from 7 to 10 means two
messages were lost on the way: in transport (best-effort QoS, a frame larger than the transport can
carry) or overwritten in the subscription's queue. Each publisher counts on its own, so a message
whose publisher is not named counts nothing: Jazzy's rclpy gives no publisher GID (there, frames lost
in transport are still counted, from the subscription's message-lost event). Works on plain values,
so it needs no ROS import.
"""
import threading
from collections import OrderedDict
from typing import Hashable, Optional


class SequenceGaps:
    def __init__(self, max_publishers: int = 64):
        self.max_publishers = max_publishers
        self.missed = 0
        self.unattributed = 0  # messages with a sequence number but no publisher: not checked for gaps
        self._last = OrderedDict()  # publisher -> last sequence number seen
        self._lock = threading.Lock()

    def observe(self, publisher: Hashable, sequence: Optional[int]) -> int:
        """Records one received message; returns how many of that publisher's messages were missed
        since its newest one, or -1 for a message older than that: one counted as missed that came
        late after all (a reliable writer re-sending what a full subscription queue had refused)."""
        if not sequence:  # the middleware does not report sequence numbers
            return 0
        if publisher is None:
            with self._lock:
                self.unattributed += 1
            return 0
        with self._lock:
            last = self._last.get(publisher)
            if last is not None and sequence <= last:
                self.missed -= 1
                return -1
            self._last[publisher] = sequence
            self._last.move_to_end(publisher)
            while len(self._last) > self.max_publishers:
                self._last.popitem(last=False)
            gap = sequence - last - 1 if last is not None else 0
            self.missed += gap
            return gap


def publisher_key(message_info) -> Hashable:
    """A hashable identity of the publisher of a message (its GID where the middleware gives one)."""
    gid = message_info.get("publisher_gid") if message_info else None
    if isinstance(gid, dict):
        return bytes(gid.get("data", b""))
    return gid

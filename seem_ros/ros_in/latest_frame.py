"""A one-slot mailbox for camera frames: the newest frame replaces an unprocessed one, so inference
always works on the latest image and never builds a queue. Replaced frames are counted."""
import threading
from typing import Any, Optional


class LatestFrame:
    def __init__(self):
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._frame: Optional[Any] = None
        self.received = 0
        self.replaced = 0

    def put(self, frame: Any) -> None:
        with self._lock:
            if self._frame is not None:
                self.replaced += 1
            self._frame = frame
            self.received += 1
            self._ready.notify()

    def take(self, timeout: Optional[float] = None) -> Optional[Any]:
        """The newest frame (removing it), waiting up to `timeout` s for one; None if none came."""
        with self._lock:
            if self._frame is None:
                self._ready.wait(timeout)
            frame, self._frame = self._frame, None
            return frame

    def clear(self) -> int:
        """Empties the mailbox; returns how many frames were discarded (0 or 1)."""
        with self._lock:
            discarded = int(self._frame is not None)
            self._frame = None
            return discarded

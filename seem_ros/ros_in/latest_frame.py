"""The newest camera frame: a one-slot mailbox (the newest frame replaces an unprocessed one, so
inference always works on the latest image and never builds a queue; replaced frames are counted),
and the newest frame's size, which prompts in pixels are checked against."""
import threading
from typing import Any, Optional, Tuple


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


class ImageSize:
    """(height, width) of the newest camera frame, shared by the frame worker and the applier."""

    def __init__(self):
        self._value: Optional[Tuple[int, int]] = None
        self._known = threading.Event()

    def set(self, hw: Tuple[int, int]) -> None:
        self._value = (int(hw[0]), int(hw[1]))
        self._known.set()

    def get(self) -> Optional[Tuple[int, int]]:
        return self._value

    def wait(self, timeout: float) -> bool:
        return self._known.wait(timeout)

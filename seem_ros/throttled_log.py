"""Warnings and errors that repeat (a camera sending the same bad frame 30 times a second, a burst
of refused prompts) are logged once per period with a count of what was suppressed; a new kind of
fault is logged at once. Works with rclpy and standard-library loggers."""
import functools
import re
import threading
import time
import traceback
from collections import OrderedDict
from typing import Callable, Optional

_NUMBERS = re.compile(r"\d+(\.\d+)?")


def message_kind(text: str) -> str:
    """Messages that differ only in numbers (sizes, ids, coordinates) are of one kind."""
    return _NUMBERS.sub("#", text)[:160]


class ThrottledLog:
    def __init__(self, logger, period_s: float = 5.0, max_kinds: int = 128):
        self.logger = logger
        self.period_s = period_s
        self.max_kinds = max_kinds
        self._kinds = OrderedDict()  # kind -> [time logged, suppressed since, level, last suppressed text]
        self._traced = OrderedDict()  # exception kinds whose traceback was logged at error level
        self._lock = threading.Lock()

    def _emit(self, level: str, text: str, key: Optional[str]) -> bool:
        key = key or f"{level}:{message_kind(text)}"
        now = time.monotonic()
        with self._lock:
            entry = self._kinds.get(key)
            if entry is not None and now - entry[0] < self.period_s:
                entry[1], entry[3] = entry[1] + 1, text
                return False
            suppressed = entry[1] if entry is not None else 0
            self._kinds[key] = [now, 0, level, ""]
            self._kinds.move_to_end(key)
            while len(self._kinds) > self.max_kinds:
                self._kinds.popitem(last=False)
        self._write(level, text, suppressed)
        return True

    def _write(self, level: str, text: str, suppressed: int) -> None:
        if suppressed:
            text += f" ({suppressed} similar messages suppressed in the last {self.period_s:g} s)"
        # one call site per severity: rclpy refuses a call site whose severity changes
        if level == "error":
            self.logger.error(text)
        else:
            self.logger.warning(text)

    def flush(self) -> None:
        """Logs the latest of each kind's suppressed messages, with their count, once its period has
        passed: a burst that ends is summed up instead of vanishing from the log."""
        now = time.monotonic()
        with self._lock:
            due = [(entry[2], entry[3], entry[1]) for entry in self._kinds.values()
                   if entry[1] and now - entry[0] >= self.period_s]
            for entry in self._kinds.values():
                if entry[1] and now - entry[0] >= self.period_s:
                    entry[:] = [now, 0, entry[2], ""]
        for level, text, suppressed in due:
            self._write(level, text, suppressed)

    def warning(self, text: str, key: Optional[str] = None) -> bool:
        return self._emit("warning", text, key)

    def error(self, text: str, key: Optional[str] = None) -> bool:
        return self._emit("error", text, key)

    def exception(self, what: str, exc: BaseException, first_traceback_as_error: bool = False) -> None:
        """An unexpected error: one line at error level, the traceback at debug level (or, with
        first_traceback_as_error, at error level the first time this kind of error happens)."""
        key = f"exception:{what}:{type(exc).__name__}"
        if not self.error(f"{what}: {type(exc).__name__}: {exc}", key=key):
            return
        trace = "".join(traceback.format_exception(exc))
        with self._lock:
            first = key not in self._traced
            self._traced[key] = True
            while len(self._traced) > self.max_kinds:
                self._traced.popitem(last=False)
        if first and first_traceback_as_error:
            self.logger.error(trace)
        else:
            self.logger.debug(trace)


def guarded(log: ThrottledLog, what: str, callback: Callable, on_error: Optional[Callable] = None) -> Callable:
    """`callback` for a ROS executor: an exception escaping it would end the executor's spin (and the
    process), so it is logged instead and, for a service, turned into a failed response by on_error."""
    @functools.wraps(callback)
    def run(*args):
        try:
            return callback(*args)
        except Exception as exc:  # noqa: BLE001 - the node keeps running
            log.exception(f"{what} failed", exc)
            return on_error(*args, exc) if on_error is not None else None
    return run


def failed_response(request, response, exc: BaseException):
    """on_error for services whose response has `success` and `message`."""
    response.success, response.message = False, f"internal error: {type(exc).__name__}: {exc}"
    return response

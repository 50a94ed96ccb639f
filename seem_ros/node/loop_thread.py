"""A named daemon thread that repeats one step until stopped: the frame worker and the prompt
applier each run in one. stop() waits a bounded time, so a shutdown can keep its deadline."""
import threading
from typing import Callable, Optional


class LoopThread:
    def __init__(self, name: str, step: Callable[[], None], on_error: Callable[[BaseException], None]):
        """on_error: told of an exception escaping a step; the loop goes on with the next step."""
        self.name = name
        self._step = step
        self._on_error = on_error
        self._running = threading.Event()
        self._thread: Optional[threading.Thread] = None

    @property
    def running(self) -> bool:
        """False once stop() was asked: long steps check it between their stages."""
        return self._running.is_set()

    def start(self) -> None:
        self._running.set()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> bool:
        """Asks the loop to stop and waits up to `timeout` s; False if its step is still running."""
        self._running.clear()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                return False
            self._thread = None
        return True

    def resume(self) -> None:
        """Undoes a stop() that timed out: the step still running finishes and the loop goes on (a
        thread that ended meanwhile is started anew)."""
        if self._thread is not None and self._thread.is_alive():
            self._running.set()
        else:
            self.start()

    def _run(self) -> None:
        while self._running.is_set():
            try:
                self._step()
            except Exception as exc:  # noqa: BLE001 - a thread that died would stop the node's work unseen
                self._on_error(exc)

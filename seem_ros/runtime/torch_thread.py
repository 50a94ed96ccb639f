"""One thread for all of a process's torch work.

torch's CPU operators run in an OpenMP team that belongs to the thread calling them. A second
thread that runs torch (a model loaded on one thread and run on another, a service callback beside
the frame loop) makes a second team; libgomp then manages more threads than there are cores and
stops its idle workers from spinning between parallel regions, so that every operator pays for
putting them to sleep and waking them. Measured on a 2-core AMD EPYC, tiny checkpoint, one tracked
object: 121 ms a frame on a thread other than the one that loaded the model, 101 ms with both on
one thread; Focal-T ~5 % in a process doing nothing else, within run-to-run noise in seem_node's
soak. `seem-ros serve` runs its jobs on its main thread, seem_node on a thread
of its own.
"""
import queue
import threading
from concurrent.futures import Future
from typing import Callable, Optional, TypeVar

T = TypeVar("T")


class TorchThreadStopped(RuntimeError):
    pass


class TorchThread:
    """Runs the jobs handed to it (call) one at a time, in order, on one thread: the thread that
    calls run(), or after start() a daemon thread of its own."""

    def __init__(self):
        self._jobs: "queue.SimpleQueue" = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._stopped = False
        self._thread: Optional[threading.Thread] = None

    def call(self, job: Callable[..., T], *args) -> T:
        """job(*args) on the torch thread; returns its result or raises its exception. Called on
        the torch thread itself (a job calling another), the job runs at once."""
        with self._lock:
            if self._stopped:
                raise TorchThreadStopped("the torch thread has stopped")
            inline = threading.current_thread() is self._thread
            if not inline:
                done: Future = Future()
                self._jobs.put((done, job, args))
        return job(*args) if inline else done.result()

    def start(self, name: str) -> "TorchThread":
        """Runs the jobs on a daemon thread named `name` (a job still running never holds up the
        process's exit)."""
        threading.Thread(target=self.run, name=name, daemon=True).start()
        return self

    def stop(self) -> None:
        """Ends run() after the jobs already handed over; later calls raise TorchThreadStopped."""
        self._jobs.put(None)

    def run(self, alive: Callable[[], bool] = lambda: True, check_every_s: float = 1.0) -> None:
        """Runs the jobs on the calling thread until stop(), or until alive() is False (asked
        whenever no job came for check_every_s). An exception other than Exception (SIGINT's
        KeyboardInterrupt on the main thread) is handed to the job's caller and raised here too;
        jobs left over fail with TorchThreadStopped."""
        self._thread = threading.current_thread()
        try:
            while True:
                try:
                    job = self._jobs.get(timeout=check_every_s)
                except queue.Empty:
                    if not alive():
                        return
                    continue
                if job is None:
                    return
                done, fn, args = job
                try:
                    done.set_result(fn(*args))
                except BaseException as exc:
                    done.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
        finally:
            with self._lock:
                self._stopped = True
            while True:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is not None:
                    job[0].set_exception(TorchThreadStopped("the torch thread stopped before this job ran"))

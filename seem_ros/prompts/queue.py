"""One ordered, bounded queue for prompts from every source (commands, clicks, prompt messages,
services), so that they are applied in the order they arrived.

Arrival order is the middleware's reception time where known. A ROS executor hands over messages
that are ready on several topics in the order the subscriptions were created, not in the order the
messages came ("clear" then a click would be applied click-first), so a request is released only
once it has waited `settle_s` and then in reception-time order: anything that arrived earlier has
reached the queue by then.

A full queue refuses new requests (counted as dropped, never silently). Every request ends as
applied, refused or dropped: received = applied + refused + dropped + pending.
"""
import heapq
import itertools
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, List, Optional


@dataclass
class PromptRequest:
    kind: str  # what to do with payload, e.g. "command", "click", "prompt", "set_prompt", "clear"
    payload: Any = None
    stamp_ns: int = 0  # reception time (wall clock, ns); 0 = when queued
    reply: Optional[Future] = None  # for services: resolved with the outcome, or cancelled on time-out
    needs_image_size: bool = False  # pixel coordinates: held until a camera frame gives the size
    queued_at: float = 0.0  # monotonic time it entered the queue


@dataclass
class PromptCounts:
    received: int = 0
    applied: int = 0
    refused: int = 0
    dropped: int = 0


class PromptQueue:
    def __init__(self, capacity: int = 1000, settle_s: float = 0.03):
        self.capacity = capacity
        self.settle_s = settle_s
        self.counts = PromptCounts()
        self._heap: list = []  # (stamp_ns, arrival index, request)
        self._order = itertools.count()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)

    def put(self, request: PromptRequest) -> bool:
        """False when the queue is full: the request is dropped (and counted)."""
        with self._lock:
            self.counts.received += 1
            if len(self._heap) >= self.capacity:
                self.counts.dropped += 1
                return False
            request.queued_at = time.monotonic()
            request.stamp_ns = request.stamp_ns or time.time_ns()
            heapq.heappush(self._heap, (request.stamp_ns, next(self._order), request))
            self._changed.notify_all()
            return True

    def count_refused(self, n: int = 1) -> None:
        """Prompts refused before they were queued (e.g. a point that cannot be projected)."""
        with self._lock:
            self.counts.received += n
            self.counts.refused += n

    def take_settled(self, timeout: float) -> List[PromptRequest]:
        """The oldest requests that have settled, in arrival order (waits up to `timeout` s)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                now = time.monotonic()
                ready = []
                while self._heap and now - self._heap[0][2].queued_at >= self.settle_s:
                    ready.append(heapq.heappop(self._heap)[2])
                if ready or now >= deadline:
                    return ready
                wait = deadline - now
                if self._heap:
                    wait = min(wait, self.settle_s - (now - self._heap[0][2].queued_at))
                self._changed.wait(max(wait, 1e-3))

    def put_back(self, requests: List[PromptRequest]) -> None:
        """Returns requests taken but not yet applied; they keep their place in the order."""
        with self._lock:
            for request in requests:
                heapq.heappush(self._heap, (request.stamp_ns, next(self._order), request))

    def finished(self, applied: bool) -> None:
        with self._lock:
            if applied:
                self.counts.applied += 1
            else:
                self.counts.refused += 1

    def pending(self) -> int:
        with self._lock:
            return len(self._heap)

    def snapshot(self) -> PromptCounts:
        with self._lock:
            return PromptCounts(**vars(self.counts))

    def clear(self) -> List[PromptRequest]:
        """Removes and returns every pending request (e.g. at shutdown, to refuse them)."""
        with self._lock:
            requests = [entry[2] for entry in sorted(self._heap)]
            self._heap.clear()
            return requests

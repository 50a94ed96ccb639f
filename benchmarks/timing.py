"""Shared by the benchmarks: the median time of a callable."""
import statistics
import time
from typing import Callable, Optional


def timed(fn: Callable[[], object], repeats: int, synchronize: Optional[Callable[[], None]] = None) -> float:
    """Median milliseconds of fn() over `repeats` runs after one warm-up run; `synchronize` (e.g.
    torch.cuda.synchronize) is called after each run so that queued GPU work is counted."""
    def run():
        fn()
        if synchronize is not None:
            synchronize()
    run()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)

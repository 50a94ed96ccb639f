"""How this process's C allocator (glibc) treats a frame's large, short-lived buffers.

By default glibc serves an allocation over 128 KB (later: over the largest one freed, up to 32 MB)
with fresh pages from mmap and unmaps it when freed, so every frame pays the kernel for its
buffers' pages again. Measured on a 2-core AMD EPYC, DAVIS frames: the released Focal-T size took
282,000 page faults and 3.14 s a frame, 3,700 and 2.83 s with the buffers kept in the heap (peak
memory 1.62 -> 1.71 GB); the tiny reference checkpoint 19,000-25,000 faults and 153-158 ms, a few
hundred and 113-128 ms. CPU tuning guides fix this with jemalloc or tcmalloc; glibc's own mallopt
does it without another library.
"""
import ctypes
import logging

LOG = logging.getLogger(__name__)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
TRIM_THRESHOLD = 2 ** 30  # free memory above this at the heap's top is given back to the system


def keep_frame_buffers() -> bool:
    """Every buffer from the heap (none mmap'd), and up to 1 GiB of freed heap kept for the next
    frame. False where the C library is not glibc (nothing changed)."""
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        LOG.debug("not glibc: the allocator's settings are left as they are")
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))

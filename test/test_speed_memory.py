"""A frame's buffers are kept between frames (runtime.host_memory): with glibc's defaults every
buffer over 32 MB is mapped afresh and faulted in page by page each frame (282,000 page faults a
frame at Focal-T size). Counted in fresh processes: page faults are exact, times are not."""
import json
import platform
import subprocess
import sys

import pytest

from conftest import REPO, reference_path

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator: not this C library")

# ten 'frames' each allocating, touching and freeing a 64 MB buffer: 10 x 16,384 pages
FRAMES = """
import json, resource, sys, torch
{setup}
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    torch.ones(16 * 2 ** 20)
print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before))
"""


def _page_faults(setup: str) -> int:
    out = subprocess.run([sys.executable, "-c", FRAMES.format(setup=setup)], cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.splitlines()[-1])


def test_a_loaded_predictor_keeps_frame_buffers_instead_of_faulting_them_in_every_frame():
    tiny = reference_path("tiny")
    default = _page_faults("")
    kept = _page_faults("from seem_ros.runtime.backends import BackendConfig, create_predictor\n"
                        f"create_predictor(BackendConfig({str(tiny / 'tiny_seem.pt')!r}, "
                        f"{str(tiny / 'tiny_config.yaml')!r}, embedding_cache_dir=''))")
    assert default >= 10 * 16384 * 0.9, default  # glibc's default: every frame maps its buffer afresh
    assert kept <= 3 * 16384, kept  # kept: faulted in by the first frames only

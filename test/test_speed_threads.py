"""All of the node's torch work on one thread (runtime.torch_thread): torch's OpenMP workers then
spin between parallel regions instead of being put to sleep and woken for each, which a second
thread running torch (the model loaded on one thread and run on another) brings about. Counted,
not timed: the process's voluntary context switches per frame (a worker put to sleep is one)."""
import json
import os
import pathlib
import subprocess
import sys
import threading
import time

import pytest
import torch

from seem_ros.runtime.torch_thread import TorchThread, TorchThreadStopped

TEST_DIR = pathlib.Path(__file__).resolve().parent

# loads the tiny checkpoint on the torch thread (argv[1] == "one", as seem_node does) or on the main
# thread (as seem_node did), then runs frames through SharedModel from a frame-worker thread and an
# example region from an applier thread; prints the voluntary context switches per frame
NODE_LAYOUT = r"""
import json, resource, sys, threading
import numpy as np, torch
sys.path.insert(0, sys.argv[2])
from conftest import tiny_backend_config
from seem_ros.inference.visual_prompt import VisualPrompt
from seem_ros.node.shared_model import SharedModel
from seem_ros.runtime.backends import create_predictor
from seem_ros.runtime.torch_thread import TorchThread
from seem_ros.tracking.tracker import ObjectTracker

cfg = tiny_backend_config()
torch_thread = TorchThread().start("seem_torch")
predictor = torch_thread.call(create_predictor, cfg) if sys.argv[1] == "one" else create_predictor(cfg)
model = SharedModel(predictor, cfg, torch_thread)
tracker = ObjectTracker()
tracker.add("object", visual=VisualPrompt(points=[(120, 90, 1)]))
frames = [np.random.default_rng(i).integers(0, 255, (240, 320, 3), dtype=np.uint8) for i in range(2)]
counted = {}

def frame_worker():
    for i in range(14):
        if i == 4:
            counted["start"] = resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw
        model.run(lambda predictor, rgb: (predictor.set_image(rgb), tracker.step(predictor)), frames[i % 2])
    counted["end"] = resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw

def applier():
    model.encode_reference(frames[0], np.ones((240, 320), dtype=bool))

worker = threading.Thread(target=frame_worker)
worker.start()
threading.Thread(target=applier).start()
worker.join()
print(json.dumps({"switches_per_frame": (counted["end"] - counted["start"]) / 10}))
"""


def _switches_per_frame(layout: str) -> float:
    # libgomp's default spinning (seem_node shortens it: process.py), so that a worker put to sleep
    # means a second team, not a long gap between two parallel regions
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    done = subprocess.run([sys.executable, "-c", NODE_LAYOUT, layout, str(TEST_DIR)], capture_output=True,
                          text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])["switches_per_frame"]


@pytest.mark.skipif(torch.get_num_threads() < 2, reason="torch runs one thread here: no OpenMP workers")
def test_the_model_loaded_and_run_on_one_thread_keeps_its_openmp_workers_spinning():
    two_threads = _switches_per_frame("two")
    if two_threads < 100:
        pytest.skip(f"this torch's OpenMP runtime did not put its workers to sleep with two threads running "
                    f"torch ({two_threads:g} voluntary switches a frame): nothing to compare")
    one_thread = _switches_per_frame("one")
    # measured on a 2-core AMD EPYC: ~815 against ~2 (~796 against ~5 with both cores busy)
    assert one_thread < two_threads / 10, (one_thread, two_threads)


def test_jobs_run_in_order_on_the_torch_thread_and_their_errors_reach_the_caller():
    torch_thread = TorchThread().start("test_torch")
    ran = []

    def job(n):
        ran.append((n, threading.current_thread().name))
        return n * 2

    callers = [threading.Thread(target=torch_thread.call, args=(job, n)) for n in range(3)]
    for caller in callers:
        caller.start()
        caller.join()
    assert ran == [(0, "test_torch"), (1, "test_torch"), (2, "test_torch")]
    assert torch_thread.call(job, 5) == 10
    with pytest.raises(ZeroDivisionError):
        torch_thread.call(lambda: 1 / 0)
    # a job that hands another over runs it at once (waiting for itself would never end)
    assert torch_thread.call(lambda: torch_thread.call(job, 7)) == 14
    torch_thread.stop()
    with pytest.raises(TorchThreadStopped):
        torch_thread.call(job, 1)


def test_jobs_left_when_the_torch_thread_stops_fail_instead_of_waiting_forever():
    torch_thread = TorchThread()
    results = {}

    def call(name):
        try:
            results[name] = torch_thread.call(lambda: name)
        except TorchThreadStopped as exc:
            results[name] = str(exc)

    def handed_over(count):
        deadline = time.monotonic() + 5
        while torch_thread._jobs.qsize() < count and time.monotonic() < deadline:
            time.sleep(0.01)

    first = threading.Thread(target=call, args=("first",))
    first.start()
    handed_over(1)
    torch_thread.stop()
    late = threading.Thread(target=call, args=("late",))
    late.start()
    handed_over(3)
    torch_thread.run()  # on this thread, as seem-ros serve runs it: the first job, then the stop
    first.join(5)
    late.join(5)
    assert results == {"first": "first", "late": "the torch thread stopped before this job ran"}
    with pytest.raises(TorchThreadStopped):
        torch_thread.call(lambda: None)

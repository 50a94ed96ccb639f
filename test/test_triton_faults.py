"""backend triton when the frame server misbehaves, each against a real server process: not there
at configure, killed mid-stream and restarted, a request over its timeout, a server at capacity.
Frames fail with the reason (what the node's frame worker counts) and never crash the client;
it recovers by itself once the server is back."""
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import reference_path, tiny_backend_config
from triton_harness import ServerProcess, require_triton

from seem_ros.inference.visual_prompt import VisualPrompt
from seem_ros.runtime.backends import backend_unavailable, create_predictor, describe_backend
from seem_ros.runtime.triton_client import ServerUnavailable
from seem_ros.tools.evaluation import read_davis
from seem_ros.tools.serve_process import free_port
from seem_ros.tracking.tracker import ObjectTracker

RECOVERY_S = 5.0  # a client is back within this of its server being ready


@pytest.fixture(scope="module", autouse=True)
def triton():
    require_triton()


def _frames():
    sequence = read_davis(str(reference_path("davis")))[0]
    return [np.asarray(Image.open(path).convert("RGB")) for path in sequence.frames]


def _step(tracker, predictor, rgb):
    """One frame as the node's frame worker runs it: -> the frame's objects, or the failure."""
    with torch.inference_mode():
        predictor.set_image(rgb)
        try:
            return tracker.step(predictor)
        except ServerUnavailable as exc:
            return exc


def _until_served(tracker, predictor, frames, deadline_s: float):
    """Frames until one is served: -> its objects."""
    started, failures = time.monotonic(), []
    while time.monotonic() - started < deadline_s:
        outcome = _step(tracker, predictor, frames[len(failures) % len(frames)])
        if not isinstance(outcome, Exception):
            return outcome
        failures.append(outcome)
        time.sleep(0.1)  # a 10 Hz camera
    pytest.fail(f"not served within {deadline_s} s: {failures[-1] if failures else ''}")


def test_a_server_missing_at_configure_is_waited_for(tmp_path):
    server = ServerProcess(tmp_path, grpc_port=free_port())
    cfg = tiny_backend_config(backend="triton", triton_url=server.url, triton_timeout_ms=2000)
    predictor = create_predictor(cfg)  # configures without it
    assert server.url in backend_unavailable(predictor) and "not connected" in describe_backend(cfg, predictor)[0]
    tracker = ObjectTracker()
    tracker.add("dog", text="dog")
    frames = _frames()
    failed = _step(tracker, predictor, frames[0])
    assert isinstance(failed, ServerUnavailable) and server.url in str(failed)
    again = _step(tracker, predictor, frames[1])  # within the backoff: no new connection attempt
    assert isinstance(again, ServerUnavailable) and "next try in" in str(again)
    server.start()
    try:
        objects = _until_served(tracker, predictor, frames, 30)
        assert time.monotonic() - server.ready_at <= RECOVERY_S
        assert [o.label for o in objects] == ["dog"]
        assert not backend_unavailable(predictor)
    finally:
        server.stop()


def test_a_server_killed_mid_stream_and_restarted(tmp_path):
    """With shared memory (robot and server on one host): the restarted server has forgotten the
    robot's regions, which are registered again (the missing-server case above goes through gRPC)."""
    server = ServerProcess(tmp_path).start()
    try:
        predictor = create_predictor(tiny_backend_config(backend="triton", triton_url=server.url,
                                                         triton_shared_memory=True))
        tracker = ObjectTracker()
        tracker.add("dog", text="dog")
        tracker.add("clicked", visual=VisualPrompt(points=[(400, 240, 1)]))
        frames = _frames()
        before = _step(tracker, predictor, frames[0])
        ids = sorted(o.id for o in before)
        assert len(ids) == 2
        server.kill()
        failures = [_step(tracker, predictor, frame) for frame in frames[1:4]]
        assert all(isinstance(f, ServerUnavailable) for f in failures), failures
        server.start()
        objects = _until_served(tracker, predictor, frames[4:], 30)
        assert time.monotonic() - server.ready_at <= RECOVERY_S
        assert sorted(o.id for o in objects) == ids  # the same objects, the same ids
        assert predictor.transport.failures["unreachable"] >= 1
        assert predictor.transport.describe().endswith("shared memory") and not predictor.transport.shared_memory_problem
    finally:
        server.stop()


@pytest.fixture(scope="module")
def small_server(tmp_path_factory):
    """A server that takes one request at a time and queues at most one more."""
    server = ServerProcess(tmp_path_factory.mktemp("small"), extra=["--max-queue-size", "1", "--max-batch-size", "1",
                                                                    "--queue-delay-us", "0"]).start()
    yield server
    server.stop()


def test_a_request_over_its_timeout_is_counted_and_the_next_goes_on(small_server):
    predictor = create_predictor(tiny_backend_config(backend="triton", triton_url=small_server.url))
    tracker = ObjectTracker()
    tracker.add("dog", text="dog")
    frames = _frames()
    assert not isinstance(_step(tracker, predictor, frames[0]), Exception)
    predictor.transport.timeout_s = 0.001
    timed_out = _step(tracker, predictor, frames[1])
    assert isinstance(timed_out, ServerUnavailable) and predictor.transport.failures["timeout"] == 1
    predictor.transport.timeout_s = 5.0
    assert not isinstance(_step(tracker, predictor, frames[2]), Exception)  # no backoff after a timeout


def test_a_server_at_capacity_refuses_and_nothing_is_retried(small_server):
    predictor = create_predictor(tiny_backend_config(backend="triton", triton_url=small_server.url))
    rgb = _frames()[0]
    with torch.inference_mode():
        predictor.set_image(rgb)
        queries = [predictor.text_query("dog")]
        request = predictor._request(queries, None)
    outcomes = []

    def send():
        try:
            predictor.transport.infer(request)
            outcomes.append("served")
        except ServerUnavailable as exc:
            outcomes.append(str(exc))
    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    refused = [o for o in outcomes if o != "served"]
    assert len(outcomes) == 8 and refused and "served" in outcomes
    assert predictor.transport.failures["refused"] == len(refused)
    assert all("queue" in reason.lower() for reason in refused), refused

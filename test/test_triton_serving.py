"""backend triton against a real frame server (seem-ros serve: Triton Inference Server in its own
process) on the tiny checkpoint: the same masks as the in-process backend, every kind of object;
the server's identity checked; a stopped server exits cleanly."""
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import davis_results, tiny_backend_config
from triton_harness import ServerProcess, assert_tracks_alike, require_triton

from seem_ros.inference.visual_prompt import VisualPrompt
from seem_ros.runtime import triton_client
from seem_ros.runtime.backends import BackendError, apply_cpu_threads, create_predictor, describe_backend, server_info
from seem_ros.runtime.triton_client import ServerMismatch, TritonTransport


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require_triton()
    process = ServerProcess(tmp_path_factory.mktemp("triton")).start()
    yield process
    assert process.stop() == 0, process.log_path.read_text()[-2000:]


@pytest.fixture(scope="module")
def pair(server):
    """(in-process predictor, predictor with backend triton) on the same checkpoint."""
    return create_predictor(tiny_backend_config()), create_predictor(tiny_backend_config(backend="triton",
                                                                                         triton_url=server.url))


def test_the_davis_prompts_give_the_in_process_masks(pair):
    local, remote = pair
    served = davis_results(remote)
    reference = davis_results(local)
    assert len(served) == len(reference) == 72
    for ours, theirs in zip(served, reference):
        assert torch.allclose(ours.low_res_logits, theirs.low_res_logits, atol=1e-4, rtol=0)
        assert abs(ours.score - theirs.score) < 1e-4 and (ours.mask == theirs.mask).mean() > 0.9999


def _every_kind_of_object(predictor):
    """A frame with clicks (positive and negative) and a text; the next with those objects followed
    (with memory), one searched by its appearance on the first frame, one by an example region, and a
    box with a negative click chosen by a text (more points than one sign's budget); then the object queries over the vocabulary (segment-everything's semantic
    scores). -> (results, semantic scores)."""
    rng = np.random.RandomState(0)
    first = (rng.rand(240, 320, 3) * 255).astype(np.uint8)
    with torch.inference_mode():
        predictor.set_image(first)
        found = predictor.decode([predictor.visual_query(VisualPrompt(points=[(100, 100, 1), (30, 40, 0)])),
                                  predictor.text_query("zebra")])
        appearance = predictor.appearance(found[:1])
        predictor.set_image(first[::-1].copy())
        queries = predictor.follow_queries(found, ["", "zebra"], memories=found)
        region = np.zeros(first.shape[:2], bool)
        region[60:160, 80:200] = True
        example = predictor.encode_reference(first, region)  # an example region on another image
        queries += [predictor.reference_query(appearance[0]), predictor.reference_query(example),
                    predictor.visual_query(VisualPrompt(box=(10, 10, 90, 80), points=[(50, 40, 0)]), text="zebra")]
        results = predictor.decode(queries)
        semantic = predictor.semantic()
    return results, semantic


def test_every_kind_of_object_and_segment_everything_match(pair):
    local, remote = pair
    served, served_semantic = _every_kind_of_object(remote)
    reference, semantic = _every_kind_of_object(local)
    for ours, theirs in zip(served, reference):
        assert torch.allclose(ours.low_res_logits, theirs.low_res_logits, atol=1e-4, rtol=0)
    assert torch.allclose(served_semantic, semantic, atol=1e-4, rtol=0)


def test_shared_memory_gives_the_same_masks_and_objects(server, pair):
    """triton_shared_memory (robot and server on one host): the requests' inputs and results go
    through the robot's regions, which the server holds registered."""
    import tritonclient.grpc as grpcclient
    shared = create_predictor(tiny_backend_config(backend="triton", triton_url=server.url, triton_shared_memory=True))
    served, served_semantic = _every_kind_of_object(shared)
    reference, semantic = _every_kind_of_object(pair[0])
    for ours, theirs in zip(served, reference):
        assert torch.allclose(ours.low_res_logits, theirs.low_res_logits, atol=1e-4, rtol=0)
    assert torch.allclose(served_semantic, semantic, atol=1e-4, rtol=0)
    def regions():
        return grpcclient.InferenceServerClient(server.url).get_system_shared_memory_status(as_json=True).get("regions", {})
    assert len(shared.transport.shared_memory_regions) == 2 and set(shared.transport.shared_memory_regions) <= set(regions())
    shared.transport.release()
    assert not any(name.startswith("seem_ros_") for name in regions())  # unregistered on release


def test_the_backend_says_where_it_runs(server, pair):
    cfg = tiny_backend_config(backend="triton", triton_url=server.url)
    described, warning = describe_backend(cfg, pair[1])
    assert server.url in described and "server backend torch cpu fp32" in described and not warning


def test_a_server_of_another_checkpoint_is_refused_naming_both(server):
    expected = server_info(tiny_backend_config())
    other = triton_client.ServerInfo(expected.protocol_version, expected.variant, "0" * 64, "", 0)
    with pytest.raises(ServerMismatch) as refused:
        TritonTransport(server.url, "seem_frame", 2000, other).connect()
    assert expected.checkpoint_sha256 in str(refused.value) and "0" * 64 in str(refused.value)


def test_a_client_of_another_protocol_version_is_refused_at_configure(server, monkeypatch):
    monkeypatch.setattr(triton_client, "PROTOCOL_VERSION", 2)
    monkeypatch.setattr("seem_ros.runtime.backends.PROTOCOL_VERSION", 2)
    with pytest.raises(BackendError, match=r"serves seem_frame version\(s\) 1, this client speaks version 2"):
        create_predictor(tiny_backend_config(backend="triton", triton_url=server.url))


def test_seem_ros_track_through_the_server_writes_what_it_writes_in_process(server, tmp_path):
    """The README's `seem-ros track ... --triton-url`, against the same command in process."""
    assert_tracks_alike(tmp_path, ("--triton-url", server.url))


def test_a_robot_process_with_backend_triton_runs_torch_on_one_thread():
    """The server does the model's work: more threads in the robot's process would spin while it
    waits for each frame. cpu_threads overrides; a process configured again with another backend
    gets torch's default back (what torch takes in a fresh process, whatever the tests set since)."""
    fresh = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                           capture_output=True, text=True, timeout=120, check=True)
    before = torch.get_num_threads()
    try:
        assert apply_cpu_threads(tiny_backend_config(backend="triton")) == 1
        assert apply_cpu_threads(tiny_backend_config(backend="triton", cpu_threads=2)) == 2
        assert apply_cpu_threads(tiny_backend_config(backend="triton")) == 1
        assert apply_cpu_threads(tiny_backend_config()) == int(fresh.stdout)
        with pytest.raises(BackendError, match="cpu threads must be 0"):
            apply_cpu_threads(tiny_backend_config(cpu_threads=-1))
    finally:
        torch.set_num_threads(before)

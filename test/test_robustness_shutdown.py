"""seem_node stops cleanly on SIGINT and SIGTERM at any moment: while frames stream and the model
runs, while it is still loading, and when idle. Each time the process exits with code 0 within
2 s, through the lifecycle shutdown, and a new node of the same name answers at once."""
import signal
import time

import pytest

from conftest import reference_path
from ros_harness import NodeProcess, apply_ros_environment, call, run_tool, spin_until

apply_ros_environment()  # before rclpy is imported anywhere in this process

import rclpy  # noqa: E402

ZEBRAS = str(reference_path("images", "zebras1.jpg"))
SHUTDOWN_LOG = "shut down: frame worker and prompt applier joined, subscriptions, services and publishers destroyed"


@pytest.fixture(scope="module")
def client():
    rclpy.init()
    node = rclpy.create_node("test_shutdown_client")
    yield node
    node.destroy_node()
    rclpy.shutdown()


def _streaming_node(tmp_path, index: int):
    node = NodeProcess(tmp_path / f"node{index}.log")
    assert node.wait_for_log("processing /image", timeout=120), node.log()
    camera = run_tool("camera_publisher", ZEBRAS, "--command", "segment the zebra", "--click", "100", "80",
                      "--duration", "60", "--rate", "10", "--width", "640")
    return node, camera


@pytest.mark.parametrize("signum", [signal.SIGINT] * 5 + [signal.SIGTERM], ids=[f"sigint{i}" for i in range(5)] + ["sigterm"])
def test_signal_mid_stream_exits_0_within_2_s(tmp_path, signum):
    node, camera = _streaming_node(tmp_path, 0)
    try:
        # mid-inference: frames flow at 10 Hz and each takes the model longer than 0.1 s
        assert node.wait_for_log("click applied", timeout=60), node.log()
        assert node.wait_for_log("frame rate out", timeout=30), node.log()
        time.sleep(0.7)
        code, seconds = node.signal_and_wait(signum)
    finally:
        camera.kill()
        camera.wait()
        node.stop()
    log = node.log()
    assert code == 0, f"exit code {code}\n{log[-3000:]}"
    print(f"exit code {code} after {seconds:.2f} s")
    assert seconds <= 2.0, f"took {seconds:.2f} s"
    assert SHUTDOWN_LOG in log and "terminate called" not in log


@pytest.mark.parametrize("phase", ["importing", "loading the model"])
def test_signal_while_starting_exits_0_within_2_s(tmp_path, phase):
    node = NodeProcess(tmp_path / "node.log", {"embedding_cache_dir": ""})  # class embeddings computed at start
    try:
        if phase == "importing":
            time.sleep(0.3)
            assert not node.log()
        else:
            assert node.wait_for_log("configuring: loading", timeout=60), node.log()
        code, seconds = node.signal_and_wait(signal.SIGINT)
    finally:
        node.stop()
    assert code == 0 and seconds <= 2.0, (code, seconds, node.log()[-2000:])
    assert "processing /image" not in node.log()  # it stopped, rather than going on to activate


def test_a_new_node_of_the_same_name_answers_right_after(tmp_path, client):
    from lifecycle_msgs.msg import State
    from lifecycle_msgs.srv import GetState
    node, camera = _streaming_node(tmp_path, 1)
    try:
        assert node.wait_for_log("frame rate out", timeout=60), node.log()
        code, _ = node.signal_and_wait(signal.SIGINT)
        assert code == 0, node.log()[-2000:]
        fresh = NodeProcess(tmp_path / "fresh.log")
        try:
            assert fresh.wait_for_log("processing /image", timeout=120), fresh.log()
            get_state = client.create_client(GetState, "/seem_node/get_state")
            for _ in range(2):
                state = call(client, get_state, GetState.Request(), timeout=5.0).current_state
                assert state.id == State.PRIMARY_STATE_ACTIVE
                spin_until(client, lambda: False, 0.2)
        finally:
            assert fresh.signal_and_wait(signal.SIGTERM)[0] == 0, fresh.log()[-2000:]
            fresh.stop()
    finally:
        camera.kill()
        camera.wait()
        node.stop()

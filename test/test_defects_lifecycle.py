"""seem_node's transitions, in this process (the tiny checkpoint), for issue 15. Item 6: a deactivate
that times out while a frame is inside the model (its tracker made to block) leaves the node fully
active (intake, worker, state) and processing frames as before; the next deactivate, once the
model is free, tears everything down. Item 10: the tf2 listener starts at configure."""
import threading
import time

import pytest

from conftest import reference_path
from ros_harness import apply_ros_environment, rgb_image

apply_ros_environment()  # before rclpy is imported anywhere in this process

import rclpy  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from seem_ros.node.node import SeemNode  # noqa: E402


@pytest.fixture
def node():
    rclpy.init()
    tiny = reference_path("tiny")
    seem = SeemNode(parameter_overrides=[Parameter("checkpoint", value=str(tiny / "tiny_seem.pt")),
                                         Parameter("model_config", value=str(tiny / "tiny_config.yaml")),
                                         Parameter("embedding_cache_dir", value="")])
    yield seem
    seem.trigger_shutdown()
    seem.destroy_node()
    rclpy.shutdown()


def _state(node) -> str:
    return node._state_machine.current_state[1]


def _wait(condition, timeout=30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_a_deactivate_that_times_out_leaves_the_node_fully_active(node):
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    inside, release = threading.Event(), threading.Event()
    step = node.tracker.step

    def blocking_step(predictor):
        inside.set()
        release.wait(60)
        return step(predictor)
    node.tracker.step = blocking_step
    node.mailbox.put(rgb_image(64, 48, stamp=1))
    assert inside.wait(60), "the frame never reached the tracker"

    node.stop_timeout_s = 0.5
    assert node.trigger_deactivate() == TransitionCallbackReturn.FAILURE
    assert _state(node) == "active"
    assert node.frame_intake is not None and node.prompt_intake is not None and node.worker is not None
    release.set()
    assert _wait(lambda: node.frame_counts.snapshot()["processed"] + node.frame_counts.snapshot()["abandoned"] >= 1)
    node.tracker.step = step
    before = node.frame_counts.snapshot()["processed"]
    node.mailbox.put(rgb_image(64, 48, stamp=2))  # the worker still takes frames
    assert _wait(lambda: node.frame_counts.snapshot()["processed"] > before), node.frame_counts.snapshot()

    node.stop_timeout_s = 10.0
    assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    assert _state(node) == "inactive"
    assert node.frame_intake is None and node.prompt_intake is None and node.worker is None


def test_the_tf_listener_starts_at_configure_not_at_the_first_click(node, monkeypatch):
    """A listener made in the first RViz click's callback has heard no transform yet, so the first
    click in another frame was always refused. tf2_ros is not installable here: a recording
    stand-in shows when the node creates its buffer and listener."""
    import sys
    import types
    created = []
    tf2_ros = types.ModuleType("tf2_ros")
    tf2_ros.Buffer = lambda: created.append("buffer") or object()
    tf2_ros.TransformListener = lambda buffer, owner: created.append(("listener", owner is node))
    monkeypatch.setitem(sys.modules, "tf2_ros", tf2_ros)
    monkeypatch.setitem(sys.modules, "tf2_geometry_msgs", types.ModuleType("tf2_geometry_msgs"))
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert created == ["buffer", ("listener", True)]

"""Prompts across processes: every source feeds one queue applied in arrival order, bursts are
counted rather than lost, and the object bookkeeping holds (duplicates, ids, labels, refused
requests, refinements, pixel checks, score threshold, label values)."""
import re
import time

import numpy as np
import pytest

from ros_harness import (NodeProcess, apply_ros_environment, call, diagnostics_values, publish_until, rgb_image,
                         run_tool, spin_until)

apply_ros_environment()  # before rclpy is imported anywhere in this process

import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from geometry_msgs.msg import Point  # noqa: E402
from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from seem_ros.msg import LabelInfo, SegmentationResult  # noqa: E402
from seem_ros.srv import SetPrompt  # noqa: E402

LATCHED = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE)


@pytest.fixture(scope="module")
def seem_node(tmp_path_factory):
    node = NodeProcess(tmp_path_factory.mktemp("prompts") / "seem_node.log", {"stats_period": 1.0})
    try:
        assert node.wait_for_log("processing /image", timeout=120), node.log()
        yield node
    finally:
        node.stop()


class Client:
    """The test process's ROS side: publishers, subscriptions and service clients for one node."""

    def __init__(self, node, prefix="/seem_node", image_topic="/image"):
        self.node = node
        self.name = prefix.strip("/")
        self.images = node.create_publisher(Image, image_topic, qos_profile_sensor_data)
        self.commands = node.create_publisher(String, f"{prefix}/command", 10)
        self.clicks = node.create_publisher(Point, f"{image_topic}_mouse_left", 10)
        self.results, self.reports, self.label_infos, self.label_images = [], [], [], []
        node.create_subscription(SegmentationResult, f"{prefix}/result", self.results.append, 10)
        node.create_subscription(DiagnosticArray, "/diagnostics", self.reports.append, 10)
        node.create_subscription(LabelInfo, f"{prefix}/label_info", self.label_infos.append, LATCHED)
        node.create_subscription(Image, f"{prefix}/label_image", self.label_images.append, 10)
        self.set_prompt_client = node.create_client(SetPrompt, f"{prefix}/set_prompt")
        self.clear_client = node.create_client(Trigger, f"{prefix}/clear_prompts")
        self.change_state = node.create_client(ChangeState, f"{prefix}/change_state")
        assert spin_until(node, lambda: self.images.get_subscription_count() and self.clicks.get_subscription_count()
                          and self.commands.get_subscription_count(), 30)
        time.sleep(0.5)  # reliable prompt topics: let both sides finish matching

    def frame(self, stamp: int, width=64, height=48) -> SegmentationResult:
        assert publish_until(self.node, self.images, rgb_image(width, height, stamp),
                             lambda: any(r.header.stamp.sec == stamp for r in self.results)), f"no result for {stamp}"
        return next(r for r in self.results if r.header.stamp.sec == stamp)

    def set_prompt(self, replace=False, **fields) -> SetPrompt.Response:
        request = SetPrompt.Request(replace=replace)
        for key, value in fields.items():
            setattr(request.prompt, key, value)
        return call(self.node, self.set_prompt_client, request)

    def clear(self) -> None:
        assert call(self.node, self.clear_client, Trigger.Request()).success

    def transition(self, transition_id: int) -> bool:
        return call(self.node, self.change_state, ChangeState.Request(transition=Transition(id=transition_id))).success

    def total(self, key: str) -> int:
        values = diagnostics_values(self.reports, f"{key} total", self.name)
        return int(values[-1]) if values else 0

    def wait_for_totals(self, condition, timeout=30.0) -> bool:
        return spin_until(self.node, condition, timeout)


@pytest.fixture(scope="module")
def client(ros, seem_node):
    return Client(ros)


def _log_after(node_process, marker: str) -> str:
    log = node_process.log()
    return log[log.index(marker):]


def test_clear_then_click_is_applied_in_arrival_order(seem_node, client):
    client.frame(100)  # the node knows the image size: clicks are applied at once
    client.commands.publish(String(data="segment the order marker"))
    assert seem_node.wait_for_log("'the order marker' -> object", timeout=20)
    for i in range(10):
        client.commands.publish(String(data="clear"))
        client.clicks.publish(Point(x=float(10 + i), y=10.0))
        spin_until(client.node, lambda: False, 0.3)
    assert seem_node.wait_for_log("click at (19.0, 10.0)", timeout=20), seem_node.log()[-3000:]
    log = _log_after(seem_node, "'the order marker' -> object")
    events = re.findall(r"command applied: 'clear'|click applied: click at \((\d+)\.0, 10\.0\)", log)
    order = ["clear" if not x else int(x) for x in events]
    assert order == [e for i in range(10) for e in ("clear", 10 + i)], order


def _prompt_totals(client):
    return {k: client.total(f"prompts {k}") for k in ("received", "applied", "refused", "dropped")}


def _settled_totals(client):
    """Totals from a report made after everything sent so far (two reports later: one may be on the way)."""
    seen = len(client.reports)
    assert spin_until(client.node, lambda: len(client.reports) >= seen + 2, 10)
    return _prompt_totals(client)


def _burst(client, count: int, deadline_s: float = 60.0):
    before = _settled_totals(client)
    burst = run_tool("prompt_burst", "--count", str(count))
    output, _ = burst.communicate(timeout=90)
    assert burst.returncode == 0 and f"sent {count}" in output, output

    def settled():
        now = _prompt_totals(client)
        delta = {k: now[k] - before[k] for k in now}
        return delta["received"] >= count and delta["applied"] + delta["refused"] + delta["dropped"] == delta["received"]
    assert client.wait_for_totals(settled, deadline_s), (before, _prompt_totals(client))
    now = _prompt_totals(client)
    return {k: now[k] - before[k] for k in now}


def test_a_burst_of_1000_prompts_is_counted_and_none_is_lost(seem_node, client):
    client.clear()
    delta = _burst(client, 1000)
    print(f"1000 prompts in a burst: {delta}")
    assert delta["received"] == 1000 and delta["dropped"] == 0
    # max_objects is 16: the rest are refused, each counted, the warnings throttled
    assert delta["applied"] == 16 and delta["refused"] == 984
    assert "more would exceed max_objects = 16" in seem_node.log()
    assert seem_node.wait_for_log("similar messages suppressed", timeout=10)  # the burst is summed up
    assert seem_node.alive()
    client.clear()


def test_a_burst_over_the_queue_size_is_dropped_with_a_count_and_a_warning(tmp_path, ros):
    node = NodeProcess(tmp_path / "node.log", {"prompt_queue_size": 20, "stats_period": 1.0, "max_objects": 1000},
                       name="seem_small_queue")
    ros_node = rclpy.create_node("test_small_queue_client")
    try:
        assert node.wait_for_log("processing /image", timeout=120), node.log()
        client = Client(ros_node, prefix="/seem_small_queue")
        burst = run_tool("prompt_burst", "--count", "1000", "--topic", "/seem_small_queue/prompt")
        output, _ = burst.communicate(timeout=90)
        assert burst.returncode == 0, output
        assert client.wait_for_totals(lambda: client.total("prompts received") >= 1000
                                      and client.total("prompts applied") + client.total("prompts refused")
                                      + client.total("prompts dropped") == client.total("prompts received"), 60), \
            (_prompt_totals(client), diagnostics_values(client.reports, "prompts waiting", client.name)[-3:])
        totals = _prompt_totals(client)
        print(f"1000 prompts into a queue of 20: {totals}")
        assert totals["received"] == 1000 and totals["dropped"] > 0
        assert "prompt queue full" in node.log()
        levels = [s.level for r in client.reports for s in r.status if s.name.startswith("seem_small_queue:")]
        assert b"\x01" in levels  # WARN while prompts were dropped
    finally:
        ros_node.destroy_node()
        node.stop()


def test_a_text_already_tracked_returns_its_id(seem_node, client):
    client.clear()
    dog = client.set_prompt(text="the dog")
    assert dog.success and len(dog.object_ids) == 1
    client.commands.publish(String(data="track the person and the dog"))
    assert seem_node.wait_for_log(f"'the dog' is already tracked as object {dog.object_ids[0]}", timeout=20)
    again = client.set_prompt(text="The Dog")
    assert again.success and list(again.object_ids) == list(dog.object_ids)
    assert f"already tracked as object {dog.object_ids[0]}" in again.message
    result = client.frame(200)
    assert sorted(o.label for o in result.objects) == ["the dog", "the person"]


def test_ids_stay_unique_across_cleanup_and_configure(seem_node, client):
    first = client.set_prompt(text="the first thing").object_ids[0]
    for transition in (Transition.TRANSITION_DEACTIVATE, Transition.TRANSITION_CLEANUP,
                       Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE):
        assert client.transition(transition), seem_node.log()[-2000:]
    assert spin_until(client.node, lambda: client.images.get_subscription_count() > 0, 30)
    second = client.set_prompt(text="the first thing")  # the tracker was released: a new object
    assert second.success and second.object_ids[0] > first


def test_labels_are_bounded_and_keep_the_users_casing(seem_node, client):
    client.clear()
    refused = client.set_prompt(text="a cup", label="x" * 10000)
    assert not refused.success and "label is 10000 characters long" in refused.message
    assert list(refused.object_ids) == []
    client.commands.publish(String(data="Segment The Red Cup"))
    assert seem_node.wait_for_log("'The Red Cup' -> object", timeout=20)
    assert [o.label for o in client.frame(300).objects] == ["The Red Cup"]


def test_a_refused_replace_changes_nothing(seem_node, client):
    zebra = client.set_prompt(replace=True, text="the zebra").object_ids[0]
    refused = client.set_prompt(replace=True, object_id=zebra, positive_points=[Point(x=5.0, y=5.0)])
    assert not refused.success and "replace=true cannot refine object_id" in refused.message
    unknown = client.set_prompt(replace=True, text="the horse", positive_points=[Point(x=500.0, y=5.0)])
    assert not unknown.success and "outside the 64x48 image" in unknown.message
    assert [o.id for o in client.frame(400).objects] == [zebra]


def test_an_all_zero_mask_prompt_is_refused(client):
    mask = Image(height=48, width=64, encoding="mono8", step=64)
    mask.data = bytes(64 * 48)
    refused = client.set_prompt(mask=mask)
    assert not refused.success and "mask is empty" in refused.message


def test_an_example_region_object_can_be_refined(seem_node, client):
    client.clear()
    reference = rgb_image(64, 48, stamp=7)
    mask = Image(height=48, width=64, encoding="mono8", step=64)
    region = np.zeros((48, 64), np.uint8)
    region[10:30, 20:40] = 255
    mask.data = region.tobytes()
    example = client.set_prompt(reference_image=reference, reference_mask=mask)
    assert example.success, example.message
    object_id = example.object_ids[0]
    assert object_id in [o.id for o in client.frame(500).objects]
    refined = client.set_prompt(object_id=object_id, positive_points=[Point(x=30.0, y=20.0)],
                                negative_points=[Point(x=5.0, y=40.0)])
    assert refined.success and list(refined.object_ids) == [object_id], refined.message
    assert seem_node.wait_for_log(f"object {object_id} refined", timeout=10)
    for stamp in (501, 502):  # refined with memory, then following its own mask
        assert [o.id for o in client.frame(stamp).objects] == [object_id]


def test_pixel_prompts_are_checked_against_the_first_frame(tmp_path, ros):
    node = NodeProcess(tmp_path / "node.log", name="seem_no_frame_yet")
    ros_node = rclpy.create_node("test_first_frame_client")
    try:
        assert node.wait_for_log("processing /image", timeout=120), node.log()
        client = Client(ros_node, prefix="/seem_no_frame_yet", image_topic="/image")
        early = client.set_prompt(positive_points=[Point(x=10.0, y=10.0)])
        assert not early.success and "no camera frame received yet on '/image'" in early.message
        client.clicks.publish(Point(x=500.0, y=20.0))  # outside the 64x48 frame that comes next
        client.clicks.publish(Point(x=10.0, y=10.0))
        spin_until(ros_node, lambda: False, 1.0)
        assert "click applied" not in node.log() and "click refused" not in node.log()  # waiting for a frame
        client.frame(600)
        assert node.wait_for_log("click refused: click at (500.0, 20.0) is outside the 64x48 image", timeout=20)
        assert node.wait_for_log("click applied: click at (10.0, 10.0)", timeout=20)
    finally:
        ros_node.destroy_node()
        node.stop()


def test_score_threshold_applies_to_result_and_label_info_alike(tmp_path, ros):
    node = NodeProcess(tmp_path / "node.log", {"score_threshold": 0.999}, name="seem_threshold")
    ros_node = rclpy.create_node("test_threshold_client")
    try:
        assert node.wait_for_log("processing /image", timeout=120), node.log()
        client = Client(ros_node, prefix="/seem_threshold")
        tracked = client.set_prompt(text="the zebra")
        assert tracked.success
        result = client.frame(700)
        assert result.objects == []  # the tiny random model never scores 0.999
        assert spin_until(ros_node, lambda: client.label_infos, 10)
        assert list(client.label_infos[-1].ids) == [] and list(client.label_infos[-1].labels) == []
    finally:
        ros_node.destroy_node()
        node.stop()


def test_label_info_maps_label_image_values_to_object_ids(seem_node, client):
    client.clear()
    ids = [client.set_prompt(text=text).object_ids[0] for text in ("the zebra", "the grass", "the sky")]
    result = client.frame(800)
    assert sorted(o.id for o in result.objects) == sorted(ids)
    assert spin_until(client.node, lambda: any(sorted(i.ids) == sorted(ids) for i in client.label_infos)
                      and any(im.header.stamp.sec == 800 for im in client.label_images), 10)
    info = next(i for i in reversed(client.label_infos) if sorted(i.ids) == sorted(ids))
    values = dict(zip(info.ids, info.label_values))
    assert sorted(values.values()) == [1, 2, 3]  # small label values, whatever the ids
    assert [info.labels[list(info.ids).index(i)] for i in ids] == ["the zebra", "the grass", "the sky"]
    image = next(im for im in client.label_images if im.header.stamp.sec == 800)
    pixels = np.frombuffer(bytes(image.data), np.uint16).reshape(image.height, image.width)
    assert set(np.unique(pixels)) <= set(values.values()) | {0}
    for obj in result.objects:  # each object's mask is where its value shows (or a higher score covers it)
        mask = np.frombuffer(bytes(obj.mask.data), np.uint8).reshape(obj.mask.height, obj.mask.width) > 0
        others = [o.score for o in result.objects if o.id != obj.id]
        if mask.any() and all(s < obj.score for s in others):
            assert (pixels[mask] == values[obj.id]).all()

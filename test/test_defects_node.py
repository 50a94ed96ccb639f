"""Issue 15's defects where the behaviour is the node's, checked across processes (seem_node with
the tiny reference checkpoint in its own process, prompts and results over DDS)."""
import json
import subprocess
import sys

import numpy as np

from conftest import REPO, reference_path
from ros_harness import (NodeProcess, answers_while_the_model_runs, apply_ros_environment, call, node_watching_a_camera,
                         result_objects, rgb_image, ros_environment, spin_until)

apply_ros_environment()  # before rclpy is imported anywhere in this process

from geometry_msgs.msg import Point  # noqa: E402
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402

from seem_ros.msg import SegmentationPrompt  # noqa: E402

RELIABLE_KEEP_ALL = QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE)

def test_a_click_on_a_text_object_changes_its_mask_in_the_node_from_the_next_frame_and_the_change_holds(
        tmp_path, ros):
    """One still image played as the camera: the text object's grounding gives the same mask every
    frame, so a mask that differs after the click (and keeps differing) is the click's doing. The
    tiny reference checkpoint's masks are meaningless, which is why the change, not its shape, is
    asserted here (its shape: the tests above)."""
    prompts = ros.create_publisher(SegmentationPrompt, "/seem_node/prompt",
                                   RELIABLE_KEEP_ALL)
    still = str(reference_path("images", "zebras1.jpg"))
    with node_watching_a_camera(tmp_path, ros, {}, still, "--command", "segment the zebra", "--rate", "5",
                                "--duration", "120") as (node, results):
        grounded = lambda: [result_objects(r) for r in results if r.objects]  # noqa: E731
        assert spin_until(ros, lambda: len(grounded()) >= 3, 90), node.log()[-3000:]
        (zebra, (label, _, mode, text_mask)), = grounded()[-1].items()
        assert (label, mode) == ("the zebra", "grounding") and text_mask.any()
        assert all(np.array_equal(f[zebra][3], text_mask) for f in grounded()[-2:])  # a still image: one mask
        y, x = np.argwhere(text_mask)[len(np.argwhere(text_mask)) // 2]
        before = len(results)
        prompts.publish(SegmentationPrompt(object_id=int(zebra), negative_points=[Point(x=float(x), y=float(y))]))
        refined = lambda: [i for i, r in enumerate(results[before:]) if result_objects(r)[zebra][2] == "refinement"]  # noqa: E731,E501
        assert spin_until(ros, refined, 60), node.log()[-3000:]
        first = before + refined()[0]
        assert spin_until(ros, lambda: len(results) >= first + 4, 60)
        after = [result_objects(r)[zebra] for r in results[first:first + 4]]
    assert [mode for _, _, mode, _ in after] == ["refinement"] + ["propagation"] * 3
    assert all(label == "the zebra" for label, _, _, _ in after)
    assert all(not np.array_equal(mask, text_mask) for _, _, _, mask in after)  # changed, and not grounded anew


# ---------------------------------------------------------------- parameters (items 4 and 10)

def test_parameters_that_would_break_every_frame_leave_the_node_unconfigured_and_alive(tmp_path):
    node = NodeProcess(tmp_path / "seem_node.log", {"input_canvas": "512x0", "score_threshold": ".nan",
                                                    "input_short_side": 0})
    try:
        assert node.wait_for_log("not configured", timeout=120), node.log()
        log = node.log()
        for name in ("input_canvas", "score_threshold", "input_short_side"):
            assert f"parameter {name}" in log, (name, log)
        assert "loaded from" not in log and node.alive()
    finally:
        node.stop()


def test_a_checkpoint_path_with_a_typo_is_named_and_never_downloaded(tmp_path):
    typo = str(tmp_path / "models" / "seem_focalt_v1.pt")
    node = NodeProcess(tmp_path / "seem_node.log", {"checkpoint": typo, "model_config": "focalt_v1"})
    try:
        assert node.wait_for_log("not configured", timeout=120), node.log()
        assert f"checkpoint {typo} does not exist" in node.log() and "fetching" not in node.log()
        assert node.alive()
    finally:
        node.stop()


# ---------------------------------------------------------------- executor threads (item 13)
def test_prompt_callers_waiting_on_a_busy_model_leave_threads_for_the_lifecycle_services(tmp_path, ros):
    """segment_image holds the model for seconds (input_short_side 2048: ~15 s on a 2-core CPU,
    several on a fast one, against ~1 s of set-up before the check); an example-region prompt
    needs the model too, so the applier waits behind it and every later prompt behind that. Eight
    more set_prompt calls then wait; the lifecycle services must still answer while the model is
    busy, and the calls beyond the waiting limit are refused at once, changing nothing."""
    from lifecycle_msgs.srv import GetState
    from seem_ros.srv import SegmentImage, SetPrompt
    from sensor_msgs.msg import Image

    node = NodeProcess(tmp_path / "seem_node.log", {"input_short_side": 2048})
    segment = ros.create_client(SegmentImage, "/seem_node/segment_image")
    set_prompt = ros.create_client(SetPrompt, "/seem_node/set_prompt")
    get_state = ros.create_client(GetState, "/seem_node/get_state")
    try:
        assert node.wait_for_log("processing /image", timeout=120), node.log()
        call(ros, get_state, GetState.Request())  # discovery done, connections warm
        assert set_prompt.wait_for_service(timeout_sec=30) and segment.wait_for_service(timeout_sec=30)
        busy = segment.call_async(SegmentImage.Request(image=rgb_image(640, 480, stamp=5)))
        spin_until(ros, lambda: False, 0.3)
        region = Image(height=240, width=320, encoding="mono8", step=320, data=bytes([255]) * (320 * 240))
        example = set_prompt.call_async(SetPrompt.Request(prompt=SegmentationPrompt(
            reference_image=rgb_image(320, 240, stamp=6), reference_mask=region, label="example")))
        spin_until(ros, lambda: False, 0.2)
        texts = [set_prompt.call_async(SetPrompt.Request(prompt=SegmentationPrompt(text=f"thing {i}")))
                 for i in range(8)]
        refused_at_once = lambda: [f for f in texts if f.done() and "already waiting" in f.result().message]  # noqa: E731
        assert spin_until(ros, lambda: len(refused_at_once()) >= 6, 20), [f.done() for f in texts]
        state = get_state.call_async(GetState.Request())
        assert spin_until(ros, state.done, 20) and not busy.done(), "the lifecycle service waited for the model"
        assert state.result().current_state.label == "active"
        assert all(not f.result().success for f in refused_at_once())
        assert spin_until(ros, lambda: busy.done() and example.done() and all(f.done() for f in texts), 120)
        # the example waits behind the busy model: applied, or (on a loaded machine, where segment_image
        # took 33 s) still being applied when the service's 40 s wait ends, which the caller is told
        assert busy.result().success, busy.result()
        assert example.result().success or "still being applied" in example.result().message, example.result()
        waited = [f.result() for f in texts if f not in refused_at_once()]
        assert len(waited) == 2 and all(r.success or "not applied within" in r.message for r in waited), waited
        assert node.alive()
    finally:
        node.stop()


# ---------------------------------------------------------------- services while the model runs (item 15)
def test_lifecycle_and_prompt_services_answer_while_the_model_runs(tmp_path, ros):
    """What the old 100 ms test protected, without a clock: each service (lifecycle, set_prompt,
    clear_prompts) answers while a segment_image call provably holds the model (its answer comes
    after theirs), i.e. none waits behind inference. How fast: benchmarks/service_latency.py."""
    node = NodeProcess(tmp_path / "seem_busy.log", {"input_short_side": 1536}, name="seem_busy")
    try:
        assert node.wait_for_log("processing /image", timeout=120), node.log()
        answers = answers_while_the_model_runs(ros, "seem_busy")
        print({name: f"{len(v)} answers, slowest {max(v) * 1000:.0f} ms" for name, v in answers.items() if v})
        assert all(answers.values()), f"a service answered only after the model finished: {answers}"
    finally:
        node.stop()


# ---------------------------------------------------------------- the demo (item 11)
def test_the_demo_sends_each_frame_once_and_prompts_before_the_first(tmp_path, ros):
    """Listening beside the demo: every recorded frame is segmented exactly once (it resent each
    frame every second, so a frame slower than that was segmented twice and the tracker counted it
    twice) and both prompts are applied before the first recorded frame."""
    from seem_ros.msg import SegmentationResult

    stamps = []
    ros.create_subscription(SegmentationResult, "/seem_node/result",
                            lambda msg: stamps.append(msg.header.stamp.sec * 10 ** 9 + msg.header.stamp.nanosec), 50)
    tiny = reference_path("tiny")
    for attempt in range(2):
        stamps.clear()
        out = tmp_path / f"out{attempt}"
        demo = subprocess.Popen([sys.executable, "-m", "seem_ros.tools.demo", str(REPO / "demo" / "zebras_pan"),
                                 "--max-frames", "4", "--checkpoint", str(tiny / "tiny_seem.pt"), "--config",
                                 str(tiny / "tiny_config.yaml"), "--out", str(out)], cwd=REPO, env=ros_environment(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            spin_until(ros, lambda: demo.poll() is not None, 600)
            spin_until(ros, lambda: False, 1.0)  # results still on their way
        finally:
            if demo.poll() is None:
                demo.kill()
        assert demo.returncode == 0, demo.stderr.read()[-3000:]
        # The listener is a witness only if it had matched the new node's publisher before the
        # recorded frames: it then received the size frame's result (stamped 1 ns), which the demo
        # waits for. Under load, discovery of the node can take longer than the whole demo.
        if 1 in stamps:
            break
    assert 1 in stamps, f"the listener never matched the demo's node in two runs: {stamps}"
    recorded = [s for s in stamps if s >= 10 ** 9]
    assert len(recorded) == 4 and len(set(recorded)) == 4, f"frames segmented more than once: {recorded}"
    lines = [json.loads(line) for line in (out / "objects.jsonl").read_text().splitlines()]
    assert {line["label"] for line in lines if line["frame"] == 0} == {"the zebra", "object"}


# ---------------------------------------------------------------- segment_image and the graphs (item 7)
def test_segment_image_of_another_size_exports_nothing_inside_the_service(tmp_path, ros):
    """ONNX Runtime with a fixed canvas: both graphs are exported at configure; an image of another
    size and shape on demand is letterboxed into the canvas, so no graph is exported for it (it was
    exported, under the model lock, inside the service callback, and kept for good)."""
    from seem_ros.srv import SegmentImage
    cache = tmp_path / "engines"
    node = NodeProcess(tmp_path / "seem_node.log", {"backend": "onnxruntime", "input_canvas": "128x160",
                                                    "input_short_side": 128, "engine_cache_dir": str(cache)})
    segment = ros.create_client(SegmentImage, "/seem_node/segment_image")
    try:
        assert node.wait_for_log("processing /image", timeout=300), node.log()
        exported = {p.name: p.stat().st_mtime_ns for p in cache.glob("*.onnx")}
        assert len(exported) == 2
        for width, height in ((300, 100), (64, 48)):
            answer = call(ros, segment, SegmentImage.Request(image=rgb_image(width, height, stamp=3)), timeout=120)
            assert answer.success, answer.message
            assert all((o.mask.width, o.mask.height) == (width, height) for o in answer.result.objects)
        assert {p.name: p.stat().st_mtime_ns for p in cache.glob("*.onnx")} == exported
        assert node.alive()
    finally:
        node.stop()

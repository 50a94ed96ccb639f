"""`seem-ros track SOURCE` run as a user runs it (a process, the tiny reference checkpoint): an image
folder, a video and a rosbag2 in; overlay.mp4, label images, objects.jsonl and an MCAP bag out; the
bag read back (frames and the package's own message types) and tracked again; bad input."""
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from conftest import REPO, reference_path

DOG = reference_path("davis", "JPEGImages", "480p", "dog")
FRAMES = 4


def _track(*args):
    tiny = reference_path("tiny")
    return subprocess.run([sys.executable, "-m", "seem_ros.tools.cli", "track", *map(str, args), "--checkpoint",
                           str(tiny / "tiny_seem.pt"), "--config", str(tiny / "tiny_config.yaml")],
                          cwd=REPO, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    out = tmp_path_factory.mktemp("track")
    run = _track(DOG, "--text", "the dog", "--point", "400,250", "--max-frames", FRAMES, "--out", out)
    assert run.returncode == 0, run.stderr
    return out, json.loads(run.stdout.strip().splitlines()[-1])


def _inputs():
    return [cv2.imread(str(p))[..., ::-1] for p in sorted(DOG.glob("*.jpg"))[:FRAMES]]


def test_track_writes_the_overlay_video_label_images_and_objects(tracked):
    out, summary = tracked
    assert summary["kind"] == "folder" and summary["frames"] == FRAMES
    assert sorted(o["label"] for o in summary["objects"]) == ["object", "the dog"]
    video = cv2.VideoCapture(str(out / "overlay.mp4"))
    shown = 0
    while True:
        ok, frame = video.read()
        if not ok:
            break
        assert frame.shape == (480, 854, 3)
        shown += 1
    assert shown == FRAMES
    lines = [json.loads(line) for line in (out / "objects.jsonl").read_text().splitlines()]
    assert len(lines) == 2 * FRAMES and [line["frame"] for line in lines] == sorted(list(range(FRAMES)) * 2)
    ids = {o["id"] for o in summary["objects"]}
    assert all({line["id"] for line in lines if line["frame"] == f} == ids for f in range(FRAMES))  # ids persist
    assert {line["status"] for line in lines} <= {"tracked", "lost"}
    assert lines[2]["stamp"] - lines[0]["stamp"] == pytest.approx(1e9 / 30, abs=1)  # a folder: nominal 30 fps
    for f in range(FRAMES):
        labels = cv2.imread(str(out / "labels" / f"{f:06d}.png"), cv2.IMREAD_UNCHANGED)
        assert labels.dtype == np.uint16 and labels.shape == (480, 854)
        values = {line["label_value"] for line in lines if line["frame"] == f}
        assert set(np.unique(labels)) <= values | {0}


def test_the_bag_holds_the_input_frames_and_the_outputs_with_the_packages_types(tracked):
    from rosbags.highlevel import AnyReader
    from seem_ros.tools.bag_recording import typestore
    from seem_ros.tools.sources import FrameSource
    out, _ = tracked
    frames = list(FrameSource(str(out / "bag"), topic="/image"))
    assert [f.index for f in frames] == list(range(FRAMES))
    assert all(np.array_equal(f.rgb, rgb) for f, rgb in zip(frames, _inputs()))  # rgb8: exactly the input
    lines = [json.loads(line) for line in (out / "objects.jsonl").read_text().splitlines()]
    with AnyReader([out / "bag"], default_typestore=typestore()) as reader:
        assert {c.topic: c.msgtype for c in reader.connections} == {
            "/image": "sensor_msgs/msg/Image", "/seem_node/result": "seem_ros/msg/SegmentationResult",
            "/seem_node/label_image": "sensor_msgs/msg/Image", "/seem_node/overlay": "sensor_msgs/msg/Image",
            "/seem_node/label_info": "seem_ros/msg/LabelInfo"}

        def read(topic):
            return [reader.deserialize(raw, c.msgtype) for c, _, raw in reader.messages(
                connections=[c for c in reader.connections if c.topic == topic])]
        results, infos = read("/seem_node/result"), read("/seem_node/label_info")
    assert len(results) == FRAMES
    for f, result in enumerate(results):
        assert result.header.stamp.sec * 10 ** 9 + result.header.stamp.nanosec == frames[f].stamp_ns
        assert (result.height, result.width) == (480, 854)
        written = [(line["id"], line["label"], line["status"], line["mode"], line["bbox"])
                   for line in lines if line["frame"] == f]
        assert [(o.id, o.label, o.status, o.mode, [o.bbox.x_offset, o.bbox.y_offset, o.bbox.width, o.bbox.height])
                for o in result.objects] == written
        assert all(o.mask.encoding == "mono8" and o.mask.data.size == 480 * 854 for o in result.objects)
    assert 1 <= len(infos) <= FRAMES  # written when it changes, as the node publishes it
    first = {line["id"]: (line["label"], line["label_value"]) for line in lines if line["frame"] == 0}
    assert {i: (label, value) for i, label, value in zip(infos[0].ids, infos[0].labels, infos[0].label_values)} == first


def test_a_bag_and_a_video_are_sources_too(tracked, tmp_path):
    out, _ = tracked
    again = _track(out / "bag", "--topic", "/image", "--point", "400,250", "--out", tmp_path / "from_bag")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout.strip().splitlines()[-1])["frames"] == FRAMES
    video = tmp_path / "dog.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (854, 480))
    for rgb in _inputs():
        writer.write(np.ascontiguousarray(rgb[..., ::-1]))
    writer.release()
    run = _track(video, "--text", "the dog", "--out", tmp_path / "from_video")
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["kind"] == "video" and summary["frames"] == FRAMES


@pytest.mark.parametrize("args, says", [
    (["nowhere", "--text", "x"], "nowhere does not exist"),
    ([DOG], "nothing to track"),
    ([DOG, "--everything", "--text", "x"], "--everything takes every object of the vocabulary"),
    ([DOG, "--point", "5000,5", "--max-frames", "1"], "outside the 854x480 image"),
    ([reference_path("tiny"), "--text", "x"], "holds no images"),
])
def test_bad_sources_and_prompts_are_explained_with_exit_code_2(tmp_path, args, says):
    run = _track(*args, "--out", tmp_path / "out")
    assert run.returncode == 2 and says in run.stderr, run.stderr
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_a_bag_with_several_image_topics_needs_one_chosen(tracked, tmp_path):
    out, _ = tracked
    run = _track(out / "bag", "--text", "x", "--out", tmp_path / "out")
    assert run.returncode == 2, run.stderr
    assert "4 image topics" not in run.stderr and "choose one with --topic" in run.stderr
    assert "/image, /seem_node/label_image, /seem_node/overlay" in run.stderr


def test_a_sqlite3_bag_with_compressed_images_is_read_by_the_chosen_topic(tmp_path):
    from rosbags.rosbag2 import Writer
    from seem_ros.tools.bag_recording import typestore
    from seem_ros.tools.sources import FrameSource
    store = typestore()
    compressed, image, header, time = (store.types[t] for t in (
        "sensor_msgs/msg/CompressedImage", "sensor_msgs/msg/Image", "std_msgs/msg/Header", "builtin_interfaces/msg/Time"))
    jpegs = [cv2.imencode(".jpg", rgb[..., ::-1])[1] for rgb in _inputs()[:3]]
    with Writer(tmp_path / "robot", version=9) as writer:  # sqlite3, as ros2 bag record writes by default
        camera = writer.add_connection("/camera/image/compressed", "sensor_msgs/msg/CompressedImage", typestore=store)
        depth = writer.add_connection("/camera/depth", "sensor_msgs/msg/Image", typestore=store)
        for i, jpeg in enumerate(jpegs):
            stamp = header(stamp=time(sec=50 + i, nanosec=0), frame_id="camera")
            writer.write(camera, (50 + i) * 10 ** 9, store.serialize_cdr(
                compressed(header=stamp, format="jpeg", data=jpeg.reshape(-1)), "sensor_msgs/msg/CompressedImage"))
            writer.write(depth, (50 + i) * 10 ** 9, store.serialize_cdr(image(
                header=stamp, height=2, width=2, encoding="16UC1", is_bigendian=0, step=4,
                data=np.zeros(8, np.uint8)), "sensor_msgs/msg/Image"))
    assert list((tmp_path / "robot").glob("*.db3"))
    frames = list(FrameSource(str(tmp_path / "robot"), topic="/camera/image/compressed"))
    assert [f.stamp_ns for f in frames] == [(50 + i) * 10 ** 9 for i in range(3)]
    assert all(np.array_equal(f.rgb, cv2.imdecode(jpeg, cv2.IMREAD_COLOR)[..., ::-1]) for f, jpeg in zip(frames, jpegs))
    with pytest.raises(ValueError, match="choose one with --topic"):
        FrameSource(str(tmp_path / "robot"))


def test_track_everything_follows_each_instance_of_the_vocabulary(tmp_path):
    run = _track(DOG, "--everything", "--vocabulary", "dog,grass", "--max-frames", 3, "--out", tmp_path / "all")
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in (tmp_path / "all" / "objects.jsonl").read_text().splitlines()]
    assert {line["label"] for line in lines} <= {"dog", "grass"}
    assert all(line["mode"] in ("detection", "propagation", "reidentification") for line in lines)

"""vision_msgs both ways, across processes (seem_node with the tiny reference checkpoint in its own
process, a camera process, this process subscribing and publishing over DDS): the node publishes
its objects as vision_msgs/Detection2DArray and its label values as vision_msgs/LabelInfo, and a
detector's Detection2DArray becomes tracked objects. vision_msgs is built by scripts/setup.sh from
../shared/third_party (every ROS install has it; the PyPI wheels do not)."""
import numpy as np

from conftest import reference_path
from ros_harness import apply_ros_environment, node_watching_a_camera, result_objects, spin_until
from seem_ros.tracking.places import bounding_box

apply_ros_environment()  # before rclpy is imported anywhere in this process

from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from vision_msgs.msg import (BoundingBox2D, Detection2D, Detection2DArray, LabelInfo,  # noqa: E402
                             ObjectHypothesisWithPose)

from seem_ros.msg import LabelInfo as SeemLabelInfo  # noqa: E402

STILL = str(reference_path("images", "zebras1.jpg"))  # sent as 320 x 167 by the camera process
LATCHED = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE)


def _detection(label: str, cx: float, cy: float, width: float, height: float, score: float = 0.9) -> Detection2D:
    bbox = BoundingBox2D(size_x=width, size_y=height)
    bbox.center.position.x, bbox.center.position.y = cx, cy
    hypothesis = ObjectHypothesisWithPose()
    hypothesis.hypothesis.class_id, hypothesis.hypothesis.score = label, score
    return Detection2D(results=[hypothesis], bbox=bbox)


def test_every_published_object_is_also_a_vision_msgs_detection_with_its_box_id_label_and_score(tmp_path, ros):
    detections, vision_infos, seem_infos = [], [], []
    ros.create_subscription(Detection2DArray, "/seem_node/detections", detections.append, 50)
    ros.create_subscription(LabelInfo, "/seem_node/vision_label_info", vision_infos.append, LATCHED)
    ros.create_subscription(SeemLabelInfo, "/seem_node/label_info", seem_infos.append, LATCHED)
    with node_watching_a_camera(tmp_path, ros, {}, STILL, "--command", "segment the zebra and the grass",
                                "--rate", "5", "--duration", "120") as (node, results):
        def paired():
            stamps = {(d.header.stamp.sec, d.header.stamp.nanosec): d for d in detections}
            return [(r, stamps[(r.header.stamp.sec, r.header.stamp.nanosec)]) for r in results
                    if len(r.objects) == 2 and (r.header.stamp.sec, r.header.stamp.nanosec) in stamps]
        assert spin_until(ros, lambda: len(paired()) >= 2 and vision_infos, 90), node.log()[-3000:]
    result, array = paired()[-1]
    objects = result_objects(result)
    assert sorted(int(d.id) for d in array.detections) == sorted(i for i, o in objects.items() if o[3].any())
    assert array.header.frame_id == result.header.frame_id
    for detection in array.detections:
        label, _, _, mask = objects[int(detection.id)]
        x, y, width, height = bounding_box(mask)
        (hypothesis,) = detection.results
        score = next(o.score for o in result.objects if o.id == int(detection.id))
        assert (hypothesis.hypothesis.class_id, hypothesis.hypothesis.score) == (label, score)
        assert (detection.bbox.size_x, detection.bbox.size_y) == (width, height)
        assert (detection.bbox.center.position.x, detection.bbox.center.position.y) == (
            x + (width - 1) / 2, y + (height - 1) / 2)
    # the vision LabelInfo names the same label-image values as seem_ros' own LabelInfo
    assert {(c.class_id, c.class_name) for c in vision_infos[-1].class_map} == set(
        zip(seem_infos[-1].label_values, seem_infos[-1].labels))


def test_a_detectors_boxes_become_tracked_objects_once(tmp_path, ros):
    detector = ros.create_publisher(Detection2DArray, "/seem_node/detection_prompts", 10)
    boxes = Detection2DArray(detections=[_detection("zebra", 80.0, 80.0, 60.0, 60.0),
                                         _detection("zebra", 230.0, 80.0, 60.0, 60.0)])
    with node_watching_a_camera(tmp_path, ros, {}, STILL, "--rate", "5", "--duration", "120") as (node, results):
        assert spin_until(ros, lambda: len(results) >= 1 and detector.get_subscription_count(), 60), node.log()
        detector.publish(boxes)
        tracked = lambda: [result_objects(r) for r in results if len(r.objects) == 2]  # noqa: E731
        assert spin_until(ros, lambda: len(tracked()) >= 2, 90), node.log()[-3000:]
        first = tracked()[-1]
        for _ in range(3):  # a detector repeats its boxes every frame: the same objects hold them
            detector.publish(boxes)
            spin_until(ros, lambda: False, 0.5)
        seen = len(results)
        assert spin_until(ros, lambda: len(results) >= seen + 4, 60), node.log()[-3000:]
        later = [result_objects(r) for r in results[seen:]]
        bad = Detection2DArray(detections=[_detection("zebra", float("nan"), 10.0, 5.0, 5.0)])
        detector.publish(bad)
        assert spin_until(ros, lambda: "detections refused: detection 0" in node.log(), 30), node.log()[-3000:]
    assert [label for label, _, _, _ in first.values()] == ["zebra", "zebra"]
    assert all(set(objects) == set(first) for objects in later)  # no object added for the repeated boxes


def test_detection_boxes_are_clipped_labelled_and_refused_whole_when_one_is_unusable():
    import pytest
    from seem_ros.ros_in.detections import detection_boxes
    from seem_ros.ros_in.prompt_messages import PromptError
    unlabelled = _detection("", 5.0, 5.0, 21.0, 11.0)
    unlabelled.results = []
    boxes = detection_boxes(Detection2DArray(detections=[_detection(" cup ", 50.0, 40.0, 11.0, 21.0), unlabelled]),
                            (60, 80))
    assert boxes == [("cup", (45.0, 30.0, 55.0, 50.0)), ("object", (0.0, 0.0, 15.0, 10.0))]
    for bad, reason in ((_detection("cup", float("inf"), 1.0, 2.0, 2.0), "not a finite, non-empty box"),
                        (_detection("cup", 10.0, 10.0, 0.0, 4.0), "not a finite, non-empty box"),
                        (_detection("cup", 500.0, 10.0, 4.0, 4.0), "outside the 80x60 camera image")):
        with pytest.raises(PromptError, match=f"detection 1 .*{reason}"):
            detection_boxes(Detection2DArray(detections=[_detection("cup", 5.0, 5.0, 3.0, 3.0), bad]), (60, 80))


def test_a_box_is_held_by_the_object_of_its_label_whose_mask_or_box_prompt_overlaps_it():
    from seem_ros.tracking.places import Place, objects_holding
    mask = np.zeros((60, 80), bool)
    mask[10:20, 10:30] = True  # bounding box (10, 10) - (29, 19)
    places = {1: Place("cup", "tracked", mask, None, None),
              2: Place("cup", "tracked", None, (40.0, 40.0, 59.0, 49.0), (60, 80)),
              3: Place("plate", "tracked", mask, None, None)}
    assert objects_holding(places, [("cup", (10.0, 10.0, 29.0, 19.0))], (60, 80), 0.5) == [1]
    assert objects_holding(places, [("the cup", (12.0, 10.0, 31.0, 19.0))], (60, 80), 0.5) == [1]  # IoU 18/22
    assert objects_holding(places, [("cup", (41.0, 40.0, 60.0, 49.0))], (60, 80), 0.5) == [2]  # no mask yet: its box
    assert objects_holding(places, [("cup", (80.0, 80.0, 119.0, 99.0))], (120, 160), 0.5) == [2]  # camera 2x as big
    assert objects_holding(places, [("cup", (20.0, 10.0, 39.0, 19.0))], (60, 80), 0.5) == [None]  # IoU 1/3
    assert objects_holding(places, [("bowl", (10.0, 10.0, 29.0, 19.0))], (60, 80), 0.5) == [None]
    assert objects_holding(places, [("cup", (41.0, 40.0, 60.0, 49.0)), ("plate", (10.0, 10.0, 29.0, 19.0)),
                                    ("cup", (20.0, 10.0, 39.0, 19.0))], (60, 80), 0.5) == [2, 3, None]  # one pass

"""`eval-tracking` scores DAVIS 2017 objects one by one (issue 15, item 14): a multi-object
annotation is several objects, each prompted and scored on its own as the DAVIS toolkit does (not
one object made of all of them); void pixels are left out; a frame without an annotation is
segmented but not scored, not a crash."""
import json
import shutil
import subprocess
import sys

import numpy as np
import torch
from PIL import Image

from conftest import REPO, reference_path
from seem_ros.inference.predictor import MaskResult
from seem_ros.tools.evaluation import overall, read_davis, run_sequence

DOG = reference_path("davis", "JPEGImages", "480p", "dog")
H, W = 480, 854


def _box(top, left, height=100, width=150):
    mask = np.zeros((H, W), bool)
    mask[top:top + height, left:left + width] = True
    return mask


FIRST, SECOND = _box(50, 50), _box(250, 500)  # two objects; they stay where they are


def _davis_2017(root, frames=4, unannotated=(2,)):
    """A DAVIS 2017-layout sequence: palette annotations with objects 1 and 2, a void band along
    object 2's edge, and frames without an annotation."""
    images, annotations = root / "JPEGImages" / "480p" / "two", root / "Annotations" / "480p" / "two"
    images.mkdir(parents=True)
    annotations.mkdir(parents=True)
    for t, source in enumerate(sorted(DOG.glob("*.jpg"))[:frames]):
        shutil.copy(source, images / f"{t:05d}.jpg")
        if t in unannotated:
            continue
        labels = np.zeros((H, W), np.uint8)
        labels[FIRST], labels[SECOND] = 1, 2
        labels[245:250, 500:650] = 255  # void
        annotation = Image.fromarray(labels, mode="P")
        annotation.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (3 * 252) + [255, 255, 255])
        annotation.save(annotations / f"{t:05d}.png")
    return root


class _PromptedMask:
    """Answers each object with exactly the mask it was prompted with (propagation's ground truth)."""

    def set_image(self, rgb):
        pass

    def visual_query(self, prompt, memory=None, text=""):
        return np.asarray(prompt.mask, bool)

    def decode(self, queries):
        return [MaskResult(q, 0.9, torch.zeros(1), "", q.shape) for q in queries]


def test_each_object_of_a_multi_object_annotation_is_prompted_and_scored_on_its_own(tmp_path):
    (sequence,) = read_davis(str(_davis_2017(tmp_path)))
    assert sequence.objects == [1, 2] and sequence.labels[2] is None
    assert np.array_equal(sequence.truth(0, 1), FIRST) and np.array_equal(sequence.truth(0, 2), SECOND)
    result = run_sequence(_PromptedMask(), sequence, "propagation")
    assert len(result.objects) == 2
    # each object its own mask: a perfect score (one object of both would be scored against both
    # masks merged); frame 2 has no annotation: scored frames are 1 only (3 is the last)
    assert [o.per_frame_j for o in result.objects] == [[1.0], [1.0]]
    assert overall([result]) == {"J": 1.0, "F": 1.0, "JF": 1.0, "objects": 2}


def test_void_pixels_are_left_out_of_j(tmp_path):
    (sequence,) = read_davis(str(_davis_2017(tmp_path, frames=3, unannotated=())))
    assert sequence.void(1).sum() == 5 * 150
    from seem_ros.tools.evaluation import region_similarity
    with_void_band = sequence.truth(1, 2) | sequence.void(1)
    assert region_similarity(with_void_band, sequence.truth(1, 2), sequence.void(1)) == 1.0


def test_eval_tracking_runs_the_model_on_a_multi_object_sequence_with_unannotated_frames(tmp_path):
    tiny = reference_path("tiny")
    done = subprocess.run([sys.executable, "-m", "seem_ros.tools.cli", "eval-tracking", "--checkpoint",
                           str(tiny / "tiny_seem.pt"), "--config", str(tiny / "tiny_config.yaml"), "--davis",
                           str(_davis_2017(tmp_path)), "--modes", "propagation,tracker"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert all(s["objects"] == 2 and 0.0 <= s["JF"] <= 1.0 for s in summary.values()), summary

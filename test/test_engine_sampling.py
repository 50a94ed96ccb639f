"""Deterministic prompt sampling for deployment (DeterministicSampling) against the official
random draws: on every single-visual-prompt parity case, its masks must agree with the official
outputs at least as well as masks from other official random draws do. The figures are printed
(README: "Deterministic prompt sampling")."""
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import load_case, reference_path
from parity_prompts import DEMO_PROMPTS, DOG, EVAL_CASES, eval_prompt
from seem_ros.inference.postprocess import upsample_and_crop
from seem_ros.inference.predictor import SeemPredictor
from seem_ros.model.visual_sampler import DecoderRandomness, DeterministicSampling

CASES = {**DEMO_PROMPTS, **{name: eval_prompt for name in EVAL_CASES}}
RANDOM_SEEDS = 5


def _agreement(tiny_model, samplers):
    """-> per sampler, (IoU, fraction of differing pixels) per case against the official mask at input size."""
    figures = [([], []) for _ in samplers]
    for name, prompt in CASES.items():
        case = load_case(name)
        predictor = SeemPredictor(tiny_model)
        image = (case["input/image_uint8_hwc"].astype(np.uint8) if "input/image_uint8_hwc" in case.files
                 else np.asarray(Image.open(reference_path(DOG)).convert("RGB")))
        predictor.set_image(image)
        f = predictor.features
        official = torch.from_numpy(case["rec/pred_calls/0/out/prev_mask"][0, 0])
        b = upsample_and_crop(official[None], f.padded_hw, f.input_hw)[0] > 0
        for (ious, differing), sampler in zip(figures, samplers):
            predictor.rng = predictor.engine.rng = sampler()
            with torch.no_grad():
                ours = predictor.decode([predictor.visual_query(prompt(case))])[0].low_res_logits
            a = upsample_and_crop(ours[None], f.padded_hw, f.input_hw)[0] > 0
            ious.append(float((a & b).sum() / (a | b).sum().clamp(min=1)))
            differing.append(float((a != b).float().mean()))
    return [(np.array(ious), np.array(differing)) for ious, differing in figures]


def test_deterministic_sampling_agrees_with_the_official_draws_as_well_as_other_draws_do(tiny_model):
    samplers = [DeterministicSampling] + [lambda seed=seed: DecoderRandomness(torch.Generator().manual_seed(seed))
                                          for seed in range(RANDOM_SEEDS)]
    (det_iou, det_diff), *random = _agreement(tiny_model, samplers)
    rnd_iou = np.concatenate([iou for iou, _ in random])
    rnd_diff = np.concatenate([diff for _, diff in random])
    print(f"deterministic sampling vs official draws: IoU mean {det_iou.mean():.3f} (min {det_iou.min():.3f}), "
          f"differing pixels mean {100 * det_diff.mean():.2f}% (max {100 * det_diff.max():.2f}%)")
    print(f"other official random draws vs official draws: IoU mean {rnd_iou.mean():.3f} (min {rnd_iou.min():.3f}), "
          f"differing pixels mean {100 * rnd_diff.mean():.2f}% (max {100 * rnd_diff.max():.2f}%)")
    assert det_iou.mean() >= rnd_iou.mean() - 0.01
    assert det_iou.min() >= rnd_iou.min() - 0.01


@pytest.mark.parametrize("count", [3, 512, 2000])
def test_deterministic_points_are_spread_and_repeatable(count):
    mask = torch.zeros((1, 64, 64), dtype=torch.bool)
    mask.view(-1)[:count] = True
    sampler = DeterministicSampling()
    points = sampler.prompt_points(mask, 512)
    assert torch.equal(points, sampler.prompt_points(mask, 512))
    assert len(points) == min(count, 512)
    assert len(torch.unique(points, dim=0)) == len(points)
    if count > 512:  # first and last pixel kept, evenly spread in between
        assert torch.equal(points[0], mask.nonzero()[0] / torch.tensor([1, 64, 64]))
        assert torch.equal(points[-1], mask.nonzero()[-1] / torch.tensor([1, 64, 64]))


def _listed_points(mask: torch.Tensor, max_len: int) -> torch.Tensor:
    """DeterministicSampling's points the plain way: every pixel listed (nonzero), each prompt's share
    picked evenly from its own list."""
    _, h, w = mask.shape
    points = mask.nonzero()
    if len(points) > max_len:
        counts = [int(c) for c in mask.flatten(1).sum(1) if c]
        shares = [max_len // len(counts) + (i < max_len % len(counts)) for i in range(len(counts))]
        points = torch.cat([own[torch.linspace(0, len(own) - 1, min(share, len(own))).round().long()]
                            for own, share in zip(points.split(counts), shares)])
    return points / torch.tensor([1, h, w])


def test_points_of_many_masks_found_together_equal_each_mask_listed_alone():
    generator = torch.Generator().manual_seed(0)
    masks = [torch.rand((1, 96, 120), generator=generator) > 0.5 - 0.1 * i for i in range(4)]  # dense: over budget
    masks += [torch.zeros((1, 96, 120), dtype=torch.bool),  # no points
              torch.rand((3, 96, 120), generator=generator) > 0.9995,  # three prompts, a few points, one maybe none
              torch.rand((2, 96, 120), generator=generator) > 0.3,  # two prompts sharing the budget
              torch.rand((1, 40, 50), generator=generator) > 0.5]  # another size
    sampler = DeterministicSampling()
    for max_len in (512, 7, 1):
        together = sampler.batch_prompt_points(masks, max_len)
        for mask, points in zip(masks, together):
            expected = _listed_points(mask, max_len)
            assert points.dtype == expected.dtype and torch.equal(points, expected)

"""The float noise model the parity tests hold our outputs to (README, "How exact").

Our code and the official code do the same float32 arithmetic in other orders (other kernels,
thread counts and instruction sets: AVX2, AVX-512, AMX), so results differ by rounding, and that
rounding grows with a value's magnitude. A float output may differ from the official one by

    |ours - official| <= ATOL + RTOL * |official|

ATOL covers values near zero (the official code's own spread across thread counts is up to 5.7e-5,
cases.json); RTOL covers large ones (class logits scaled by the temperature reach ~100: there one
float32 step is ~8e-6, and a rounding difference early in the decoder arrives there amplified).

A thresholded or arg-maxed decision (a mask pixel, a panoptic owner) may flip only where its margin
is within rounding: |logit| below NEAR_TIE_LOGIT for a mask thresholded at logit 0, a top-2 gap or a
distance to 0.5 below NEAR_TIE_PROBABILITY for probabilities (sigmoid's slope is at most 1/4). Such
pixels are excluded and counted; every other pixel must be exactly equal.

Set SEEM_NOISE_REPORT=FILE to append each comparison (name, largest difference, largest ratio to
its bar, pixels excluded) as a JSON line: benchmarks/noise_table.py builds the README's table from it.
"""
import json
import os

import numpy as np
import torch

ATOL = 1e-4
RTOL = 1e-5
NEAR_TIE_LOGIT = 1e-3  # 10x ATOL
NEAR_TIE_PROBABILITY = NEAR_TIE_LOGIT / 4


def as_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x)


def _report(**record) -> None:
    path = os.environ.get("SEEM_NOISE_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")


def assert_close(ours, official, name: str, atol: float = ATOL, rtol: float = RTOL) -> None:
    """Float outputs within the noise model."""
    ours, official = as_numpy(ours).astype(np.float64), as_numpy(official).astype(np.float64)
    assert ours.shape == official.shape, f"{name}: shape {ours.shape} != official {official.shape}"
    if not official.size:
        return
    diff = np.abs(ours - official)
    ratio = diff / (atol + rtol * np.abs(official))
    worst = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
    _report(kind="float", name=name, max_diff=float(diff.max()), max_ratio=float(ratio[worst]))
    assert ratio[worst] <= 1.0, (f"{name}: |diff| {diff[worst]:.3g} at a value of {official[worst]:.3g} is over "
                                 f"the noise bar {atol:g} + {rtol:g} x |value| (largest |diff| {diff.max():.3g})")


def assert_decided_equal(ours, official, margin, name: str, near_tie: float = NEAR_TIE_LOGIT) -> int:
    """Boolean (or label) decisions equal wherever their margin is not a near-tie; returns how many
    pixels were excluded as near-ties. margin: per pixel, how far the decision is from flipping."""
    ours, official, margin = as_numpy(ours), as_numpy(official), np.abs(as_numpy(margin))
    assert ours.shape == official.shape == margin.shape, f"{name}: shapes {ours.shape} {official.shape} {margin.shape}"
    differ = ours != official
    tie = margin < near_tie
    decided_differ = int((differ & ~tie).sum())
    _report(kind="decision", name=name, differing=int(differ.sum()), near_ties=int(tie.sum()),
            near_ties_differing=int((differ & tie).sum()), decided_differing=decided_differ)
    assert decided_differ == 0, (f"{name}: {decided_differ} pixels differ from the official decision with a margin "
                                 f"of at least {near_tie:g} ({int(tie.sum())} near-ties excluded)")
    return int(tie.sum())


def assert_masks_from_logits(ours_logits, official_logits, name: str) -> int:
    """Masks thresholded at logit 0 (probability 0.5), the margin taken from the official logits."""
    official = as_numpy(official_logits)
    return assert_decided_equal(as_numpy(ours_logits) > 0, official > 0, official, name)

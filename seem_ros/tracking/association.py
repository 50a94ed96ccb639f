"""Detections to tracks: mask IoU and the optimal one-to-one assignment (Hungarian method)."""
from typing import List, Sequence, Tuple

import numpy as np


class _PackedMask:
    """A bool mask as bits (8 pixels a byte, row by row) and its bounding rows and columns: pairs
    of masks are compared only where their boxes overlap, a byte per 8 pixels. Pairwise IoU of
    full-resolution masks as float matrices took D x H x W x 4 bytes (~250 MB for 30 1080p masks)."""

    def __init__(self, mask: np.ndarray):
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        self.box = (rows[0], rows[-1] + 1, cols[0] // 8, cols[-1] // 8 + 1) if rows.size else None
        self.bits = np.packbits(mask, axis=1)
        self.area = _popcount(self.bits)


def _popcount(bits: np.ndarray) -> int:
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return int(np.bitwise_count(bits).sum(dtype=np.int64))
    return int(np.unpackbits(bits).sum(dtype=np.int64))


def _intersection(a: _PackedMask, b: _PackedMask) -> int:
    if a.box is None or b.box is None:
        return 0
    top, bottom = max(a.box[0], b.box[0]), min(a.box[1], b.box[1])
    left, right = max(a.box[2], b.box[2]), min(a.box[3], b.box[3])
    if top >= bottom or left >= right:
        return 0
    return _popcount(a.bits[top:bottom, left:right] & b.bits[top:bottom, left:right])


def mask_iou(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> np.ndarray:
    """(len(a), len(b)) IoU of bool masks of one size (0 where both are empty), exact."""
    iou = np.zeros((len(a), len(b)))
    packed_a, packed_b = [_PackedMask(np.asarray(m, bool)) for m in a], [_PackedMask(np.asarray(m, bool)) for m in b]
    for i, pa in enumerate(packed_a):
        for j, pb in enumerate(packed_b):
            inter = _intersection(pa, pb)
            union = pa.area + pb.area - inter
            iou[i, j] = inter / union if union else 0.0
    return iou


def optimal_assignment(cost: np.ndarray) -> List[Tuple[int, int]]:
    """Rows matched to columns, one to one, minimising the total cost (min(rows, cols) pairs).
    The Hungarian method with potentials, O(n^2 m)."""
    cost = np.asarray(cost, dtype=np.float64)
    transposed = cost.shape[0] > cost.shape[1]
    if transposed:
        cost = cost.T
    n, m = cost.shape
    if n == 0:
        return []
    u, v = np.zeros(n + 1), np.zeros(m + 1)
    owner = np.zeros(m + 1, dtype=int)  # owner[j]: the row (1-based) matched to column j; 0 = none
    way = np.zeros(m + 1, dtype=int)
    for i in range(1, n + 1):
        owner[0] = i
        j0 = 0
        minv = np.full(m + 1, np.inf)
        used = np.zeros(m + 1, dtype=bool)
        while True:
            used[j0] = True
            i0, delta, j1 = owner[j0], np.inf, 0
            for j in range(1, m + 1):
                if not used[j]:
                    current = cost[i0 - 1, j - 1] - u[i0] - v[j]
                    if current < minv[j]:
                        minv[j], way[j] = current, j0
                    if minv[j] < delta:
                        delta, j1 = minv[j], j
            for j in range(m + 1):
                if used[j]:
                    u[owner[j]] += delta
                    v[j] -= delta
                else:
                    minv[j] -= delta
            j0 = j1
            if owner[j0] == 0:
                break
        while j0:
            j1 = way[j0]
            owner[j0] = owner[j1]
            j0 = j1
    pairs = [(owner[j] - 1, j - 1) for j in range(1, m + 1) if owner[j]]
    return sorted((c, r) for r, c in pairs) if transposed else sorted(pairs)


def match_by_iou(detections: Sequence[np.ndarray], tracks: Sequence[np.ndarray], min_iou: float
                 ) -> Tuple[List[Tuple[int, int]], List[int], List[int]]:
    """-> (matched (detection, track) pairs with IoU >= min_iou, unmatched detections, unmatched tracks),
    the pairs maximising the total IoU."""
    iou = mask_iou(detections, tracks)
    pairs = [(d, t) for d, t in optimal_assignment(1.0 - iou) if iou[d, t] >= min_iou] if iou.size else []
    matched_d, matched_t = {d for d, _ in pairs}, {t for _, t in pairs}
    return (pairs, [d for d in range(len(detections)) if d not in matched_d],
            [t for t in range(len(tracks)) if t not in matched_t])

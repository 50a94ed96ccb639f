"""Detections to tracks: mask IoU and the optimal one-to-one assignment (Hungarian method)."""
from typing import List, Sequence, Tuple

import numpy as np


def mask_iou(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> np.ndarray:
    """(len(a), len(b)) IoU of bool masks of one size (0 where both are empty)."""
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    fa = np.stack([m.reshape(-1) for m in a]).astype(np.float32)
    fb = np.stack([m.reshape(-1) for m in b]).astype(np.float32)
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


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

"""Turning SEEM's stride-4 mask logits into image-sized results, exactly as the official code does.

Mask logits live on the padded input at stride 4. Every path first upsamples them to the padded
input size and crops the padding; what follows differs per official entry point (see NOTES.md of
the reference fixtures): semantic maps use bicubic+antialias, the demo thresholds directly,
interactive evaluation resizes again (bilinear or bicubic) to the original image size.
"""
from dataclasses import dataclass, field
from typing import List, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F


def upsample_and_crop(logits: Tensor, padded_hw: Sequence[int], image_hw: Sequence[int],
                      mode: str = "bilinear") -> Tensor:
    """(..., h/4, w/4) logits -> (..., H, W) at the unpadded input size."""
    shape = logits.shape
    x = logits.reshape(-1, 1, *shape[-2:]) if logits.dim() != 4 else logits
    x = F.interpolate(x, size=tuple(padded_hw), mode=mode, align_corners=False)
    x = x[..., : image_hw[0], : image_hw[1]]
    return x.reshape(*shape[:-2], *x.shape[-2:])


def masks_to_host(masks: Tensor, scores: Tensor) -> Tuple[np.ndarray, List[float]]:
    """bool (N, H, W) masks and (N,) scores -> numpy masks and a list of floats (on the CPU nothing
    needs copying; from a GPU, packed_to_host)."""
    if masks.device.type == "cpu":
        return masks.numpy(), scores.float().tolist()
    return packed_to_host(masks, scores)


def packed_to_host(masks: Tensor, scores: Tensor) -> Tuple[np.ndarray, List[float]]:
    """masks_to_host in one copy and one synchronisation: the masks packed 8 pixels to a byte on
    their device (an eighth of the bytes over the bus), the scores' bytes behind them."""
    n, h, w = masks.shape
    pixels = masks.reshape(n, h * w)
    pixels = F.pad(pixels, (0, (-h * w) % 8)).view(n, -1, 8).to(torch.uint8)
    weights = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8, device=masks.device)
    packed = (pixels * weights).sum(-1, dtype=torch.uint8).reshape(-1)  # np.packbits' bit order
    host = torch.cat([packed, scores.float().contiguous().view(torch.uint8)]).cpu().numpy()
    unpacked = np.unpackbits(host[:packed.numel()].reshape(n, -1), axis=1, count=h * w)
    return unpacked.reshape(n, h, w).astype(bool), host[packed.numel():].view(np.float32).tolist()


def resize(x: Tensor, out_hw: Sequence[int], mode: str = "bilinear", antialias: bool = False) -> Tensor:
    shape = x.shape
    y = F.interpolate(x.reshape(-1, 1, *shape[-2:]), size=tuple(out_hw), mode=mode, align_corners=False,
                      antialias=antialias)
    return y.reshape(*shape[:-2], *y.shape[-2:])


def semantic_postprocess(logits: Tensor, image_hw: Sequence[int], out_hw: Sequence[int]) -> Tensor:
    """Official `sem_seg_postprocess`: crop the padding, then bicubic (antialiased) to out_hw."""
    x = logits[..., : image_hw[0], : image_hw[1]]
    return resize(x, out_hw, mode="bicubic", antialias=True)


def top2_gap(scores: Tensor) -> Tensor:
    """(K, H, W) -> (H, W): how far each pixel's arg-max is from changing (best minus second best)."""
    top = scores.topk(2, dim=0).values
    return top[0] - top[1]


def semantic_inference(class_logits: Tensor, mask_logits: Tensor) -> Tensor:
    """(Q, K+1), (Q, H, W) -> (K, H, W) per-class scores."""
    probs = F.softmax(class_logits, dim=-1)[..., :-1]
    return torch.einsum("qc,qhw->chw", probs, mask_logits.sigmoid())


@dataclass
class Segment:
    id: int
    category_id: int
    is_thing: bool
    score: float
    area: int


@dataclass
class PanopticResult:
    id_map: Tensor  # (H, W) int32, 0 = unassigned
    segments: List[Segment] = field(default_factory=list)


def panoptic_inference(class_logits: Tensor, mask_logits: Tensor, num_things: int,
                       object_mask_threshold: float, overlap_threshold: float) -> PanopticResult:
    """MaskFormer panoptic merge. class_logits (Q, K+1) with K+1 = no-object; mask_logits (Q, H, W)."""
    num_classes = class_logits.shape[-1] - 1
    scores, labels = F.softmax(class_logits, dim=-1).max(-1)
    masks = mask_logits.sigmoid()
    keep = labels.ne(num_classes) & (scores > object_mask_threshold)
    cur_scores, cur_classes, cur_masks = scores[keep], labels[keep], masks[keep]
    h, w = masks.shape[-2:]
    id_map = torch.zeros((h, w), dtype=torch.int32, device=masks.device)
    result = PanopticResult(id_map)
    if cur_masks.shape[0] == 0:
        return result
    owner = (cur_scores.view(-1, 1, 1) * cur_masks).argmax(0)
    stuff_ids = {}
    next_id = 0
    for k in range(cur_classes.shape[0]):
        category = int(cur_classes[k])
        is_thing = category < num_things
        mask_area = int((owner == k).sum())
        original_area = int((cur_masks[k] >= 0.5).sum())
        mask = (owner == k) & (cur_masks[k] >= 0.5)
        area = int(mask.sum())
        if mask_area == 0 or original_area == 0 or area == 0:
            continue
        if mask_area / original_area < overlap_threshold:
            continue
        if not is_thing and category in stuff_ids:
            id_map[mask] = stuff_ids[category]
            continue
        next_id += 1
        if not is_thing:
            stuff_ids[category] = next_id
        id_map[mask] = next_id
        result.segments.append(Segment(next_id, category, is_thing, float(cur_scores[k]), area))
    return result


@dataclass
class InstanceResult:
    masks: Tensor  # (N, H, W) bool
    scores: Tensor  # (N,)
    classes: Tensor  # (N,)
    queries: Tensor  # (N,) the object query each instance is


def instance_inference(class_logits: Tensor, mask_logits: Tensor, num_things: int, top_k: int = 100,
                       things_only: bool = True) -> InstanceResult:
    """Top-k (query, class) pairs; score = class prob x mean mask prob inside the mask."""
    num_queries, num_classes = class_logits.shape[0], class_logits.shape[-1] - 1
    probs = F.softmax(class_logits, dim=-1)[:, :-1]
    labels = torch.arange(num_classes, device=probs.device).repeat(num_queries)
    top_scores, top_index = probs.flatten().topk(min(top_k, probs.numel()), sorted=False)
    top_labels = labels[top_index]
    queries = torch.div(top_index, num_classes, rounding_mode="floor")
    if things_only:
        keep = top_labels < num_things
        top_scores, top_labels, queries = top_scores[keep], top_labels[keep], queries[keep]
    masks = mask_logits[queries]
    binary = (masks > 0).float()
    mask_scores = (masks.sigmoid().flatten(1) * binary.flatten(1)).sum(1) / (binary.flatten(1).sum(1) + 1e-6)
    return InstanceResult(binary.bool(), top_scores * mask_scores, top_labels, queries)

"""Visual prompts -> SEEM spatial tokens.

Any visual prompt (points, box, scribble, mask, or a region on a referring image) reaches the
decoder as a boolean mask on the padded input. From it SEEM takes:
- the mean mask feature of the positive (and negative) pixels: one "spatial query" per prompt,
  which later picks the best of the prompt's 3 output masks;
- per decoder level, the level feature sampled at up to 512 prompt pixels, projected by
  `mask_sptial_embed[level]`, plus a learned positive/negative indicator: the "spatial tokens".
"""
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class DecoderRandomness:
    """The random draws SEEM makes at inference, in one place so that they can be seeded or
    replayed. Defaults reproduce the official draws' distributions."""
    repeatable = False  # True: the same arguments always give the same draw

    def __init__(self, generator: Optional[torch.Generator] = None):
        self.generator = generator

    def prompt_points(self, mask: Tensor, max_len: int) -> Tensor:
        """mask (n, H, W) bool -> (N, 3) rows (prompt index, y/H, x/W), at most max_len rows.
        Over max_len, samples without replacement with equal total probability per prompt."""
        _, h, w = mask.shape
        points = mask.nonzero() / torch.tensor([1, h, w], device=mask.device)
        if len(points) <= max_len:
            return points
        index = points[:, 0]
        probs = torch.zeros_like(index)
        prompt_ids = index.unique()
        for pid in prompt_ids:
            sel = index == pid
            probs[sel] = 1.0 / (len(prompt_ids) * sel.sum())
        # drawn on the CPU: the generator is a CPU one, also when the mask is on a GPU
        chosen = torch.multinomial(probs.cpu(), max_len, replacement=False, generator=self.generator).sort()[0]
        return points[chosen.to(points.device)]

    def batch_prompt_points(self, masks: Sequence[Tensor], max_len: int) -> List[Tensor]:
        """prompt_points of each mask, drawn in order."""
        return [self.prompt_points(mask, max_len) for mask in masks]

    def spatial_query_indices(self, num_object_queries: int, count: int, device) -> Tensor:
        """Which object queries are copied into the spatial queries."""
        return torch.randint(0, num_object_queries, (count,), generator=self.generator).to(device)

    def memory_indices(self, num_prompts: int, count: int) -> Tensor:
        """Which previous-round mask each memory query attends through (sorted)."""
        uniform = torch.ones(num_prompts)
        return torch.multinomial(uniform, count, replacement=True, generator=self.generator).sort()[0]


class DeterministicSampling(DecoderRandomness):
    """The same decisions without random draws, for deployment: the same frame and prompt always
    give the same mask, and no CPU generator has to meet GPU tensors.
    - prompt points: evenly spaced through each prompt's pixels (row-major), the budget split
      evenly between prompts, instead of drawn without replacement;
    - spatial queries: object queries spread evenly over the 101 (0, 50, 100 for one prompt);
    - memory queries: spread evenly over the previous masks (all see it when there is one)."""
    repeatable = True

    def prompt_points(self, mask: Tensor, max_len: int) -> Tensor:
        return self.batch_prompt_points([mask], max_len)[0]

    def batch_prompt_points(self, masks: Sequence[Tensor], max_len: int) -> List[Tensor]:
        """The masks of one size in one pass: the k-th pixel of a prompt is found by its rank in one
        running count of all the masks' pixels (a cumulative sum and a binary search) instead of
        listing every pixel of every mask (nonzero: 5x slower on a CPU, a large output per mask)."""
        sizes = {tuple(m.shape) for m in masks}
        if len(sizes) > 1:  # frames of other sizes: a pass per size
            by_size = {size: self.batch_prompt_points([m for m in masks if tuple(m.shape) == size], max_len)
                       for size in sizes}
            return [by_size[tuple(m.shape)].pop(0) for m in masks]
        if not masks:
            return []
        n, h, w = masks[0].shape
        device = masks[0].device
        flat = torch.stack(list(masks)).reshape(-1).view(torch.uint8)  # image, prompt, row-major pixel
        running = flat.cumsum(0, dtype=torch.int32 if flat.numel() < 2 ** 31 else torch.int64)
        ends = running.view(len(masks) * n, h * w)[:, -1].tolist()
        counts = [end - before for end, before in zip(ends, [0] + ends[:-1])]  # per (image, prompt)
        ranks, per_image = [], []
        for image in range(len(masks)):
            own = counts[image * n:(image + 1) * n]
            prompts = [(i, c) for i, c in enumerate(own) if c]
            total = sum(own)
            shares = [max_len // len(prompts) + (k < max_len % len(prompts)) for k in range(len(prompts))]
            taken = 0
            for (prompt, count), share in zip(prompts, shares):
                first = ends[image * n + prompt] - count  # rank of the prompt's first pixel
                if total <= max_len:  # every pixel
                    ranks.append(torch.arange(first, first + count, device=device))
                else:  # evenly spaced through the prompt's pixels
                    ranks.append(first + torch.linspace(0, count - 1, min(share, count), device=device).round().long())
                taken += len(ranks[-1])
            per_image.append(taken)
        if not ranks:
            return [torch.zeros((0, 3), device=device) for _ in masks]
        # the pixel of rank r is the first whose running count exceeds r
        index = torch.searchsorted(running, torch.cat(ranks).to(running.dtype), right=True)
        pixel, plane = index % (h * w), index // (h * w)
        points = torch.stack([plane % n, pixel // w, pixel % w], 1) / torch.tensor([1, h, w], device=device)
        return list(points.split(per_image))

    def spatial_query_indices(self, num_object_queries: int, count: int, device) -> Tensor:
        return torch.linspace(0, num_object_queries - 1, count, device=device).round().long()

    def memory_indices(self, num_prompts: int, count: int) -> Tensor:
        return torch.arange(count) * num_prompts // count


@dataclass
class SpatialPrompt:
    """Encoded visual prompts for a batch of bs images with n prompts each.

    This is also what a referring image yields: computed once on the example image, it prompts
    any number of target images.
    """
    pos_query: Tensor  # (n, bs, C) mean positive-pixel mask feature per prompt (-1 if none)
    neg_query: Tensor  # (n, bs, C)
    level_tokens: List[Tensor]  # per decoder level: (T, bs, C)
    level_padding: List[Tensor]  # per level: (bs, T) bool, True = padding token
    level_prompt_index: List[Tensor]  # per level: (bs, T, 1) prompt index of each token, -1 = padding

    @property
    def num_prompts(self) -> int:
        return self.pos_query.shape[0]

    def to(self, device) -> "SpatialPrompt":
        return SpatialPrompt(self.pos_query.to(device), self.neg_query.to(device),
                             [t.to(device) for t in self.level_tokens], [t.to(device) for t in self.level_padding],
                             [t.to(device) for t in self.level_prompt_index])

    def image(self, i: int) -> "SpatialPrompt":
        """The prompts of batch image i alone (bs = 1)."""
        return SpatialPrompt(self.pos_query[:, i:i + 1], self.neg_query[:, i:i + 1],
                             [t[:, i:i + 1] for t in self.level_tokens], [t[i:i + 1] for t in self.level_padding],
                             [t[i:i + 1] for t in self.level_prompt_index])



def point_sample(features: Tensor, points_xy: Tensor) -> Tensor:
    """Bilinear samples (B, C, H, W) at (B, P, 2) points in [0, 1] (x, y), align_corners=True -> (B, C, P).
    Features of batch 1 serve every batch of points (one sampling call, no copies of the features)."""
    if features.shape[0] == 1 and points_xy.shape[0] > 1:
        b, p, _ = points_xy.shape
        _, channels, h, w = features.shape
        if p == 0:
            return features.new_zeros((b, channels, 0))
        # each sample is a weighted sum of four rows of the channels-last map (project_levels' layout,
        # so the reshape is a view): an embedding bag of four. The samples come out in the layout
        # callers go on with, (points, channels), where grid_sample's (channels, points) had to be
        # transposed (7x slower on a CPU, and 3x slower as a sparse points x pixels product)
        table = features[0].permute(1, 2, 0).reshape(h * w, channels)
        xy = points_xy.reshape(b * p, 2)
        corners, weights = _bilinear_corners(xy[:, 1] * (h - 1), xy[:, 0] * (w - 1), h, w, table.dtype)
        sampled = F.embedding_bag(corners.t(), table, per_sample_weights=weights.t(), mode="sum")
        return sampled.view(b, p, channels).permute(0, 2, 1)
    return F.grid_sample(features, 2.0 * points_xy.unsqueeze(2) - 1.0, align_corners=True).squeeze(3)


def _bilinear_corners(y: Tensor, x: Tensor, h: int, w: int, dtype: torch.dtype) -> Tuple[Tensor, Tensor]:
    """(N,) map coordinates of points (align_corners=True: 0..h-1, 0..w-1) -> their four corners as
    (4, N) flat pixel indices and (4, N) bilinear weights in `dtype`, corner by corner. A corner outside
    the map weighs 0 (grid_sample's zero padding) at a clamped index: no boolean indexing, so no host
    sync on a GPU."""
    y0, x0 = y.floor(), x.floor()
    fy, fx = (y - y0).to(dtype), (x - x0).to(dtype)
    y0, x0 = y0.long(), x0.long()
    indices, weights = [], []
    for dy, dx, weight in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx), (1, 0, fy * (1 - fx)),
                           (1, 1, fy * fx)):
        yy, xx = y0 + dy, x0 + dx
        indices.append(yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1))
        weights.append(weight * ((yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)))
    return torch.stack(indices), torch.stack(weights)


def _mean_query(mask_features: Tensor, drawn: Sequence[Tensor], n: int) -> Tensor:
    """(n, bs, C): per image and prompt, the mean of the mask features bilinearly sampled at the
    prompt's points (drawn: per image (N, 3) rows (prompt, y, x); align_corners=True, as
    point_sample), -1 for a prompt without points.

    A mean of bilinear samples is linear in the features: each point spreads its four corner
    weights (divided by its prompt's point count) over a weight map, and one product of the
    features with the maps gives every mean; no per-point feature vectors are gathered."""
    bsz, channels, h, w = mask_features.shape
    if not sum(len(p) for p in drawn):  # e.g. no negative clicks: no product with the features
        return mask_features.new_full((n, len(drawn), channels), -1)
    weights = mask_features.new_zeros((len(drawn) * n, h * w))
    counts = mask_features.new_zeros((len(drawn) * n,))
    # all masks' points at once: a few operations per frame, not per mask
    points = torch.cat(drawn)
    image = torch.repeat_interleave(torch.arange(len(drawn), device=points.device),
                                    torch.tensor([len(p) for p in drawn], device=points.device))
    row = image * n + points[:, 0].long()  # (image, prompt) row of the weight maps
    pixel, weight = _bilinear_corners(points[:, 1] * (h - 1), points[:, 2] * (w - 1), h, w, weights.dtype)
    counts.index_add_(0, row, torch.ones_like(weight[0]))
    weights.index_put_((row.repeat(4), pixel.flatten()), weight.flatten(), accumulate=True)
    weights, counts = weights.view(len(drawn), n, h * w), counts.view(len(drawn), n)
    weights = weights / counts.clamp(min=1)[..., None]
    features = mask_features.flatten(2)  # (1 or bs, C, HW)
    if bsz == 1:
        means = (weights.view(-1, h * w) @ features[0].t()).view(len(drawn), n, channels)
    else:
        means = torch.bmm(weights, features.transpose(1, 2))
    means = means.masked_fill((counts == 0)[..., None], -1)
    return means.transpose(0, 1)


def project_levels(level_features: Sequence[Tensor], level_sizes: Sequence[Sequence[int]],
                   mask_spatial_embed: Sequence[Tensor]) -> List[Tensor]:
    """Per decoder level, the map spatial tokens are sampled from: the level feature (HW, bs, C)
    projected by `mask_sptial_embed[level]` -> (bs, C, h, w). Depends on the image only."""
    maps = []
    for level, feats in enumerate(level_features):
        h, w = level_sizes[level]
        _, bs, c = feats.shape
        # per image one (HW, C) x (C, C) product, whatever the features' memory layout (the decoder's
        # are channel-first: a transposed operand to BLAS); the 4-d batched form over rows of
        # channel-first features took 24 ms of the tiny model's frame on a CPU (0.8 ms this way).
        # Out channels-last in memory, as point_sample reads it
        maps.append((feats.permute(1, 0, 2) @ mask_spatial_embed[level]).view(bs, h, w, c).permute(0, 3, 1, 2))
    return maps


@dataclass
class DrawnPoints:
    """The points of visual prompts, per image (N, 3) rows (prompt index, y/H, x/W) on the padded
    input: those the mean queries average (mean_*, at the last level's length) and, per decoder
    level, those its spatial tokens are sampled at. Geometry only: drawn where the masks are, the
    features may be sampled elsewhere (a Triton server)."""
    prompts: int  # n, prompts per image
    mean_pos: List[Tensor]
    mean_neg: List[Tensor]
    level_pos: List[List[Tensor]]  # per level, per image
    level_neg: List[List[Tensor]]


def draw_prompt_points(pos_masks: Sequence[Tensor], neg_masks: Sequence[Tensor], max_len: Sequence[int],
                       levels: int, rng: DecoderRandomness) -> DrawnPoints:
    """pos_masks/neg_masks: per image a bool (n, Hp, Wp) mask on the padded input, one channel per
    prompt (n the same for both); levels: the decoder levels the tokens are sampled for."""
    draw = rng.batch_prompt_points
    if rng.repeatable:  # the same mask and length give the same points: find them once
        found = {}

        def draw(masks: Sequence[Tensor], max_len: int) -> List[Tensor]:
            new = list({id(m): m for m in masks if (id(m), max_len) not in found}.values())
            found.update({(id(m), max_len): points for m, points in zip(new, rng.batch_prompt_points(new, max_len))})
            return [found[(id(m), max_len)] for m in masks]
    drawn = DrawnPoints(max((len(m) for m in pos_masks), default=0), draw(pos_masks, max_len[-1]),
                        draw(neg_masks, max_len[-1]), [], [])
    for level in range(levels):  # in the official order (random draws are replayed in tests)
        drawn.level_pos.append(draw(pos_masks, max_len[level]))
        drawn.level_neg.append(draw(neg_masks, max_len[level]))
    return drawn


def encode_spatial_prompt(pos_masks: Sequence[Tensor], neg_masks: Sequence[Tensor], mask_features: Tensor,
                          projected_levels: Sequence[Tensor], pn_indicator: Tensor, max_len: Sequence[int],
                          rng: DecoderRandomness) -> SpatialPrompt:
    """pos_masks/neg_masks: per image a bool (n, Hp, Wp) mask on the padded input, one channel per prompt.
    projected_levels: project_levels() of the images' decoder inputs; with mask_features, of batch 1
    when all the masks are on one image."""
    drawn = draw_prompt_points(pos_masks, neg_masks, max_len, len(projected_levels), rng)
    return encode_drawn_points(drawn, mask_features, projected_levels, pn_indicator)


def encode_drawn_points(drawn: DrawnPoints, mask_features: Tensor, projected_levels: Sequence[Tensor],
                        pn_indicator: Tensor) -> SpatialPrompt:
    """encode_spatial_prompt of points already drawn (draw_prompt_points)."""
    pos_query = _mean_query(mask_features, drawn.mean_pos, drawn.prompts)
    neg_query = _mean_query(mask_features, drawn.mean_neg, drawn.prompts)
    tokens, paddings, indices = [], [], []
    for level, projected in enumerate(projected_levels):
        pos_pts = drawn.level_pos[level]
        neg_pts = drawn.level_neg[level]
        points = [torch.cat([p[:, 1:], q[:, 1:]]) for p, q in zip(pos_pts, neg_pts)]
        index = [torch.cat([p[:, 0:1], q[:, 0:1]]) for p, q in zip(pos_pts, neg_pts)]
        sign = [torch.cat([torch.ones(len(p), device=p.device), -torch.ones(len(q), device=q.device)])
                for p, q in zip(pos_pts, neg_pts)]
        sign = nn.utils.rnn.pad_sequence(sign, padding_value=0)  # (T, bs)
        points = nn.utils.rnn.pad_sequence(points, padding_value=-1).permute(1, 0, 2)  # (bs, T, 2)
        index = nn.utils.rnn.pad_sequence(index, padding_value=-1).permute(1, 0, 2)  # (bs, T, 1)
        padding = points.sum(dim=-1) < 0
        points = points.masked_fill(padding[..., None], 0)
        sampled = point_sample(projected, points.flip(dims=(2,)).to(projected.dtype))  # (bs, C, T)
        # batch-first (bs, T, C) in memory (the embedding bag's own layout: no copy), then each
        # token's indicator added in place as a product with its one-hot sign: a K = 2 product
        # costs a fraction of gathering an indicator per token and adding it (10x on a CPU)
        level_tokens = sampled.transpose(1, 2).to(torch.promote_types(sampled.dtype, pn_indicator.dtype)).contiguous()
        signs = torch.stack([sign == 1, sign == -1], -1).transpose(0, 1).reshape(-1, 2)  # (bs * T, 2)
        level_tokens.view(-1, level_tokens.shape[-1]).addmm_(signs.to(level_tokens.dtype),
                                                             pn_indicator.to(level_tokens.dtype))
        tokens.append(level_tokens.transpose(0, 1))  # (T, bs, C)
        paddings.append(padding)
        indices.append(index)
    return SpatialPrompt(pos_query, neg_query, tokens, paddings, indices)


def encode_point_rows(points: Tensor, mask_features: Tensor, projected_levels: Sequence[Tensor],
                      pn_indicator: Tensor) -> Tuple[Tensor, List[Tensor], List[Tensor]]:
    """encode_drawn_points at one fixed shape, for an exported graph (no host sync, no shape that
    depends on a prompt): rows of points on one image (mask_features, projected_levels of batch 1).

    points: (N, levels + 1, P, 3) per row, per decoder level and then for the mean query, points
    (sign, y/H, x/W) with sign 1 positive, -1 negative, 0 no point (triton_protocol's FrameRequest.points)
    -> (pos_query (N, D): the mean mask feature at the positive points, -1 without one;
        per level tokens (N, P, C) and valid (N, P): a token per point, as encode_drawn_points gives them
        padded to P)."""
    rows, _, length, _ = points.shape
    sign = points[..., 0]
    yx = points[..., 1:]
    tokens, valid = [], []
    for level, projected in enumerate(projected_levels):
        channels = projected.shape[1]
        # every row's points in one sampling call of the batch-1 map (bilinear, align_corners=True)
        grid = 2.0 * yx[:, level].flip(-1).reshape(1, rows * length, 1, 2) - 1.0
        sampled = F.grid_sample(projected, grid.to(projected.dtype), align_corners=True)  # (1, C, N*P, 1)
        level_tokens = sampled.reshape(channels, rows, length).permute(1, 2, 0)
        signs = torch.stack([sign[:, level] == 1, sign[:, level] == -1], -1).to(level_tokens.dtype)
        tokens.append(level_tokens + signs @ pn_indicator.to(level_tokens.dtype))
        valid.append(sign[:, level] != 0)
    # the mean of bilinear samples as one product of the features with per-row weight maps (as _mean_query)
    _, dim, h, w = mask_features.shape
    positive = (sign[:, -1] == 1).to(mask_features.dtype)  # (N, P)
    corners, bilinear = _bilinear_corners(yx[:, -1, :, 0].reshape(-1) * (h - 1), yx[:, -1, :, 1].reshape(-1) * (w - 1),
                                          h, w, mask_features.dtype)  # (4, N*P)
    weights = (bilinear.view(4, rows, length) * positive).permute(1, 0, 2).reshape(rows, 4 * length)
    index = corners.view(4, rows, length).permute(1, 0, 2).reshape(rows, 4 * length)
    maps = mask_features.new_zeros((rows, h * w)).scatter_add(1, index, weights)
    counts = positive.sum(1, keepdim=True)
    means = (maps @ mask_features[0].flatten(1).t()) / counts.clamp(min=1)
    return means.masked_fill(counts == 0, -1), tokens, valid

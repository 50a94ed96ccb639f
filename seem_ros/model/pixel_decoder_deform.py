"""Multi-scale deformable-attention pixel decoder (`transformer_encoder_deform`, SAM variants).

Deformable attention is written with `grid_sample` only (no custom CUDA op), so it runs on CPU
and exports to ONNX / TensorRT as is.
"""
import math
from typing import Dict, List, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from seem_ros.model.layers import ConvNorm, PositionEmbeddingSine, group_norm

DEFORM_FFN_DIM = 1024  # the official decoder hard-codes 1024 for its deformable encoder
N_POINTS = 4


def deformable_attention(value: Tensor, shapes: Sequence[Tuple[int, int]], locations: Tensor,
                         weights: Tensor) -> Tensor:
    """value (N, S, M, D); locations (N, Lq, M, L, P, 2) in [0, 1] (x, y); weights (N, Lq, M, L, P)
    -> (N, Lq, M*D)."""
    n, _, heads, dim = value.shape
    _, lq, _, levels, points, _ = locations.shape
    values = value.split([h * w for h, w in shapes], dim=1)
    grids = 2 * locations - 1
    sampled = []
    for level, (h, w) in enumerate(shapes):
        v = values[level].flatten(2).transpose(1, 2).reshape(n * heads, dim, h, w)
        g = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)
        sampled.append(F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False))
    weights = weights.transpose(1, 2).reshape(n * heads, 1, lq, levels * points)
    out = (torch.stack(sampled, dim=-2).flatten(-2) * weights).sum(-1).view(n, heads * dim, lq)
    return out.transpose(1, 2)


class MSDeformAttn(nn.Module):
    def __init__(self, d_model: int, n_levels: int, n_heads: int, n_points: int = N_POINTS):
        super().__init__()
        self.n_levels, self.n_heads, self.n_points = n_levels, n_heads, n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)

    def forward(self, query: Tensor, reference_points: Tensor, value_in: Tensor,
                shapes: Sequence[Tuple[int, int]]) -> Tensor:
        n, lq, c = query.shape
        value = self.value_proj(value_in).view(n, value_in.shape[1], self.n_heads, c // self.n_heads)
        offsets = self.sampling_offsets(query).view(n, lq, self.n_heads, self.n_levels, self.n_points, 2)
        weights = F.softmax(self.attention_weights(query).view(n, lq, self.n_heads, -1), -1)
        weights = weights.view(n, lq, self.n_heads, self.n_levels, self.n_points)
        normalizer = torch.tensor([[w, h] for h, w in shapes], dtype=query.dtype, device=query.device)
        locations = reference_points[:, :, None, :, None, :] + offsets / normalizer[None, None, None, :, None, :]
        return self.output_proj(deformable_attention(value, shapes, locations, weights))


class DeformEncoderLayer(nn.Module):
    def __init__(self, d_model: int, d_ffn: int, n_levels: int, n_heads: int):
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, n_levels, n_heads)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, src: Tensor, pos: Tensor, reference_points: Tensor, shapes) -> Tensor:
        src = self.norm1(src + self.self_attn(src + pos, reference_points, src, shapes))
        return self.norm2(src + self.linear2(F.relu(self.linear1(src))))


class DeformEncoder(nn.Module):
    def __init__(self, d_model: int, d_ffn: int, n_levels: int, n_heads: int, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(DeformEncoderLayer(d_model, d_ffn, n_levels, n_heads) for _ in range(num_layers))

    def forward(self, src: Tensor, pos: Tensor, shapes) -> Tensor:
        refs = []
        for h, w in shapes:  # pixel centres, normalised (no padding masks: all ratios are 1)
            ys, xs = torch.meshgrid(torch.linspace(0.5, h - 0.5, h, device=src.device) / h,
                                    torch.linspace(0.5, w - 0.5, w, device=src.device) / w, indexing="ij")
            refs.append(torch.stack((xs.reshape(-1), ys.reshape(-1)), -1))
        reference_points = torch.cat(refs)[None, :, None].to(src.dtype).expand(src.shape[0], -1, len(shapes), -1)
        for layer in self.layers:
            src = layer(src, pos, reference_points, shapes)
        return src


class DeformTransformerEncoderOnly(nn.Module):
    def __init__(self, d_model: int, nhead: int, num_layers: int, n_levels: int):
        super().__init__()
        self.encoder = DeformEncoder(d_model, DEFORM_FFN_DIM, n_levels, nhead, num_layers)
        self.level_embed = nn.Parameter(torch.zeros(n_levels, d_model))

    def forward(self, srcs: Sequence[Tensor], pos_embeds: Sequence[Tensor]) -> List[Tensor]:
        shapes = [tuple(s.shape[-2:]) for s in srcs]
        flat = torch.cat([s.flatten(2).transpose(1, 2) for s in srcs], 1)
        pos = torch.cat([p.flatten(2).transpose(1, 2) + self.level_embed[i].view(1, 1, -1)
                         for i, p in enumerate(pos_embeds)], 1)
        memory = self.encoder(flat, pos, shapes)
        b = memory.shape[0]
        chunks = memory.split([h * w for h, w in shapes], dim=1)
        return [z.transpose(1, 2).reshape(b, -1, h, w) for z, (h, w) in zip(chunks, shapes)]


class MSDeformAttnPixelDecoder(nn.Module):
    """Deformable encoder over res3..res5, then FPN steps down to stride 4.
    Returns (mask_features, [3 multi-scale features coarse to fine])."""

    num_multiscale_levels = 3

    def __init__(self, in_channels: Dict[str, int], conv_dim: int, mask_dim: int, nheads: int,
                 num_encoder_layers: int, transformer_in_features: Sequence[str] = ("res3", "res4", "res5"),
                 common_stride: int = 4):
        super().__init__()
        order = lambda names: sorted(names, key=lambda k: int(k[3:]))  # noqa: E731 - res2 .. res5
        self.in_features = order(in_channels)
        self.transformer_in_features = order(transformer_in_features)
        self.input_proj = nn.ModuleList(
            nn.Sequential(nn.Conv2d(in_channels[name], conv_dim, kernel_size=1), group_norm(conv_dim))
            for name in self.transformer_in_features[::-1])
        self.transformer = DeformTransformerEncoderOnly(conv_dim, nheads, num_encoder_layers,
                                                        len(self.transformer_in_features))
        self.pe_layer = PositionEmbeddingSine(conv_dim // 2)
        self.mask_features = ConvNorm(conv_dim, mask_dim, kernel_size=1)
        min_stride = 2 ** int(self.transformer_in_features[0][3:])
        self.num_fpn_levels = int(math.log2(min_stride) - math.log2(common_stride))
        self.lateral_convs, self.output_convs = [], []
        for idx, name in enumerate(self.in_features[: self.num_fpn_levels]):
            lateral = ConvNorm(in_channels[name], conv_dim, kernel_size=1, bias=False, norm=group_norm(conv_dim))
            output = ConvNorm(conv_dim, conv_dim, kernel_size=3, padding=1, bias=False, norm=group_norm(conv_dim),
                              activation=F.relu)
            self.add_module(f"adapter_{idx + 1}", lateral)
            self.add_module(f"layer_{idx + 1}", output)
            self.lateral_convs.append(lateral)
            self.output_convs.append(output)
        self.lateral_convs, self.output_convs = self.lateral_convs[::-1], self.output_convs[::-1]

    def forward(self, features: Dict[str, Tensor]) -> Tuple[Tensor, List[Tensor]]:
        srcs, pos = [], []
        for idx, name in enumerate(self.transformer_in_features[::-1]):
            x = features[name].float()  # deformable attention runs in fp32, as the official code
            srcs.append(self.input_proj[idx](x))
            pos.append(self.pe_layer(x))
        with torch.autocast(device_type=srcs[0].device.type, enabled=False):
            outs = self.transformer(srcs, pos)
        for idx, name in enumerate(self.in_features[: self.num_fpn_levels][::-1]):
            lateral = self.lateral_convs[idx](features[name].float())
            y = lateral + F.interpolate(outs[-1], size=lateral.shape[-2:], mode="bilinear", align_corners=False)
            outs.append(self.output_convs[idx](y))
        return self.mask_features(outs[-1]), outs[: self.num_multiscale_levels]

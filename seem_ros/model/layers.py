"""Building blocks shared by several SEEM model parts.

Parameter names follow the official checkpoints (detectron2 / DETR conventions), so that
an official state_dict loads without renaming.
"""
import math
from typing import Callable, Optional

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class ConvNorm(nn.Conv2d):
    """detectron2-style Conv2d with an optional norm and activation (keys `weight`, `norm.*`)."""

    def __init__(self, *args, norm: Optional[nn.Module] = None,
                 activation: Optional[Callable[[Tensor], Tensor]] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.norm = norm
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        x = super().forward(x)
        if self.norm is not None:
            x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x


def group_norm(channels: int) -> nn.GroupNorm:
    """detectron2's "GN" norm: 32 groups."""
    return nn.GroupNorm(32, channels)


class MLP(nn.Module):
    """Linear layers with ReLU between them (keys `layers.i.*`)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        dims_in = [input_dim] + [hidden_dim] * (num_layers - 1)
        dims_out = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims_in, dims_out))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class PositionEmbeddingSine(nn.Module):
    """DETR sine position encoding, normalised to [0, 2*pi] over the feature map."""

    def __init__(self, num_pos_feats: int, temperature: float = 10000.0):
        super().__init__()
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.scale = 2 * math.pi

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        ones = torch.ones((b, h, w), device=x.device, dtype=x.dtype)
        y_embed = ones.cumsum(1)
        x_embed = ones.cumsum(2)
        eps = 1e-6
        y_embed = y_embed / (y_embed[:, -1:, :] + eps) * self.scale
        x_embed = x_embed / (x_embed[:, :, -1:] + eps) * self.scale
        dim_t = torch.arange(self.num_pos_feats, dtype=x.dtype, device=x.device)
        dim_t = self.temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / self.num_pos_feats)
        pos_x = x_embed[:, :, :, None] / dim_t
        pos_y = y_embed[:, :, :, None] / dim_t
        pos_x = torch.stack((pos_x[:, :, :, 0::2].sin(), pos_x[:, :, :, 1::2].cos()), dim=4).flatten(3)
        pos_y = torch.stack((pos_y[:, :, :, 0::2].sin(), pos_y[:, :, :, 1::2].cos()), dim=4).flatten(3)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)


class MultiheadAttention(nn.Module):
    """Multi-head attention over (L, B, C) sequences with the parameter layout of
    nn.MultiheadAttention (`in_proj_weight`, `in_proj_bias`, `out_proj`).

    A boolean `attn_mask` is True where attention is NOT allowed. A query whose keys are all
    masked gets a zero output (softmax NaN -> 0), which SEEM relies on for padded prompt tokens.
    Written with plain matmuls so it exports to ONNX/TensorRT unchanged.
    """

    def __init__(self, embed_dim: int, num_heads: int):
        super().__init__()
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * embed_dim))
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, query: Tensor, key: Tensor, value: Tensor,
                attn_mask: Optional[Tensor] = None) -> Tensor:
        tgt_len, bsz, dim = query.shape
        src_len = key.shape[0]
        head_dim = dim // self.num_heads
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3)
        q = F.linear(query, w_q, b_q) * (float(head_dim) ** -0.5)
        k = F.linear(key, w_k, b_k)
        v = F.linear(value, w_v, b_v)
        q = q.reshape(tgt_len, bsz * self.num_heads, head_dim).transpose(0, 1)
        k = k.reshape(src_len, bsz * self.num_heads, head_dim).transpose(0, 1)
        v = v.reshape(src_len, bsz * self.num_heads, head_dim).transpose(0, 1)
        weights = torch.bmm(q, k.transpose(1, 2))
        if attn_mask is not None:
            if attn_mask.dtype == torch.bool:
                weights = weights.masked_fill(attn_mask, float("-inf"))
            else:
                weights = weights + attn_mask
        weights = F.softmax(weights, dim=-1).nan_to_num()
        out = torch.bmm(weights, v).transpose(0, 1).reshape(tgt_len, bsz, dim)
        return self.out_proj(out)


class TransformerEncoderLayer(nn.Module):
    """Post-norm DETR encoder layer (keys `self_attn`, `linear1/2`, `norm1/2`)."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int):
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, nhead)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, src: Tensor, pos: Tensor) -> Tensor:
        q = k = src + pos
        src = self.norm1(src + self.self_attn(q, k, src))
        return self.norm2(src + self.linear2(F.relu(self.linear1(src))))

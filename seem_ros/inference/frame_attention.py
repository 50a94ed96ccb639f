"""The frame engine's attention over stacked slots: queries to the image's level features, and
masked self-attention of rows of slots (the official attention's arithmetic, laid out for one
pass over all objects of a frame)."""
from typing import Optional

from torch import Tensor
from torch.nn import functional as F


def image_attention(attn, queries: Tensor, query_pos: Tensor, src: Tensor, keyed: Tensor, blocked: Tensor) -> Tensor:
    """Cross-attention of (N, C) queries (every row's, stacked) to the image's (HW, 1, C) level
    features src (keyed: src + their positions). blocked: (N, HW), True = masked out (never a whole row).

    Keys and values are projected once for all queries, or, where that is more work (few queries:
    N (C + heads HW) < HW (C + N), about N < C / (heads - 1)), folded into the queries: per head,
    q . (W_k x + b_k) = (W_k^T q) . x + q . b_k, and sum_t a_t (W_v x_t + b_v) = W_v (sum_t a_t x_t)
    + b_v (the weights of a row sum to 1). The same arithmetic; the pixels are never projected."""
    n, dim = queries.shape
    heads = attn.num_heads
    head_dim = dim // heads
    pixels = src.shape[0]
    w_q, w_k, w_v = attn.in_proj_weight.chunk(3)
    b_q, b_k, b_v = attn.in_proj_bias.chunk(3)
    q = (F.linear(queries + query_pos, w_q, b_q) * (float(head_dim) ** -0.5)).view(1, n, heads, head_dim)
    if n * (dim + heads * pixels) < pixels * (dim + n):
        q = q[0].transpose(0, 1)  # (h, N, d)
        folded = q @ w_k.view(heads, head_dim, dim)  # (h, N, C)
        scores = folded @ keyed[:, 0].T + (q @ b_k.view(heads, head_dim, 1))  # (h, N, HW)
        weights = F.softmax(scores.masked_fill(blocked[None], float("-inf")), dim=-1)
        pooled = weights @ src[:, 0]  # (h, N, C)
        out = pooled @ w_v.view(heads, head_dim, dim).transpose(1, 2) + b_v.view(heads, 1, head_dim)  # (h, N, d)
        return attn.out_proj(out.transpose(0, 1).reshape(n, dim))
    k = F.linear(keyed[:, 0], w_k, b_k).view(1, -1, heads, head_dim).transpose(1, 2)  # (1, h, HW, d)
    v = F.linear(src[:, 0], w_v, b_v).view(1, -1, heads, head_dim).transpose(1, 2)
    # fused attention (no (queries x pixels) weight tensor in memory); q is already scaled
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k, v, attn_mask=~blocked[None, None], scale=1.0)
    return attn.out_proj(out.transpose(1, 2).reshape(n, dim))


def self_attention(attn, x: Tensor, pos: Tensor, allowed: Optional[Tensor]) -> Tensor:
    """Plain masked self-attention of (B, L, C) slots (before the residual and norm)."""
    bsz, length, dim = x.shape
    heads = attn.num_heads
    w_q, w_k, w_v = attn.in_proj_weight.chunk(3)
    b_q, b_k, b_v = attn.in_proj_bias.chunk(3)
    # q scaled before the product, as the official attention does (the class logits are sensitive)
    q = (F.linear(x + pos, w_q, b_q) * (float(dim // heads) ** -0.5)).view(bsz, length, heads, -1).transpose(1, 2)
    k = F.linear(x + pos, w_k, b_k).view(bsz, length, heads, -1).transpose(1, 2)
    v = F.linear(x, w_v, b_v).view(bsz, length, heads, -1).transpose(1, 2)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=1.0)
    return attn.out_proj(out.transpose(1, 2).reshape(bsz, length, dim))

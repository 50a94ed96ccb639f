"""SAM ViT image encoder (ViT-B / ViT-L, windowed + global attention with decomposed relative
positions) with SEEM's simple FPN neck that turns the stride-16 map into res2..res5."""
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

# size -> (embed dim, depth, heads, global attention block indices)
VIT_SIZES = {
    "base": (768, 12, 12, (2, 5, 8, 11)),
    "large": (1024, 24, 16, (5, 11, 17, 23)),
    "huge": (1280, 32, 16, (7, 15, 23, 31)),
}
NECK_CHANNELS = (128, 256, 512, 1024)
IMAGE_SIZE = 1024
PATCH_SIZE = 16
WINDOW_SIZE = 14


def _relative_positions(q_size: int, k_size: int, rel_pos: Tensor) -> Tensor:
    max_dist = 2 * max(q_size, k_size) - 1
    if rel_pos.shape[0] != max_dist:
        rel_pos = F.interpolate(rel_pos.t()[None], size=max_dist, mode="linear")[0].t()
    q_coords = torch.arange(q_size, device=rel_pos.device)[:, None] * max(k_size / q_size, 1.0)
    k_coords = torch.arange(k_size, device=rel_pos.device)[None, :] * max(q_size / k_size, 1.0)
    return rel_pos[((q_coords - k_coords) + (k_size - 1) * max(q_size / k_size, 1.0)).long()]


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, input_size: Tuple[int, int]):
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * input_size[0] - 1, head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * input_size[1] - 1, head_dim))

    def forward(self, x: Tensor) -> Tensor:
        b, h, w, _ = x.shape
        qkv = self.qkv(x).reshape(b, h * w, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.reshape(3, b * self.num_heads, h * w, -1).unbind(0)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        rh = _relative_positions(h, h, self.rel_pos_h)
        rw = _relative_positions(w, w, self.rel_pos_w)
        rq = q.reshape(b * self.num_heads, h, w, -1)
        rel_h = torch.einsum("bhwc,hkc->bhwk", rq, rh)
        rel_w = torch.einsum("bhwc,wkc->bhwk", rq, rw)
        attn = (attn.view(-1, h, w, h, w) + rel_h[:, :, :, :, None] + rel_w[:, :, :, None, :]).view(-1, h * w, h * w)
        out = (attn.softmax(dim=-1) @ v).view(b, self.num_heads, h, w, -1).permute(0, 2, 3, 1, 4).reshape(b, h, w, -1)
        return self.proj(out)


class MLPBlock(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.lin1 = nn.Linear(dim, hidden)
        self.lin2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.lin2(F.gelu(self.lin1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, window_size: int, grid: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        size = (window_size, window_size) if window_size else (grid, grid)
        self.attn = Attention(dim, num_heads, size)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, dim * 4)
        self.window_size = window_size

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.window_size:
            h, w = x.shape[1:3]
            windows, padded = _window_partition(x, self.window_size)
            x = _window_unpartition(self.attn(windows), self.window_size, padded, (h, w))
        else:
            x = self.attn(x)
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


def _window_partition(x: Tensor, ws: int) -> Tuple[Tensor, Tuple[int, int]]:
    b, h, w, c = x.shape
    ph, pw = (ws - h % ws) % ws, (ws - w % ws) % ws
    if ph or pw:
        x = F.pad(x, (0, 0, 0, pw, 0, ph))
    hp, wp = h + ph, w + pw
    x = x.view(b, hp // ws, ws, wp // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws, ws, c), (hp, wp)


def _window_unpartition(windows: Tensor, ws: int, padded: Tuple[int, int], hw: Tuple[int, int]) -> Tensor:
    hp, wp = padded
    b = windows.shape[0] // (hp * wp // ws // ws)
    x = windows.view(b, hp // ws, wp // ws, ws, ws, -1).permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, -1)
    return x[:, : hw[0], : hw[1]].contiguous()


class PatchEmbed(nn.Module):
    def __init__(self, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, PATCH_SIZE, stride=PATCH_SIZE)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class SimpleFPN(nn.Module):
    """Stride-16 ViT map -> strides 4, 8, 16, 32 (transposed convs up, strided conv down)."""

    def __init__(self, in_dim: int, out_dims: Tuple[int, ...] = NECK_CHANNELS):
        super().__init__()
        c4 = max(out_dims[0] * 2, in_dim // 2)
        self.down_4 = nn.Sequential(
            nn.ConvTranspose2d(in_dim, c4, 2, stride=2), nn.GroupNorm(1, c4), nn.GELU(),
            nn.ConvTranspose2d(c4, c4 // 2, 2, stride=2), nn.GroupNorm(1, c4 // 2),
            nn.Conv2d(c4 // 2, out_dims[0], 1), nn.GroupNorm(1, out_dims[0]), nn.GELU())
        c8 = max(out_dims[1], in_dim // 2)
        self.down_8 = nn.Sequential(
            nn.ConvTranspose2d(in_dim, c8, 2, stride=2), nn.GroupNorm(1, c8),
            nn.Conv2d(c8, out_dims[1], 1), nn.GroupNorm(1, out_dims[1]), nn.GELU())
        self.down_16 = nn.Sequential(nn.Conv2d(in_dim, out_dims[2], 1), nn.GroupNorm(1, out_dims[2]), nn.GELU())
        c32 = max(out_dims[3], in_dim * 2)
        self.down_32 = nn.Sequential(
            nn.Conv2d(in_dim, c32, 2, stride=2), nn.GroupNorm(1, c32),
            nn.Conv2d(c32, out_dims[3], 1), nn.GroupNorm(1, out_dims[3]), nn.GELU())

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        return {"res2": self.down_4(x), "res3": self.down_8(x), "res4": self.down_16(x), "res5": self.down_32(x)}


class SamViT(nn.Module):
    size_divisibility = IMAGE_SIZE

    def __init__(self, size: str):
        super().__init__()
        if size not in VIT_SIZES:
            raise ValueError(f"unknown SAM ViT size {size!r} (known: {', '.join(VIT_SIZES)})")
        dim, depth, heads, global_blocks = VIT_SIZES[size]
        grid = IMAGE_SIZE // PATCH_SIZE
        self.patch_embed = PatchEmbed(dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, dim))
        self.blocks = nn.ModuleList(
            Block(dim, heads, 0 if i in global_blocks else WINDOW_SIZE, grid) for i in range(depth))
        self.neck = SimpleFPN(dim)

    @property
    def out_channels(self) -> Dict[str, int]:
        return {f"res{i + 2}": c for i, c in enumerate(NECK_CHANNELS)}

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        x = self.patch_embed(x)
        pos: Optional[Tensor] = self.pos_embed
        if pos.shape[1:3] != x.shape[1:3]:
            # inputs larger than 1024 (the official code only runs 1024x1024): resize the table
            pos = F.interpolate(pos.permute(0, 3, 1, 2), size=x.shape[1:3], mode="bicubic",
                                align_corners=False).permute(0, 2, 3, 1)
        x = x + pos
        for block in self.blocks:
            x = block(x)
        return self.neck(x.permute(0, 3, 1, 2))

"""DaViT (dual attention: windowed spatial attention + channel-group attention) backbone of the
DaViT-d3 SEEM variant. Tokens are kept as (B, H, W, C)."""
from collections import OrderedDict
from typing import Dict, Optional, Sequence

from torch import Tensor, nn
from torch.nn import functional as F

WINDOW_SIZE = 7


class DepthWiseConv2d(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dw = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.dw(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class PreNorm(nn.Module):
    """x + fn(norm(x)); keys `norm.*` (when normed) and `fn.*`."""

    def __init__(self, norm: Optional[nn.Module], fn: nn.Module):
        super().__init__()
        self.norm = norm
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return x + self.fn(self.norm(x) if self.norm is not None else x)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(OrderedDict([("fc1", nn.Linear(dim, hidden)), ("act", nn.GELU()),
                                              ("fc2", nn.Linear(hidden, dim))]))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class WindowAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, window_size: int):
        super().__init__()
        self.num_heads, self.window_size = num_heads, window_size
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, h, w, c = x.shape
        ws = self.window_size
        x = F.pad(x, (0, 0, 0, (ws - w % ws) % ws, 0, (ws - h % ws) % ws))
        hp, wp = x.shape[1:3]
        windows = x.view(b, hp // ws, ws, wp // ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws, c)
        qkv = self.qkv(windows).reshape(windows.shape[0], ws * ws, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        out = ((q @ k.transpose(-2, -1)).softmax(dim=-1) @ v).transpose(1, 2).reshape(-1, ws * ws, c)
        out = self.proj(out).view(b, hp // ws, wp // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, c)
        return out[:, :h, :w].contiguous()


class ChannelAttention(nn.Module):
    def __init__(self, dim: int, groups: int):
        super().__init__()
        self.groups = groups
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, h, w, c = x.shape
        n = h * w
        qkv = self.qkv(x.reshape(b, n, c)).reshape(b, n, 3, self.groups, c // self.groups).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * (n ** -0.5), qkv[1], qkv[2]
        attention = (q.transpose(-1, -2) @ k).softmax(dim=-1)
        out = (attention @ v.transpose(-1, -2)).transpose(-1, -2).transpose(1, 2).reshape(b, n, c)
        return self.proj(out).view(b, h, w, c)


class DualBlock(nn.Module):
    """conv -> attention -> conv -> FFN, each residual; `attention` is spatial or channel."""

    def __init__(self, dim: int, attn_name: str, attention: nn.Module, mlp_ratio: float = 4.0):
        super().__init__()
        self.conv1 = PreNorm(None, DepthWiseConv2d(dim))
        self.attn_name = attn_name
        self.add_module(attn_name, PreNorm(nn.LayerNorm(dim), attention))
        self.conv2 = PreNorm(None, DepthWiseConv2d(dim))
        self.ffn = PreNorm(nn.LayerNorm(dim), Mlp(dim, int(dim * mlp_ratio)))

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        x = getattr(self, self.attn_name)(x)
        return self.ffn(self.conv2(x))


class DualStage(nn.Module):
    def __init__(self, dim: int, heads: int, groups: int):
        super().__init__()
        self.spatial_block = DualBlock(dim, "window_attn", WindowAttention(dim, heads, WINDOW_SIZE))
        self.channel_block = DualBlock(dim, "channel_attn", ChannelAttention(dim, groups))

    def forward(self, x: Tensor) -> Tensor:
        return self.channel_block(self.spatial_block(x))


class ConvEmbed(nn.Module):
    def __init__(self, in_chans: int, embed_dim: int, kernel: int, stride: int, padding: int, pre_norm: bool):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel, stride=stride, padding=padding)
        self.norm = nn.LayerNorm(in_chans if pre_norm else embed_dim)
        self.pre_norm = pre_norm

    def forward(self, x: Tensor, is_stem: bool) -> Tensor:
        """stem: (B, 3, H, W); later stages: (B, H, W, C). Returns (B, H', W', C')."""
        if not is_stem:
            if self.pre_norm:
                x = self.norm(x)
            x = x.permute(0, 3, 1, 2)
        x = self.proj(x).permute(0, 2, 3, 1)
        return x if self.pre_norm else self.norm(x)


class DaViT(nn.Module):
    size_divisibility = 32

    def __init__(self, spec: dict):
        super().__init__()
        dims: Sequence[int] = spec["DIM_EMBED"]
        self.embed_dims = list(dims)
        self.convs = nn.ModuleList(
            ConvEmbed(3 if i == 0 else dims[i - 1], dims[i], spec["PATCH_SIZE"][i], spec["PATCH_STRIDE"][i],
                      spec["PATCH_PADDING"][i], spec["PATCH_PRENORM"][i])
            for i in range(len(dims)))
        self.blocks = nn.ModuleList(
            nn.Sequential(*[DualStage(dims[i], spec["NUM_HEADS"][i], spec["NUM_GROUPS"][i])
                            for _ in range(spec["DEPTHS"][i])])
            for i in range(len(dims)))

    @property
    def out_channels(self) -> Dict[str, int]:
        return {f"res{i + 2}": c for i, c in enumerate(self.embed_dims)}

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        outs = {}
        for i, (conv, block) in enumerate(zip(self.convs, self.blocks)):
            x = block(conv(x, is_stem=i == 0))
            outs[f"res{i + 2}"] = x.permute(0, 3, 1, 2).contiguous()
        return outs

"""FocalNet backbones of SEEM: `focal_dw` (Focal-T, depthwise convs around each block) and
`focal` (Focal-L). Outputs res2..res5 feature maps (strides 4..32)."""
from dataclasses import dataclass, field
from typing import Dict, List

import torch
from torch import Tensor, nn
from torch.nn import functional as F


@dataclass
class FocalConfig:
    embed_dim: int = 96
    depths: List[int] = field(default_factory=lambda: [2, 2, 6, 2])
    focal_levels: List[int] = field(default_factory=lambda: [3, 3, 3, 3])
    focal_windows: List[int] = field(default_factory=lambda: [3, 3, 3, 3])
    mlp_ratio: float = 4.0
    use_postln: bool = True
    use_layerscale: bool = True
    scaling_modulator: bool = True
    # focal_dw: a 3x3 depthwise conv before the modulation and before the MLP, stem padding 3.
    depthwise: bool = True

    @classmethod
    def from_official(cls, backbone_cfg: dict) -> "FocalConfig":
        f = backbone_cfg["FOCAL"]
        if not f.get("USE_CONV_EMBED", True) or f.get("USE_POSTLN_IN_MODULATION", False):
            raise ValueError("only the released FocalNet settings (conv embed, no post-LN in modulation) are supported")
        return cls(embed_dim=f["EMBED_DIM"], depths=list(f["DEPTHS"]), focal_levels=list(f["FOCAL_LEVELS"]),
                   focal_windows=list(f["FOCAL_WINDOWS"]), mlp_ratio=f["MLP_RATIO"], use_postln=f["USE_POSTLN"],
                   use_layerscale=f["USE_LAYERSCALE"], scaling_modulator=f.get("SCALING_MODULATOR", False),
                   depthwise=backbone_cfg["NAME"] == "focal_dw")


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class FocalModulation(nn.Module):
    def __init__(self, dim: int, focal_level: int, focal_window: int, scaling_modulator: bool):
        super().__init__()
        self.focal_level = focal_level
        self.scaling_modulator = scaling_modulator
        self.f = nn.Linear(dim, 2 * dim + focal_level + 1)
        self.h = nn.Conv2d(dim, dim, kernel_size=1)
        self.proj = nn.Linear(dim, dim)
        self.focal_layers = nn.ModuleList()
        for k in range(focal_level):
            kernel = 2 * k + focal_window
            self.focal_layers.append(nn.Sequential(
                nn.Conv2d(dim, dim, kernel, groups=dim, padding=kernel // 2, bias=False), nn.GELU()))

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, H, W, C)."""
        c = x.shape[-1]
        x = self.f(x).permute(0, 3, 1, 2)
        q, ctx, gates = torch.split(x, (c, c, self.focal_level + 1), 1)
        ctx_all = 0
        for level, layer in enumerate(self.focal_layers):
            ctx = layer(ctx)
            ctx_all = ctx_all + ctx * gates[:, level:level + 1]
        ctx_global = F.gelu(ctx.mean((2, 3), keepdim=True))
        ctx_all = ctx_all + ctx_global * gates[:, self.focal_level:]
        if self.scaling_modulator:
            ctx_all = ctx_all / (self.focal_level + 1)
        return self.proj((q * self.h(ctx_all)).permute(0, 2, 3, 1))


class FocalBlock(nn.Module):
    def __init__(self, dim: int, cfg: FocalConfig, focal_level: int, focal_window: int):
        super().__init__()
        self.cfg = cfg
        if cfg.depthwise:
            self.dw1 = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
            self.dw2 = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.LayerNorm(dim)
        self.modulation = FocalModulation(dim, focal_level, focal_window, cfg.scaling_modulator)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio))
        if cfg.use_layerscale:
            self.gamma_1 = nn.Parameter(1e-4 * torch.ones(dim))
            self.gamma_2 = nn.Parameter(1e-4 * torch.ones(dim))
        else:
            self.gamma_1 = self.gamma_2 = 1.0

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, C, H, W) -> (B, C, H, W)."""
        if self.cfg.depthwise:
            x = x + self.dw1(x)
        x = x.permute(0, 2, 3, 1)  # B H W C
        postln = self.cfg.use_postln
        shortcut = x
        y = self.modulation(x if postln else self.norm1(x))
        if self.cfg.depthwise:
            x = shortcut + self.gamma_1 * y
            if postln:
                x = self.norm1(x)
            x = x.permute(0, 3, 1, 2)
            x = (x + self.dw2(x)).permute(0, 2, 3, 1)
            if postln:
                x = self.norm2(x + self.gamma_2 * self.mlp(x))
            else:
                x = x + self.gamma_2 * self.mlp(self.norm2(x))
        else:
            x = shortcut + self.gamma_1 * (self.norm1(y) if postln else y)
            if postln:
                x = x + self.gamma_2 * self.norm2(self.mlp(x))
            else:
                x = x + self.gamma_2 * self.mlp(self.norm2(x))
        return x.permute(0, 3, 1, 2)


class PatchEmbed(nn.Module):
    """Overlapping conv patch embedding (stem: 7x7 stride 4; between stages: 3x3 stride 2)."""

    def __init__(self, in_chans: int, embed_dim: int, is_stem: bool, stem_padding: int):
        super().__init__()
        kernel, stride, padding = (7, 4, stem_padding) if is_stem else (3, 2, 1)
        self.stride = stride
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel, stride=stride, padding=padding)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        _, _, h, w = x.shape
        # The official module pads by patch_size (4 for the stem, 2 for merges) to a multiple.
        patch = 4 if self.stride == 4 else 2
        if w % patch:
            x = F.pad(x, (0, patch - w % patch))
        if h % patch:
            x = F.pad(x, (0, 0, 0, patch - h % patch))
        x = self.proj(x)
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class FocalStage(nn.Module):
    def __init__(self, dim: int, depth: int, cfg: FocalConfig, focal_level: int, focal_window: int,
                 downsample: bool):
        super().__init__()
        self.blocks = nn.ModuleList(FocalBlock(dim, cfg, focal_level, focal_window) for _ in range(depth))
        self.downsample = PatchEmbed(dim, 2 * dim, is_stem=False, stem_padding=0) if downsample else None

    def forward(self, x: Tensor):
        for block in self.blocks:
            x = block(x)
        return x, (self.downsample(x) if self.downsample is not None else x)


class FocalNet(nn.Module):
    size_divisibility = 32

    def __init__(self, cfg: FocalConfig):
        super().__init__()
        self.cfg = cfg
        num_stages = len(cfg.depths)
        self.num_features = [cfg.embed_dim * 2 ** i for i in range(num_stages)]
        self.patch_embed = PatchEmbed(3, cfg.embed_dim, is_stem=True, stem_padding=3 if cfg.depthwise else 2)
        self.layers = nn.ModuleList(
            FocalStage(self.num_features[i], cfg.depths[i], cfg, cfg.focal_levels[i], cfg.focal_windows[i],
                       downsample=i < num_stages - 1)
            for i in range(num_stages))
        for i in range(num_stages):
            self.add_module(f"norm{i}", nn.LayerNorm(self.num_features[i]))

    @property
    def out_channels(self) -> Dict[str, int]:
        return {f"res{i + 2}": c for i, c in enumerate(self.num_features)}

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        x = self.patch_embed(x)
        outs = {}
        for i, stage in enumerate(self.layers):
            out, x = stage(x)
            norm = getattr(self, f"norm{i}")
            outs[f"res{i + 2}"] = norm(out.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).contiguous()
        return outs

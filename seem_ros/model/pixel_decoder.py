"""FPN pixel decoder with a transformer encoder on the coarsest level
(`transformer_encoder_fpn`, used by the Focal and DaViT SEEM variants)."""
from typing import Dict, List, Tuple

from torch import Tensor, nn
from torch.nn import functional as F

from seem_ros.model.layers import ConvNorm, PositionEmbeddingSine, TransformerEncoderLayer, group_norm


class TransformerEncoder(nn.Module):
    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(d_model, nhead, dim_feedforward) for _ in range(num_layers))

    def forward(self, src: Tensor, pos: Tensor) -> Tensor:
        for layer in self.layers:
            src = layer(src, pos)
        return src


class TransformerEncoderOnly(nn.Module):
    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, num_layers: int):
        super().__init__()
        self.encoder = TransformerEncoder(d_model, nhead, dim_feedforward, num_layers)

    def forward(self, src: Tensor, pos: Tensor) -> Tensor:
        b, c, h, w = src.shape
        out = self.encoder(src.flatten(2).permute(2, 0, 1), pos.flatten(2).permute(2, 0, 1))
        return out.permute(1, 2, 0).reshape(b, c, h, w)


class TransformerEncoderPixelDecoder(nn.Module):
    """Returns (mask_features at stride 4, [3 multi-scale features at strides 32, 16, 8])."""

    num_multiscale_levels = 3

    def __init__(self, in_channels: Dict[str, int], conv_dim: int, mask_dim: int,
                 nheads: int, dim_feedforward: int, num_encoder_layers: int):
        super().__init__()
        self.in_features = sorted(in_channels, key=lambda k: int(k[3:]))  # res2 .. res5
        channels = [in_channels[k] for k in self.in_features]
        last = len(self.in_features)
        self.lateral_convs: List[nn.Module] = []
        self.output_convs: List[nn.Module] = []
        for idx, ch in enumerate(channels[:-1]):
            lateral = ConvNorm(ch, conv_dim, kernel_size=1, bias=False, norm=group_norm(conv_dim))
            output = ConvNorm(conv_dim, conv_dim, kernel_size=3, padding=1, bias=False,
                              norm=group_norm(conv_dim), activation=F.relu)
            self.add_module(f"adapter_{idx + 1}", lateral)
            self.add_module(f"layer_{idx + 1}", output)
            self.lateral_convs.append(lateral)
            self.output_convs.append(output)
        self.mask_features = ConvNorm(conv_dim, mask_dim, kernel_size=3, padding=1)
        self.input_proj = ConvNorm(channels[-1], conv_dim, kernel_size=1)
        self.transformer = TransformerEncoderOnly(conv_dim, nheads, dim_feedforward, num_encoder_layers)
        self.pe_layer = PositionEmbeddingSine(conv_dim // 2)
        top = ConvNorm(conv_dim, conv_dim, kernel_size=3, padding=1, bias=False,
                       norm=group_norm(conv_dim), activation=F.relu)
        self.add_module(f"layer_{last}", top)
        # top-down order: coarsest first
        self.lateral_convs = [None] + self.lateral_convs[::-1]
        self.output_convs = [top] + self.output_convs[::-1]

    def forward(self, features: Dict[str, Tensor]) -> Tuple[Tensor, List[Tensor]]:
        multi_scale: List[Tensor] = []
        y = None
        for idx, name in enumerate(self.in_features[::-1]):
            x = features[name]
            if idx == 0:
                y = self.output_convs[0](self.transformer(self.input_proj(x), self.pe_layer(x)))
            else:
                lateral = self.lateral_convs[idx](x)
                y = self.output_convs[idx](lateral + F.interpolate(y, size=lateral.shape[-2:], mode="nearest"))
            if len(multi_scale) < self.num_multiscale_levels:
                multi_scale.append(y)
        return self.mask_features(y), multi_scale

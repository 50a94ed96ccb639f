"""The SEEM model: backbone -> pixel decoder -> SEEM decoder, with the language encoder inside the
decoder. Module names reproduce the official state_dict keys exactly (no `model.` prefix)."""
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from seem_ros.model.backbone_davit import DaViT
from seem_ros.model.backbone_focal import FocalConfig, FocalNet
from seem_ros.model.backbone_sam import SamViT
from seem_ros.model.decoder import DecoderConfig, SEEMDecoder
from seem_ros.model.language_encoder import LanguageEncoder
from seem_ros.model.pixel_decoder import TransformerEncoderPixelDecoder
from seem_ros.model.pixel_decoder_deform import MSDeformAttnPixelDecoder
from seem_ros.model.tokenizer import ClipTokenizer

PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)
NUM_CLASSES = 133


@dataclass
class SeemConfig:
    """The parts of an official SEEM YAML config that shape the inference model."""
    backbone_name: str
    decoder_version: int
    backbone: dict
    encoder_name: str
    conv_dim: int
    mask_dim: int
    encoder_layers: int
    decoder: DecoderConfig
    text_context_length: int = 77
    text_vocab_size: int = 49408
    text_width: int = 512
    text_layers: int = 12
    text_heads: int = 8
    size_divisibility: int = 32
    object_mask_threshold: float = 0.8
    overlap_threshold: float = 0.8
    pixel_mean: Tuple[float, ...] = PIXEL_MEAN
    pixel_std: Tuple[float, ...] = PIXEL_STD

    @classmethod
    def from_official(cls, cfg: dict) -> "SeemConfig":
        m = cfg["MODEL"]
        enc, dec, text = m["ENCODER"], m["DECODER"], m["TEXT"]
        if m.get("NAME") not in ("seem_model_v1", "seem_model_v0") or dec.get("NAME") not in ("seem_v1", "seem_v0"):
            raise ValueError(f"not a SEEM config: MODEL.NAME={m.get('NAME')!r}, DECODER.NAME={dec.get('NAME')!r}")
        arch = cfg.get("ATTENTION_ARCH", {})
        conv_dim = enc["CONVS_DIM"]
        decoder = DecoderConfig(
            hidden_dim=dec["HIDDEN_DIM"], dim_proj=m["DIM_PROJ"], num_queries=dec["NUM_OBJECT_QUERIES"],
            nheads=dec["NHEADS"], dim_feedforward=dec["DIM_FEEDFORWARD"], num_layers=dec["DEC_LAYERS"] - 1,
            mask_dim=enc["MASK_DIM"], max_spatial_len=tuple(dec["MAX_SPATIAL_LEN"]),
            num_spatial_memories=arch.get("SPATIAL_MEMORIES", 32), queries_per_prompt=arch.get("QUERY_NUMBER", 3),
            in_channels=conv_dim, enforce_input_proj=dec.get("ENFORCE_INPUT_PROJ", False))
        test = dec.get("TEST", {})
        inp = cfg.get("INPUT", {})
        return cls(
            backbone_name=m["BACKBONE"]["NAME"], decoder_version=0 if dec["NAME"] == "seem_v0" else 1,
            backbone=m["BACKBONE"], encoder_name=enc["NAME"],
            conv_dim=conv_dim, mask_dim=enc["MASK_DIM"], encoder_layers=enc["TRANSFORMER_ENC_LAYERS"],
            decoder=decoder, text_context_length=text["CONTEXT_LENGTH"], text_width=text["WIDTH"],
            text_layers=text["LAYERS"], text_heads=text["HEADS"],
            size_divisibility=dec.get("SIZE_DIVISIBILITY", 32),
            object_mask_threshold=test.get("OBJECT_MASK_THRESHOLD", 0.8),
            overlap_threshold=test.get("OVERLAP_THRESHOLD", 0.8),
            pixel_mean=tuple(inp.get("PIXEL_MEAN", PIXEL_MEAN)), pixel_std=tuple(inp.get("PIXEL_STD", PIXEL_STD)))


def build_backbone(cfg: SeemConfig) -> nn.Module:
    if cfg.backbone_name in ("focal", "focal_dw"):
        return FocalNet(FocalConfig.from_official(cfg.backbone))
    if cfg.backbone_name == "vit":
        return SamViT(cfg.backbone["VIT"]["SIZE"])
    if cfg.backbone_name == "davit":
        return DaViT(cfg.backbone["DAVIT"])
    raise NotImplementedError(f"backbone {cfg.backbone_name!r} is not implemented "
                              f"(available: focal, focal_dw, vit, davit)")


def build_pixel_decoder(cfg: SeemConfig, in_channels: Dict[str, int]) -> nn.Module:
    if cfg.encoder_name == "transformer_encoder_fpn":
        return TransformerEncoderPixelDecoder(in_channels, cfg.conv_dim, cfg.mask_dim, cfg.decoder.nheads,
                                              cfg.decoder.dim_feedforward, cfg.encoder_layers)
    if cfg.encoder_name == "transformer_encoder_deform":
        return MSDeformAttnPixelDecoder(in_channels, cfg.conv_dim, cfg.mask_dim, cfg.decoder.nheads,
                                        cfg.encoder_layers)
    raise NotImplementedError(f"pixel decoder {cfg.encoder_name!r} is not implemented "
                              f"(available: transformer_encoder_fpn, transformer_encoder_deform)")


class SemSegHead(nn.Module):
    def __init__(self, pixel_decoder: nn.Module, predictor: SEEMDecoder):
        super().__init__()
        self.pixel_decoder = pixel_decoder
        self.predictor = predictor


class Criterion(nn.Module):
    """Holds the training-only `empty_weight` buffer so official checkpoints load strictly."""

    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.register_buffer("empty_weight", torch.ones(num_classes + 1))


class SEEM(nn.Module):
    def __init__(self, cfg: SeemConfig, tokenizer: Optional[ClipTokenizer] = None):
        super().__init__()
        self.cfg = cfg
        self.backbone = build_backbone(cfg)
        lang = LanguageEncoder(tokenizer or ClipTokenizer(context_length=cfg.text_context_length),
                               cfg.text_context_length, cfg.text_vocab_size, cfg.text_width, cfg.text_layers,
                               cfg.text_heads, cfg.decoder.dim_proj)
        pixel_decoder = build_pixel_decoder(cfg, self.backbone.out_channels)
        self.sem_seg_head = SemSegHead(pixel_decoder, SEEMDecoder(cfg.decoder, lang))
        self.criterion = Criterion()
        self.register_buffer("dilation_kernel", torch.ones((1, 1, 3, 3)))
        self.register_buffer("pixel_mean", torch.tensor(cfg.pixel_mean).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(cfg.pixel_std).view(-1, 1, 1), persistent=False)

    @property
    def decoder(self) -> SEEMDecoder:
        return self.sem_seg_head.predictor

    @property
    def language(self) -> LanguageEncoder:
        return self.sem_seg_head.predictor.lang_encoder

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def normalize_and_pad(self, image_chw: Tensor) -> Tensor:
        """uint8/float RGB (3, H, W) 0..255 -> normalised (1, 3, Hp, Wp), zero-padded bottom/right."""
        x = (image_chw.to(self.device).float() - self.pixel_mean) / self.pixel_std
        return pad_to_multiple(x, self.cfg.size_divisibility)[None]

    @property
    def image_encoder_dtype(self) -> torch.dtype:
        return next(self.backbone.parameters()).dtype

    def hold_image_encoder_in(self, dtype: torch.dtype) -> None:
        """The backbone's and pixel decoder's weights in dtype (bf16 where the CPU computes it
        natively: the image encoder is most of a frame's work); the rest of the model stays fp32."""
        self.backbone.to(dtype)
        self.sem_seg_head.pixel_decoder.to(dtype)

    def encode_image(self, image: Tensor) -> Tuple[Tensor, List[Tensor]]:
        """(1, 3, Hp, Wp) normalised -> (mask_features, multi_scale_features). The expensive part:
        run once per image, then prompt the decoder as often as needed. An image encoder held in
        another type (hold_image_encoder_in) computes in it and gives fp32 features."""
        held = self.image_encoder_dtype
        if held == torch.float32:
            return self.sem_seg_head.pixel_decoder(self.backbone(image))
        mask_features, multi_scale = self.sem_seg_head.pixel_decoder(self.backbone(image.to(held)))
        return mask_features.float(), [x.float() for x in multi_scale]


def pad_to_multiple(x: Tensor, divisor: int) -> Tensor:
    """Zero-pad the last two dims up to a multiple of `divisor` (bottom/right), like ImageList."""
    h, w = x.shape[-2:]
    ph = (divisor - h % divisor) % divisor
    pw = (divisor - w % divisor) % divisor
    return F.pad(x, (0, pw, 0, ph)) if (ph or pw) else x

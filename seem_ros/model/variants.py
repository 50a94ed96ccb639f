"""The released SEEM configurations, in the official YAML layout (the subset that shapes inference)
so that a user's own official YAML can be used interchangeably (`SeemConfig.from_official`)."""
import copy
from typing import Dict

_FOCAL_COMMON = {"PATCH_SIZE": 4, "MLP_RATIO": 4.0, "PATCH_NORM": True, "USE_CONV_EMBED": True,
                 "SCALING_MODULATOR": True, "USE_POSTLN": True, "USE_POSTLN_IN_MODULATION": False,
                 "USE_LAYERSCALE": True}

_BASE = {
    "MODEL": {
        "NAME": "seem_model_v1",
        "DIM_PROJ": 512,
        "TEXT": {"CONTEXT_LENGTH": 77, "WIDTH": 512, "HEADS": 8, "LAYERS": 12},
        "ENCODER": {"NAME": "transformer_encoder_fpn", "CONVS_DIM": 512, "MASK_DIM": 512, "TRANSFORMER_ENC_LAYERS": 6},
        "DECODER": {"NAME": "seem_v1", "HIDDEN_DIM": 512, "NUM_OBJECT_QUERIES": 101, "NHEADS": 8,
                    "DIM_FEEDFORWARD": 2048, "DEC_LAYERS": 10, "MAX_SPATIAL_LEN": [512, 512, 512, 512],
                    "SIZE_DIVISIBILITY": 32, "ENFORCE_INPUT_PROJ": False,
                    "TEST": {"OVERLAP_THRESHOLD": 0.8, "OBJECT_MASK_THRESHOLD": 0.8}},
    },
    "ATTENTION_ARCH": {"SPATIAL_MEMORIES": 32, "QUERY_NUMBER": 3},
    "INPUT": {"PIXEL_MEAN": [123.675, 116.28, 103.53], "PIXEL_STD": [58.395, 57.12, 57.375]},
}

_BACKBONES = {
    "focalt": {"NAME": "focal_dw", "FOCAL": dict(_FOCAL_COMMON, EMBED_DIM=96, DEPTHS=[2, 2, 6, 2],
                                                 FOCAL_LEVELS=[3, 3, 3, 3], FOCAL_WINDOWS=[3, 3, 3, 3])},
    "focall": {"NAME": "focal", "FOCAL": dict(_FOCAL_COMMON, EMBED_DIM=192, DEPTHS=[2, 2, 18, 2],
                                              FOCAL_LEVELS=[4, 4, 4, 4], FOCAL_WINDOWS=[3, 3, 3, 3])},
    "samvitb": {"NAME": "vit", "VIT": {"SIZE": "base"}},
    "samvitl": {"NAME": "vit", "VIT": {"SIZE": "large"}},
    "davitd3": {"NAME": "davit", "DAVIT": {
        "PATCH_SIZE": [7, 2, 2, 2], "PATCH_STRIDE": [4, 2, 2, 2], "PATCH_PADDING": [3, 0, 0, 0],
        "PATCH_PRENORM": [False, True, True, True], "DIM_EMBED": [128, 256, 512, 1024],
        "NUM_HEADS": [4, 8, 16, 32], "NUM_GROUPS": [4, 8, 16, 32], "DEPTHS": [1, 1, 9, 1]}},
}

# variant name -> (backbone, decoder version); names follow the released files seem_<variant>.pt
VARIANTS = {
    "focalt_v1": ("focalt", 1), "focall_v1": ("focall", 1), "samvitb_v1": ("samvitb", 1),
    "samvitl_v1": ("samvitl", 1), "davitd3_v1": ("davitd3", 1), "focalt_v0": ("focalt", 0),
}


def official_config(variant: str) -> Dict:
    if variant not in VARIANTS:
        raise ValueError(f"unknown SEEM variant {variant!r}; known: {', '.join(VARIANTS)}")
    backbone, version = VARIANTS[variant]
    cfg = copy.deepcopy(_BASE)
    cfg["MODEL"]["BACKBONE"] = copy.deepcopy(_BACKBONES[backbone])
    if backbone.startswith("samvit"):
        cfg["MODEL"]["ENCODER"]["NAME"] = "transformer_encoder_deform"
        cfg["MODEL"]["DECODER"]["SIZE_DIVISIBILITY"] = 1024
    if version == 0:
        cfg["MODEL"]["NAME"] = "seem_model_v0"
        cfg["MODEL"]["DECODER"]["NAME"] = "seem_v0"
    return cfg

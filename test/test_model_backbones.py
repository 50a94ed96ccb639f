"""Backbones and pixel decoders the tiny reference (a Focal model) does not cover numerically."""
import numpy as np
import torch

from seem_ros.inference.official_layout import OfficialLayoutPredictor

from seem_ros.inference.visual_prompt import VisualPrompt
from seem_ros.model.pixel_decoder_deform import deformable_attention
from seem_ros.model.seem import SEEM
from seem_ros.weights import config_for


def bilinear_zero_padded(feature, x, y):
    """Direct bilinear read of feature (D, H, W) at pixel coords (x, y), zeros outside."""
    d, h, w = feature.shape
    x0, y0 = int(np.floor(x)), int(np.floor(y))
    out = torch.zeros(d, dtype=torch.float64)
    for yy, xx in ((y0, x0), (y0, x0 + 1), (y0 + 1, x0), (y0 + 1, x0 + 1)):
        if 0 <= yy < h and 0 <= xx < w:
            out += feature[:, yy, xx].double() * (1 - abs(x - xx)) * (1 - abs(y - yy))
    return out


def test_deformable_attention_matches_direct_sampling():
    g = torch.Generator().manual_seed(3)
    shapes = [(5, 7), (3, 4)]
    n, heads, dim, lq, points = 2, 2, 3, 4, 3
    value = torch.randn(n, sum(h * w for h, w in shapes), heads, dim, generator=g)
    locations = torch.rand(n, lq, heads, len(shapes), points, 2, generator=g) * 1.2 - 0.1
    weights = torch.rand(n, lq, heads, len(shapes), points, generator=g)
    out = deformable_attention(value, shapes, locations, weights)
    starts = np.cumsum([0] + [h * w for h, w in shapes])
    for b in range(n):
        for q in range(lq):
            for m in range(heads):
                expected = torch.zeros(dim, dtype=torch.float64)
                for level, (h, w) in enumerate(shapes):
                    feat = value[b, starts[level]:starts[level + 1], m].t().reshape(dim, h, w)
                    for p in range(points):
                        # align_corners=False: normalised 0..1 spans pixel edges
                        x = float(locations[b, q, m, level, p, 0]) * w - 0.5
                        y = float(locations[b, q, m, level, p, 1]) * h - 0.5
                        expected += float(weights[b, q, m, level, p]) * bilinear_zero_padded(feat, x, y)
                got = out[b, q, m * dim:(m + 1) * dim].double()
                assert torch.allclose(got, expected, atol=1e-5), (b, q, m)


def test_sam_vit_b_runs_end_to_end():
    torch.manual_seed(0)
    model = SEEM(config_for("samvitb_v1")).eval()
    predictor = OfficialLayoutPredictor(model, class_names=["thing", "stuff"], num_thing_classes=1)
    image = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    predictor.set_image(image)
    f = predictor.features
    assert f.padded_hw == (1024, 1024)  # SAM configs pad to 1024
    assert [tuple(m.shape[-2:]) for m in f.multi_scale] == [(32, 32), (64, 64), (128, 128)]
    result = predictor.predict_visual([VisualPrompt(points=[(100, 120, 1)])])[0]
    assert result.mask.shape == (240, 320) and np.isfinite(result.low_res_logits.numpy()).all()


def test_davit_d3_feature_pyramid():
    torch.manual_seed(0)
    model = SEEM(config_for("davitd3_v1")).eval()
    with torch.no_grad():
        features = model.backbone(torch.randn(1, 3, 96, 160))
        mask_features, multi_scale = model.sem_seg_head.pixel_decoder(features)
    assert {k: tuple(v.shape) for k, v in features.items()} == {
        "res2": (1, 128, 24, 40), "res3": (1, 256, 12, 20), "res4": (1, 512, 6, 10), "res5": (1, 1024, 3, 5)}
    assert tuple(mask_features.shape) == (1, 512, 24, 40)
    assert all(torch.isfinite(m).all() for m in multi_scale)

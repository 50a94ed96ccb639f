"""The frame engine's exact savings, each against the computation it replaces (within 1e-5):
the mask features resized to the attention levels by strided slices, the image keys and values
folded into few queries, the position encodings kept per canvas, the levels' spatial maps as one
product per image; and a frame's masks and scores
read out of a GPU in one packed copy (bit for bit). Noise model: fp32 sums of a few
hundred products in another order differ by about sqrt(n) * 6e-8 relative (~1e-6 here)."""
import numpy as np
import pytest
import torch
from torch.nn import functional as F

from seem_ros.inference.frame_attention import image_attention
from seem_ros.inference.frame_engine import FrameEngine, bilinear_downsample
from seem_ros.inference.postprocess import packed_to_host
from seem_ros.model.layers import MultiheadAttention
from seem_ros.model.visual_sampler import DeterministicSampling, project_levels


@pytest.mark.parametrize("factor", [1, 2, 3, 4, 8])
def test_strided_downsampling_is_bilinear_resizing(factor):
    """Focal-T's mask features on a 512x704 canvas are (512, 128, 176); levels 16x22, 32x44, 64x88."""
    x = torch.randn(1, 64, 16 * factor, 22 * factor)
    ours = bilinear_downsample(x, (16, 22))
    expected = F.interpolate(x, (16, 22), mode="bilinear", align_corners=False)
    assert ours.shape == expected.shape
    assert torch.allclose(ours, expected, rtol=0, atol=1e-5), float((ours - expected).abs().max())


def test_sizes_that_are_not_one_integer_factor_are_resized_by_interpolation():
    x = torch.randn(1, 8, 50, 66)
    for size in [(16, 22), (25, 22), (20, 30)]:
        assert torch.equal(bilinear_downsample(x, size), F.interpolate(x, size, mode="bilinear", align_corners=False))


@pytest.mark.parametrize("queries", [3, 35, 101, 560])  # a click, a click with memory, a text, 16 with memory
@pytest.mark.parametrize("pixels", [352, 5632])  # Focal-T's coarsest and finest attention levels
def test_image_attention_equals_the_official_attention_whether_or_not_keys_are_folded(queries, pixels):
    torch.manual_seed(0)
    attn = MultiheadAttention(512, 8).requires_grad_(False)
    with torch.no_grad():
        attn.in_proj_bias.normal_(0, 0.1)
    flat, query_pos = torch.randn(queries, 512), torch.randn(queries, 512)
    src, pos = torch.randn(pixels, 1, 512), torch.randn(pixels, 1, 512)
    blocked = torch.rand(queries, pixels) < 0.6
    blocked[0] = False  # a query that sees everything, and one that sees a single pixel
    blocked[-1] = True
    blocked[-1, 7] = False
    expected = attn((flat + query_pos)[:, None], src + pos, src, attn_mask=blocked)[:, 0]
    ours = image_attention(attn, flat, query_pos, src, src + pos, blocked)
    assert torch.allclose(ours, expected, rtol=0, atol=1e-5), float((ours - expected).abs().max())


@pytest.mark.parametrize("layout", ["channel-first", "contiguous"])  # the decoder's, and any other
def test_spatial_maps_are_the_official_projection_of_each_level(layout):
    """project_levels as one (HW, C) x (C, C) product per image, against the official
    `src.view(h, w, bs, c) @ mask_sptial_embed` (that 4-d batched form took 24 ms of the tiny model's frame)."""
    torch.manual_seed(0)
    sizes = [(16, 22), (32, 44)]
    weights = [torch.randn(512, 512) / 512 ** 0.5 for _ in sizes]
    for bs in (1, 2):
        if layout == "channel-first":  # (HW, bs, C) with channels outermost in memory
            features = [torch.randn(bs, 512, h * w).permute(2, 0, 1) for h, w in sizes]
        else:
            features = [torch.randn(h * w, bs, 512) for h, w in sizes]
        ours = project_levels(features, sizes, weights)
        for level, ((h, w), feats) in enumerate(zip(sizes, features)):
            official = (feats.contiguous().view(h, w, bs, 512) @ weights[level]).permute(2, 3, 0, 1)
            assert ours[level].shape == official.shape == (bs, 512, h, w)
            assert torch.allclose(ours[level], official, rtol=1e-5, atol=1e-5), float((ours[level] - official).abs().max())
            if bs == 1:  # channels-last in memory: point_sample reads (h*w, C) rows as a view
                assert ours[level][0].permute(1, 2, 0).reshape(h * w, 512).data_ptr() == ours[level].data_ptr()


def test_position_encodings_are_computed_once_per_canvas(tiny_model, monkeypatch):
    engine = FrameEngine(tiny_model, DeterministicSampling(), max_canvases=2)
    pe_layer = tiny_model.decoder.pe_layer
    computed = []
    monkeypatch.setattr(pe_layer, "forward", lambda x, forward=pe_layer.forward: computed.append(x.shape) or forward(x))
    levels = {canvas: [torch.zeros(1, 4, canvas[0] // s, canvas[1] // s) for s in (8, 4, 2)]
              for canvas in [(8, 12), (16, 12), (8, 16)]}
    first = engine.level_positions(levels[(8, 12)])
    assert engine.level_positions(levels[(8, 12)]) is first and len(computed) == 3
    for x in levels.values():
        engine.level_positions(x)
    assert len(computed) == 9 and len(engine.positions) == 2  # the oldest canvas dropped
    monkeypatch.undo()
    for ours, x in zip(first, levels[(8, 12)]):
        assert torch.equal(ours, pe_layer(x).flatten(2).permute(2, 0, 1))


@pytest.mark.parametrize("shape", [(1, 480, 640), (16, 37, 53), (3, 1, 7)])  # pixel counts that are not bytes too
def test_masks_packed_on_the_device_read_out_bit_for_bit(shape):
    """The GPU read-out's packing, run on CPU tensors (the same torch operations)."""
    torch.manual_seed(0)
    masks = torch.rand(shape) < 0.3
    scores = torch.rand(shape[0], dtype=torch.float16)
    host_masks, host_scores = packed_to_host(masks, scores)
    assert host_masks.dtype == bool and np.array_equal(host_masks, masks.numpy())
    assert host_scores == scores.float().tolist()

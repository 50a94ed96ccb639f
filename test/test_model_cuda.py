"""CUDA fp32 parity and fp16 (autocast) mask agreement; skipped without a GPU."""
import copy

import numpy as np
import pytest
import torch

from conftest import load_case

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.fixture(scope="module")
def cuda_run(tiny_model):
    case = load_case("a_panoptic_zebras1")
    model = copy.deepcopy(tiny_model).cuda()
    embeddings = torch.from_numpy(load_case("text_class_embeddings")["default_text_embeddings"]).cuda()
    image = torch.from_numpy(case["input/image_uint8_hwc"]).permute(2, 0, 1)

    def run(dtype, tf32=False):
        saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
        try:
            with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16, enabled=dtype == torch.float16):
                mask_features, multi_scale = model.encode_image(model.normalize_and_pad(image))
                return model.decoder(multi_scale, mask_features, text_embeddings=embeddings)
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
    return case, run


def _max_diff(out, case, key):
    return np.abs(out.official(key).float().cpu().numpy() - case[f"rec/pred_calls/0/out/{key}"]).max()


def test_cuda_fp32_matches_official_cpu(cuda_run):
    """Strict fp32 (TF32 off): measured on an H100, 5.4e-5 on mask logits. PyTorch's default lets
    cuDNN convolutions use TF32 (10-bit mantissa), which moved them by 0.027 there, and 0.054 with
    TF32 matmuls too; that figure is printed, not asserted."""
    case, run = cuda_run
    strict, tf32 = run(torch.float32), run(torch.float32, tf32=True)
    for key, atol in (("pred_masks", 1e-3), ("pred_logits", 1e-2)):
        diff = _max_diff(strict, case, key)
        print(f"CUDA fp32 vs official CPU {key}: max |diff| {diff:.3g} (with TF32: {_max_diff(tf32, case, key):.3g})")
        assert diff <= atol


def test_cuda_fp16_mask_agreement(cuda_run):
    case, run = cuda_run
    ours = run(torch.float16).masks.float().cpu().numpy() > 0
    ref = case["rec/pred_calls/0/out/pred_masks"] > 0
    agreement = (ours == ref).mean()
    print(f"CUDA fp16 autocast: {agreement:.5f} of mask pixels agree with official fp32")
    assert agreement >= 0.99

"""Per-stage CPU latency of SEEM Focal-T (random weights of the real size) at short side 512.

    .venv/bin/python benchmarks/model_cpu_latency.py [--variant focalt_v1] [--repeats 3] [--threads N]

Prints median milliseconds for: backbone, pixel decoder, text encoder (one sentence), decoder with
one text prompt, decoder with one click, decoder for segment-everything; each stage's share of a
full "new frame + one prompt" pass; and, with --onnxruntime, the image encoder (backbone + pixel
decoder) in ONNX Runtime against PyTorch in the same run.
"""
import argparse
import tempfile

import numpy as np
import torch

from seem_ros.inference.official_layout import OfficialLayoutPredictor

from seem_ros.inference.visual_prompt import VisualPrompt
from seem_ros.model.seem import SEEM
from seem_ros.runtime.exported import ExportedGraphs, ort_opener
from seem_ros.runtime.onnx_graphs import default_slots
from seem_ros.weights import config_for
from timing import timed


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="focalt_v1")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--onnxruntime", action="store_true", help="also time the ONNX Runtime image encoder")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = SEEM(config_for(args.variant)).eval()
    predictor = OfficialLayoutPredictor(model, class_names=["person", "cup", "table"], num_thing_classes=2)
    image = np.random.default_rng(0).integers(0, 255, (args.height, args.width, 3), dtype=np.uint8)
    predictor.set_image(image)
    f = predictor.features
    x = model.normalize_and_pad(torch.zeros(3, *f.input_hw))
    with torch.no_grad():
        feats = model.backbone(x)
        stages = {
            "backbone": lambda: model.backbone(x),
            "pixel decoder": lambda: model.sem_seg_head.pixel_decoder(feats),
            "text encoder (1 sentence)": lambda: model.language.encode_tokens(model.language.tokenize(["the red cup"])[0]),
            "decoder, text prompt": lambda: predictor.grounding_logits(["the red cup"]),
            "decoder, one click": lambda: predictor.predict_visual([VisualPrompt(points=[(320, 240, 1)])]),
            "decoder, everything": lambda: predictor.segment_everything(),
        }
        results = {name: timed(fn, args.repeats) for name, fn in stages.items()}
    print(f"SEEM {args.variant}, input {f['input_hw']} (padded {f['padded_hw']}), {args.threads} threads, "
          f"torch {torch.__version__}")
    frame = results["backbone"] + results["pixel decoder"] + results["decoder, one click"]
    for name, ms in results.items():
        print(f"  {name:28s} {ms:9.1f} ms   {ms / frame:6.2f} x of frame+click")
    print(f"  {'frame + one click':28s} {frame:9.1f} ms")
    if args.onnxruntime:
        encoder = ExportedGraphs(model, args.variant, "0" * 64, default_slots(model),
                                 ort_opener(["CPUExecutionProvider"], {}), tempfile.mkdtemp(prefix="seem_bench_"))
        encoder(x)  # export + session creation, not timed
        with torch.no_grad():
            torch_ms = timed(lambda: model.encode_image(x), args.repeats)
        ort_ms = timed(lambda: encoder(x), args.repeats)
        print(f"  image encoder: torch {torch_ms:.1f} ms, onnxruntime {ort_ms:.1f} ms "
              f"({torch_ms / ort_ms:.2f}x faster with onnxruntime)")


if __name__ == "__main__":
    main()

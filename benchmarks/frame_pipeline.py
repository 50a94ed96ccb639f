"""Per-frame latency of seem_node's frame path (predictor.set_image + tracker.step), SEEM Focal-T
with random weights of the real size, at short side 512 (640x480 camera frames).

    .venv/bin/python benchmarks/frame_pipeline.py [--device cpu|cuda] [--precision fp32|fp16] [--quick]

Times the image encoder alone and whole frames with 1, 4 and 16 clicked objects (followed by their
masks, as in tracking), 4 text objects and segment-everything. Prints a table; the last line is
JSON with every figure (ms) and `decoder_16_over_1` (decoder cost of 16 objects over 1).
"""
import argparse
import json

import numpy as np
import torch

from seem_ros.model.checkpoint import config_for
from seem_ros.model.predictor import SeemPredictor, VisualPrompt
from seem_ros.model.seem import SEEM
from seem_ros.runtime.backends import BackendConfig, inference_context
from seem_ros.tracking.tracker import ObjectTracker
from timing import timed


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "fp16"])
    parser.add_argument("--variant", default="focalt_v1")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="2 repeats, no 16-object frame")
    args = parser.parse_args()
    repeats = 2 if args.quick else args.repeats
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else None
    torch.manual_seed(0)
    model = SEEM(config_for(args.variant)).eval().to(args.device)
    predictor = SeemPredictor(model, class_names=["person", "cup", "table"], num_thing_classes=2)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (480, 640, 3), dtype=np.uint8) for _ in range(2)]
    context = inference_context(BackendConfig("", device=args.device, precision=args.precision))
    counter = iter(range(10 ** 9))

    def frame(tracker):
        def run():
            with torch.inference_mode(), context:
                predictor.set_image(frames[next(counter) % 2])
                tracker.step(predictor)
        return run

    def clicks(n):
        tracker = ObjectTracker(max_objects=n)
        for i in range(n):
            tracker.add("object", visual=VisualPrompt(points=[(40 + 35 * i, 60 + 20 * (i % 4), 1)]))
        return tracker

    texts = ObjectTracker()
    for text in ("the red cup", "a person", "the table", "the dog"):
        texts.add(text, text=text)
    with torch.inference_mode(), context:
        encoder_ms = timed(lambda: predictor.set_image(frames[0]), repeats, sync)
        everything_ms = timed(lambda: predictor.segment_everything(), repeats, sync)
    results = {"image_encoder_ms": encoder_ms}
    for n in ((1, 4) if args.quick else (1, 4, 16)):
        results[f"frame_{n}_clicks_ms"] = timed(frame(clicks(n)), repeats, sync)
    results["frame_4_texts_ms"] = timed(frame(texts), repeats, sync)
    results["everything_decoder_ms"] = everything_ms
    largest = 4 if args.quick else 16
    results[f"decoder_{largest}_over_1"] = ((results[f"frame_{largest}_clicks_ms"] - encoder_ms)
                                            / max(results["frame_1_clicks_ms"] - encoder_ms, 1e-6))
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    print(f"SEEM {args.variant} (random weights), 640x480 -> {predictor.features['input_hw']}, {name}, "
          f"{args.precision}, torch {torch.__version__}, median of {repeats}")
    for key, value in results.items():
        print(f"  {key:28s} {value:10.2f}")
    print(json.dumps({"device": name, "precision": args.precision, **{k: round(v, 3) for k, v in results.items()}}))


if __name__ == "__main__":
    main()

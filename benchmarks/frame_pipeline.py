"""Per-frame latency of seem_node's frame path, SEEM Focal-T with random weights of the real size,
640x480 camera frames at short side 512: the image encoder, then every tracked object decoded.

    .venv/bin/python benchmarks/frame_pipeline.py [--device cpu|cuda] [--precision fp32|fp16] [--compile] [--quick]

Two decode paths in the same run, on the same frames and objects (clicked objects followed by their
masks, as in tracking; text objects):
- before: the research API the tracker used before the frame engine (predict_visual with the image
  features repeated per prompt, predict_text, all 101 object queries at every layer);
- engine: the frame engine (one pass for all objects, see seem_ros/inference/frame_engine.py).
Also ONNX Runtime against PyTorch for the image encoder (CPU), and the FLOPs of each stage with the
GFLOP/s achieved against this machine's measured matmul peak. Prints a table; the last line is JSON
(ms unless named otherwise) with decoder_fixed_ms (the decoder's per-frame work with no objects),
decoder_1_over_encoder, encoder_bf16_over_fp32 (where the device computes bf16 natively),
encoder_compiled_over_eager (with --compile),
decoder_16_over_1, frame_4obj_ms_before, frame_4obj_ms_engine and ort_over_torch_cpu among the figures. Each engine case is the median of --repeats frames (5) in every
mode; --quick (2 minutes on a 2-core CPU) times the before path and the image encoders once after a
warm-up and leaves out 16 objects on the before path.
"""
import argparse
import copy
import json
import tempfile
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from seem_ros.inference.official_layout import OfficialLayoutPredictor

from seem_ros.inference.visual_prompt import VisualPrompt
from seem_ros.model.seem import SEEM
from seem_ros.model.visual_sampler import DeterministicSampling
from seem_ros.runtime.backends import BackendConfig, bf16_unsupported, inference_context
from seem_ros.runtime.cuda_graphs import CudaGraphEncoder, CudaGraphSlotDecoder
from seem_ros.runtime.exported import ExportedGraphs, ort_opener
from seem_ros.runtime.host_memory import keep_frame_buffers
from seem_ros.runtime.onnx_graphs import default_slots
from seem_ros.tracking.tracker import ObjectTracker
from seem_ros.weights import config_for
from timing import timed


def before_step(predictor: OfficialLayoutPredictor, tracker: ObjectTracker) -> None:
    """One frame of the tracker as it decoded before the frame engine (reference for the speed-up)."""
    objects = list(tracker._objects.values())
    texts = [o for o in objects if o.text]
    visual = [o for o in objects if not o.text]
    if texts:
        predictor.predict_text([o.text for o in texts])
    if visual:
        prompts = [VisualPrompt(mask=o.last.mask) if o.last is not None else o.visual for o in visual]
        for obj, result in zip(visual, predictor.predict_visual(prompts)):
            obj.last = result


def peak_gflops(device: str) -> float:
    """Measured fp32 matmul throughput (4096^3), the physical ceiling the stages are held against."""
    a = torch.randn(4096, 4096, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else None
    return 2 * 4096 ** 3 / timed(lambda: a @ a, 3, sync) / 1e6


def flops(fn) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "fp16"])
    parser.add_argument("--variant", default="focalt_v1")
    parser.add_argument("--repeats", type=int, default=5, help="frames (or runs) each figure is the median of")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--cuda-graphs", action="store_true",
                        help="image encoder and fixed-slot frame decoder replayed from CUDA graphs")
    parser.add_argument("--compile", action="store_true",
                        help="the image encoder (and with --cuda-graphs the frame decoder) through torch.compile")
    args = parser.parse_args()
    repeats = args.repeats
    once = 1 if args.quick else repeats  # the slow cases in --quick: the before path and the image encoders
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else None
    keep_frame_buffers()  # as create_predictor sets it for the node
    torch.manual_seed(0)
    model = SEEM(config_for(args.variant)).eval().to(args.device)
    encode = torch.compile(model.encode_image, dynamic=False) if args.compile else None  # compiled at its first frame
    predictor = OfficialLayoutPredictor(model, class_names=["person", "cup", "table"], num_thing_classes=2,
                              rng=DeterministicSampling(),  # as the node runs it
                              image_encoder=CudaGraphEncoder(model, encode) if args.cuda_graphs else encode)
    if args.cuda_graphs:  # the frame decoder too, over the node's default slots (4 text, 16 visual)
        predictor.engine.run_slots = CudaGraphSlotDecoder(model, default_slots(model), compiled=args.compile).decode_slots
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (480, 640, 3), dtype=np.uint8) for _ in range(2)]
    cfg = BackendConfig("", device=args.device, precision=args.precision)
    counter = iter(range(10 ** 9))

    def tracker_of(kind: str, n: int, follow_memory: bool = False) -> ObjectTracker:
        tracker = ObjectTracker(max_objects=n, follow_memory=follow_memory)
        for i in range(n):
            if kind == "clicks":
                tracker.add("object", visual=VisualPrompt(points=[(40 + 35 * i, 60 + 20 * (i % 4), 1)]))
            else:
                tracker.add(f"thing {i}", text=("the red cup", "a person", "the table", "the dog")[i % 4] + f" {i}")
        return tracker

    def decode_only(step, tracker, frames_timed: int = repeats):
        """Median time of the decode of a frame whose image is encoded beforehand (not timed)."""
        samples = []
        for i in range(frames_timed + 1):  # the first frame: the objects' own prompts, then they are followed
            with inference_context(cfg):
                predictor.set_image(frames[next(counter) % 2])
                if sync:
                    sync()
                start = time.perf_counter()
                step(predictor, tracker)
                if sync:
                    sync()
            samples.append((time.perf_counter() - start) * 1000)
        return float(np.median(samples[1:]))

    with inference_context(cfg):
        encoder_ms = timed(lambda: predictor.set_image(frames[0]), once, sync)
        everything_ms = timed(lambda: predictor.segment_everything(), once, sync)
    results = {"image_encoder_ms": encoder_ms, "segment_everything_decoder_ms": everything_ms}
    engine_step = lambda p, t: t.step(p)  # noqa: E731
    # the decoder's per-frame work with no objects (the frame's preparation), then per object count
    results["decoder_fixed_ms"] = decode_only(lambda p, t: p.frame, None)
    for n in (1, 4, 16):
        results[f"decoder_{n}_clicks_ms_engine"] = decode_only(engine_step, tracker_of("clicks", n))
    results["decoder_1_over_encoder"] = results["decoder_1_clicks_ms_engine"] / encoder_ms
    x = model.normalize_and_pad(torch.zeros(3, *predictor.features.input_hw, device=args.device))
    with torch.inference_mode():
        eager_ms = timed(lambda: model.encode_image(x), once, sync)
        if encode is not None:  # compiled at the first frame above, for this input
            results["encoder_compiled_over_eager"] = timed(lambda: encode(x), once, sync) / eager_ms
    if not bf16_unsupported(args.device):  # precision bf16: the image encoder held in bf16, same run, same input
        held = copy.deepcopy(model)
        held.hold_image_encoder_in(torch.bfloat16)
        with torch.inference_mode():
            bf16_ms = timed(lambda: held.encode_image(x), once, sync)
        results.update({"image_encoder_ms_bf16": bf16_ms, "encoder_bf16_over_fp32": bf16_ms / eager_ms})
        del held
    results["decoder_4_texts_ms_engine"] = decode_only(engine_step, tracker_of("texts", 4))
    # track_follow_memory: each followed object's row has 32 memory queries more (3 -> 35)
    results["decoder_16_clicks_ms_memory"] = decode_only(engine_step, tracker_of("clicks", 16, follow_memory=True))
    for n in ((1, 4) if args.quick else (1, 4, 16)):
        results[f"decoder_{n}_clicks_ms_before"] = decode_only(before_step, tracker_of("clicks", n), once)
    results["decoder_16_over_1"] = results["decoder_16_clicks_ms_engine"] / results["decoder_1_clicks_ms_engine"]
    results["frame_4obj_ms_before"] = encoder_ms + results["decoder_4_clicks_ms_before"]
    results["frame_4obj_ms_engine"] = encoder_ms + results["decoder_4_clicks_ms_engine"]
    results["speedup_4obj_frame"] = results["frame_4obj_ms_before"] / results["frame_4obj_ms_engine"]

    # FLOPs per stage (counted on the eager path: a graph replay hides its operations from the
    # counter) and the share of the machine's peak achieved
    peak = peak_gflops(args.device)
    replayed = predictor.image_encoder, predictor.engine.run_slots
    predictor.image_encoder, predictor.engine.run_slots = model.encode_image, predictor.engine.decode_slots
    with inference_context(cfg):
        encoder_flops = flops(lambda: predictor.set_image(frames[0]))
        four = tracker_of("clicks", 4)
        four.step(predictor)
        decoder_flops = flops(lambda: four.step(predictor))
    predictor.image_encoder, predictor.engine.run_slots = replayed
    results.update({"peak_matmul_gflops": peak, "image_encoder_gflop": encoder_flops / 1e9,
                    "decoder_4_clicks_gflop": decoder_flops / 1e9,
                    "image_encoder_gflops_achieved": encoder_flops / 1e6 / encoder_ms,
                    "decoder_4_clicks_gflops_achieved": decoder_flops / 1e6 / results["decoder_4_clicks_ms_engine"]})

    if args.device == "cpu":
        x = model.normalize_and_pad(torch.zeros(3, *predictor.features.input_hw))
        graphs = ExportedGraphs(model, args.variant, "0" * 64, default_slots(model, visual=4, text=1),
                                ort_opener(["CPUExecutionProvider"], {}), tempfile.mkdtemp(prefix="seem_bench_"))
        graphs.encode_image(x)  # export and session creation, not timed
        with torch.inference_mode():
            torch_ms = timed(lambda: model.encode_image(x), once)
        ort_ms = timed(lambda: graphs.encode_image(x), once)
        results.update({"image_encoder_ms_torch": torch_ms, "image_encoder_ms_onnxruntime": ort_ms,
                        "ort_over_torch_cpu": torch_ms / ort_ms})
        if not args.quick:  # the exported slot decoder (4 visual slots), exported on its first frame
            predictor.engine.run_slots = graphs.decode_slots
            decode_only(engine_step, tracker_of("clicks", 4))
            results["decoder_4_clicks_ms_onnxruntime"] = decode_only(engine_step, tracker_of("clicks", 4))
            predictor.engine.run_slots = predictor.engine.decode_slots

    name = torch.cuda.get_device_name() if sync else f"CPU, {torch.get_num_threads()} threads"
    graphs = (", compiled" if args.compile else "") + (", encoder and decoder in CUDA graphs" if args.cuda_graphs else "")
    print(f"SEEM {args.variant} (random weights), 640x480 -> {predictor.features.input_hw}, {name}, "
          f"{args.precision}{graphs}, torch {torch.__version__}, median of {repeats} (before path and encoders: {once})")
    for key, value in results.items():
        print(f"  {key:34s} {value:10.2f}")
    print(json.dumps({"device": name, "precision": args.precision, "cuda_graphs": args.cuda_graphs, "compile": args.compile,
                      **{k: round(v, 3) for k, v in results.items()}}))


if __name__ == "__main__":
    main()

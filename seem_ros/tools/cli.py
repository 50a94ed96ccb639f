"""`seem-ros`: the package's command line.

    seem-ros build-engine --checkpoint seem_focalt_v1.pt --canvas 512x704 --precision fp16
    seem-ros eval-tracking --checkpoint seem_focalt_v1.pt --config focalt_v1 --davis DAVIS_DIR
    seem-ros segment photo.jpg --text "the red cup" --point 320,240 -o out.png
    seem-ros track video.mp4 --text "the dog" --point 320,240 --out DIR   # or an image folder, a rosbag2
    seem-ros serve --checkpoint seem_focalt_v1.pt --device cuda --grpc-port 8001   # a frame server for robots
    seem-ros export-triton --checkpoint seem_focalt_v1.pt --canvas 512x928 --out REPO  # for NVIDIA's Triton images

builds (or finds in the cache) the exported graphs a deployment needs ahead of time, as Jetson
users do before launching: the ONNX image encoder and slot decoder for one input canvas, and with
`--backend tensorrt` their TensorRT engines. The node started with the same settings (checkpoint,
model_config, backend, precision, input_canvas, decoder slots, engine_cache_dir) then loads them
without exporting or building anything.

serve: a Triton Inference Server hosting the SEEM frame model (runtime/triton_server.py); robots
use it with backend triton (triton_url). eval-tracking: see seem_ros/tools/evaluation.py. Errors go to stderr; exit code 2 for bad
arguments, 1 for failures.
"""
import argparse
import logging
import sys
import time
from typing import List, Optional, Tuple

from seem_ros.tools.arguments import OVERWRITE_HELP, UsageError, canvas, model_arguments, positive
from seem_ros.tools.evaluation import MODES
from seem_ros.tools.serve_command import add_export_command, add_serve_command, export_triton, serve
from seem_ros.weights import cache_root



def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seem-ros", description="SEEM for ROS 2 robots: command-line tools.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    build = commands.add_parser(
        "build-engine", help="export the ONNX graphs and build the TensorRT engines for one input canvas",
        description="Exports the image encoder and the slot decoder to ONNX and, with --backend tensorrt, builds "
                    "their TensorRT engines, into the engine cache the node reads (a cached one with a matching key "
                    "is kept, never rebuilt).")
    model_arguments(build)
    build.add_argument("--canvas", type=canvas, required=True,
                       help="padded input HxW, multiples of 32: the node's input_canvas (e.g. 512x704 for 480x640 "
                            "frames at short side 512)")
    build.add_argument("--backend", choices=("tensorrt", "onnxruntime"), default="tensorrt",
                       help="tensorrt: ONNX graphs and engines; onnxruntime: the ONNX graphs only (default %(default)s)")
    build.add_argument("--precision", choices=("fp32", "fp16"), default="fp16", help="engine precision (default %(default)s)")
    build.add_argument("--device", default="cuda", help="the GPU the engines are for (default %(default)s)")
    build.add_argument("--text-slots", type=positive, default=4, help="text objects per decoder pass (default %(default)s)")
    build.add_argument("--visual-slots", type=positive, default=16,
                       help="visual objects per decoder pass (default %(default)s)")
    build.add_argument("--cache-dir", default="",
                       help=f"engine cache folder (default {cache_root()}/engines, the node's default)")
    evaluate = commands.add_parser(
        "eval-tracking", help="J, F, J&F, id switches and fps of three tracking modes on DAVIS-layout sequences",
        description="Prompts each sequence with its first frame's ground-truth mask and segments the rest three "
                    "ways: per-frame referring (the official SEEM video demo), mask propagation, and the node's "
                    "tracker. Prints a table (progress on stderr); the last line is JSON.")
    model_arguments(evaluate)
    evaluate.add_argument("--davis", required=True,
                          help="a DAVIS-layout folder (JPEGImages/480p/<seq>/*.jpg, Annotations/480p/<seq>/*.png)")
    evaluate.add_argument("--sequences", default="", help="comma-separated sequence names (default: all)")
    evaluate.add_argument("--modes", default=",".join(MODES), help="comma-separated, of " + ", ".join(MODES))
    evaluate.add_argument("--max-frames", type=positive, default=None, help="first N frames of each sequence")
    evaluate.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default %(default)s)")
    evaluate.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default="fp32")
    download = commands.add_parser(
        "download", help="fetch a released checkpoint into the Hugging Face cache and verify its sha256",
        description="Fetches a released SEEM checkpoint from huggingface.co/xdecoder/SEEM (with a progress bar) "
                    "into the Hugging Face cache, checks its size and sha256, and prints its path. Offline, it says "
                    "which file to get, its sha256 and where to put it.")
    download.add_argument("name", nargs="?", default="seem_focalt_v1.pt",
                          help="released file name (default %(default)s)")
    commands.add_parser("info", help="versions, GPU, cached checkpoints and engines",
                        description="Prints Python, torch, CUDA, ONNX Runtime and TensorRT versions, the GPU, "
                                    "and the checkpoints and engines in the caches.")
    segment = commands.add_parser(
        "segment", help="segment one image by text, clicks, a box, or everything; writes an overlay and masks",
        description="Segments IMAGE: each --text is one object (the best match), the --point clicks and the "
                    "--box together are one more; --everything segments every object of the vocabulary. Writes "
                    "the overlay to -o and one mask PNG per object beside it (<out>_<id>.png, 255 = object), and "
                    "prints the objects as JSON.")
    segment.add_argument("image", help="an image file (JPEG, PNG, ...)")
    _prompt_arguments(segment, "", "every object of the vocabulary (panoptic)")
    segment.add_argument("-o", "--out", required=True, help="the overlay image to write (e.g. out.png)")
    model_arguments(segment)
    segment.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default %(default)s)")
    track = commands.add_parser(
        "track", help="track objects through a video, an image folder or a rosbag2; writes what the demo writes",
        description="Tracks through SOURCE (a video file, a folder of images sorted by name, or a rosbag2 folder "
                    "or .mcap/.db3 file with sensor_msgs Image or CompressedImage frames) the objects the prompts "
                    "name: each --text is one object, the --point clicks and the --box (on the first frame) one "
                    "more; --everything tracks every instance of the vocabulary's classes, each with its own "
                    "id. Writes into --out: overlay.mp4, labels/NNNNNN.png (16-bit label images), objects.jsonl (a line per object and frame) and bag/ (a rosbag2, MCAP, of the input frames "
                    "and the node's outputs for them), and prints a JSON summary.")
    track.add_argument("source", help="a video file, an image folder, or a rosbag2")
    _prompt_arguments(track, " (on the first frame)", "every instance of the vocabulary's classes, each its own track")
    track.add_argument("--out", required=True, help="the output folder: new, empty, or an earlier run's (replaced)")
    track.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    track.add_argument("--topic", default="", help="a rosbag2's image topic (needed when it has several)")
    track.add_argument("--max-frames", type=positive, default=None, help="the first N frames only")
    track.add_argument("--fps", type=float, default=10.0, help="overlay.mp4's frame rate (default %(default)s)")
    model_arguments(track)
    track.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default %(default)s)")
    track.add_argument("--triton-url", default="",
                       help="a frame server's gRPC address (seem-ros serve): its frames are segmented there")
    track.add_argument("--triton-model", default="seem_frame",
                       help="the model there: seem_frame (seem-ros serve) or seem_frame_slots (an export-triton "
                            "repository, with --canvas as exported)")
    track.add_argument("--triton-shared-memory", action="store_true",
                       help="the server is on this host: frames and results through system shared memory")
    track.add_argument("--canvas", type=canvas, default=None, help="one padded input HxW for every frame")
    add_serve_command(commands)
    add_export_command(commands)
    return parser


def _prompt_arguments(parser: argparse.ArgumentParser, where: str, everything: str) -> None:
    parser.add_argument("--text", action="append", default=[], help="a text prompt (repeatable)")
    parser.add_argument("--point", action="append", default=[], type=_point,
                        help=f"a click x,y (positive) or x,y,0 (negative), in pixels{where} (repeatable)")
    parser.add_argument("--box", type=_box, help=f"a box x0,y0,x1,y1 in pixels{where}")
    parser.add_argument("--everything", action="store_true", help=everything)
    parser.add_argument("--vocabulary", default="", help="comma-separated class names for --everything "
                                                         "(default: the 133 COCO panoptic classes)")


def _prompts(args: argparse.Namespace, what: str):
    """-> (the visual prompt or None, the --everything vocabulary), after checking they go together."""
    visual = _visual_prompt(args)
    if not args.everything and not args.text and visual is None:
        raise UsageError(f"nothing to {what}: give --text, --point, --box or --everything")
    if args.everything and (args.text or visual is not None):
        raise UsageError("--everything takes every object of the vocabulary: give it without --text, --point or --box")
    return visual, tuple(v.strip() for v in args.vocabulary.split(",") if v.strip())


def _visual_prompt(args: argparse.Namespace):
    """The --point clicks and --box as one visual prompt (None without them)."""
    from seem_ros.inference.visual_prompt import VisualPrompt
    visual = VisualPrompt(points=args.point, box=args.box) if args.point or args.box is not None else None
    if visual is not None and not visual.has_positive():
        raise UsageError("negative points alone cannot prompt: add a positive point or a box")
    return visual


def _check_points(points, width: int, height: int) -> None:
    for x, y, _ in points:
        if not (0 <= x < width and 0 <= y < height):
            raise UsageError(f"point ({x:g}, {y:g}) is outside the {width}x{height} image")


def _prompted_tracker(texts: List[str], visual, categories=()):
    """Each text one object, the visual prompt one more; each category every instance of it."""
    from seem_ros.tracking.tracker import ObjectTracker
    tracker = ObjectTracker(max_objects=len(texts) + 1 + 100 * bool(categories))
    for text in texts:
        tracker.add(text, text=text)
    if visual is not None:
        tracker.add("object", visual=visual)
    for noun in categories:
        tracker.add_category(noun, noun)
    return tracker


def _numbers(text: str, counts: Tuple[int, ...], what: str) -> List[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in counts:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return values


def _point(text: str) -> Tuple[float, float, int]:
    values = _numbers(text, (2, 3), "x,y or x,y,0")
    if len(values) == 3 and values[2] not in (0, 1):
        raise argparse.ArgumentTypeError(f"a point's label is 1 (positive) or 0 (negative), got {text!r}")
    return values[0], values[1], int(values[2]) if len(values) == 3 else 1


def _box(text: str) -> Tuple[float, float, float, float]:
    return tuple(_numbers(text, (4,), "x0,y0,x1,y1"))


def segment(args: argparse.Namespace) -> int:
    import json
    import os
    import cv2
    import numpy as np
    import torch
    from PIL import Image
    from seem_ros.node.segment_image import segment_once
    from seem_ros.ros_out.encoding import overlay
    from seem_ros.runtime.backends import BackendConfig, create_predictor
    from seem_ros.tracking.places import bounding_box
    visual, vocabulary = _prompts(args, "segment")
    try:
        rgb = np.asarray(Image.open(args.image).convert("RGB"))
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"cannot read {args.image}: {exc}") from exc
    h, w = rgb.shape[:2]
    _check_points(args.point, w, h)
    predictor = create_predictor(BackendConfig(args.checkpoint, args.config, device=args.device,
                                               vocabulary=vocabulary if args.everything else ("object",)))
    with torch.inference_mode():
        if args.everything:
            objects = segment_once(predictor, rgb, None)
        else:
            tracker = _prompted_tracker(args.text, visual)
            predictor.set_image(rgb)
            objects = tracker.step(predictor)
    stem, _ = os.path.splitext(args.out)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    if not cv2.imwrite(args.out, overlay(rgb, objects)):
        raise RuntimeError(f"cannot write {args.out} (an image extension such as .png is needed)")
    listed = []
    for obj in objects:
        mask_path = f"{stem}_{obj.id}.png"
        cv2.imwrite(mask_path, obj.mask.astype(np.uint8) * 255)
        listed.append({"id": obj.id, "label": obj.label, "score": round(float(obj.score), 4),
                       "bbox": list(bounding_box(obj.mask)), "pixels": int(obj.mask.sum()), "mask": mask_path})
    print(json.dumps({"image": args.image, "size": [h, w], "overlay": args.out, "objects": listed}))
    return 0


def track(args: argparse.Namespace) -> int:
    import json
    from tqdm import tqdm
    from seem_ros.inference.coco_classes import COCO_PANOPTIC_CLASSES
    from seem_ros.runtime.backends import BackendConfig, apply_cpu_threads, create_predictor, inference_context
    from seem_ros.tools.recording import OutputFolderRefused, RecordingWriter, claim_output_folder
    from seem_ros.tools.sources import FrameSource
    visual, vocabulary = _prompts(args, "track")
    try:
        source = FrameSource(args.source, args.topic, args.max_frames or 0)
        total = len(source)
        first = source.first()
    except (FileNotFoundError, ValueError) as exc:
        raise UsageError(str(exc)) from exc
    _check_points(args.point, first.rgb.shape[1], first.rgb.shape[0])  # before anything is loaded or written
    try:
        claim_output_folder(args.out, overwrite=args.overwrite)
    except OutputFolderRefused as exc:
        raise UsageError(str(exc)) from exc
    remote = dict(backend="triton", triton_url=args.triton_url, triton_model=args.triton_model,
                  triton_shared_memory=args.triton_shared_memory) if args.triton_url else {}
    cfg = BackendConfig(args.checkpoint, args.config, device=args.device, embedding_cache_dir="",
                        vocabulary=("object",), canvas=args.canvas, **remote)
    apply_cpu_threads(cfg)
    predictor = create_predictor(cfg)
    tracker = _prompted_tracker(args.text, visual,
                                (vocabulary or tuple(COCO_PANOPTIC_CLASSES)) if args.everything else ())
    ids = {}
    with inference_context(cfg), RecordingWriter(args.out, args.fps) as writer:
        for frame in tqdm(source, total=total, unit="frame", file=sys.stderr, disable=None):
            started = time.perf_counter()
            predictor.set_image(frame.rgb)
            objects = tracker.step(predictor)
            writer.write(frame.index, frame.stamp_ns, frame.rgb, objects, time.perf_counter() - started)
            ids.update({o.id: o.label for o in objects})
    print(json.dumps({"source": args.source, "kind": source.kind, "frames": writer.frames, "out": args.out,
                      "objects": [{"id": i, "label": label} for i, label in sorted(ids.items())]}))
    return 0


def download(args: argparse.Namespace) -> int:
    from seem_ros.weights import KNOWN_CHECKPOINTS, resolve_checkpoint, verify_known_checkpoint
    if args.name not in KNOWN_CHECKPOINTS:
        raise UsageError(f"unknown checkpoint {args.name!r} (released: {', '.join(sorted(KNOWN_CHECKPOINTS))})")
    path = resolve_checkpoint(args.name)  # huggingface_hub shows the download's progress
    verify_known_checkpoint(path)
    print(path)
    return 0


def info(args: argparse.Namespace) -> int:
    import glob
    import os
    import platform
    import torch
    from seem_ros.runtime.engine_cache import default_cache_dir
    from seem_ros.weights import KNOWN_CHECKPOINTS

    def version(module: str) -> str:
        try:
            return __import__(module).__version__
        except ImportError:
            return "not installed"
    print(f"python        {platform.python_version()} ({sys.executable})")
    print(f"torch         {torch.__version__}, CUDA {torch.version.cuda or 'none'}")
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    print(f"GPU           {', '.join(gpus) or 'none (CUDA not available)'}")
    onnxruntime = version("onnxruntime")
    if onnxruntime != "not installed":
        import onnxruntime as ort
        onnxruntime += f" [{', '.join(ort.get_available_providers())}]"
    print(f"onnxruntime   {onnxruntime}")
    print(f"tensorrt      {version('tensorrt')}")
    hub = os.path.expanduser(os.environ.get("HF_HUB_CACHE", os.path.join(
        os.environ.get("HF_HOME", "~/.cache/huggingface"), "hub")))
    checkpoints = sorted(p for name in KNOWN_CHECKPOINTS for p in glob.glob(os.path.join(
        hub, "models--xdecoder--SEEM", "snapshots", "*", name)))
    print(f"checkpoints   {len(checkpoints)} in {hub}")
    for path in checkpoints:
        print(f"  {path} ({os.path.getsize(path) / 1e6:.0f} MB)")
    engines = sorted(glob.glob(os.path.join(default_cache_dir(), "*.onnx")) +
                     glob.glob(os.path.join(default_cache_dir(), "*.engine")))
    print(f"engine cache  {len(engines)} files in {default_cache_dir()}")
    for path in engines:
        print(f"  {os.path.basename(path)} ({os.path.getsize(path) / 1e6:.1f} MB)")
    return 0


def eval_tracking(args: argparse.Namespace) -> int:
    import json
    import os
    from seem_ros.runtime.backends import BackendConfig, create_predictor, inference_context
    from seem_ros.tools.evaluation import evaluate, overall, read_davis, table
    from seem_ros.weights import KNOWN_CHECKPOINTS, remembered_sha256, resolve_checkpoint
    modes = [m for m in args.modes.split(",") if m]
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise UsageError(f"--modes: unknown {', '.join(unknown) or 'empty list'} (of {', '.join(MODES)})")
    sequences = read_davis(args.davis, [s for s in args.sequences.split(",") if s] or None, max_frames=args.max_frames or 0)
    if any(len(s.frames) < 2 for s in sequences):
        raise UsageError("every sequence needs at least two frames (the first is the prompt)")
    cfg = BackendConfig(args.checkpoint, args.config, device=args.device, precision=args.precision,
                        embedding_cache_dir="", vocabulary=("object",))
    predictor = create_predictor(cfg)
    released = {digest for digest, _ in KNOWN_CHECKPOINTS.values()}
    path = resolve_checkpoint(args.checkpoint)
    trained = remembered_sha256(path) in released
    with inference_context(cfg):
        results = evaluate(predictor, sequences, modes, progress=lambda line: print(line, file=sys.stderr))
    print(f"SEEM {os.path.basename(path)} ({args.config}), {len(sequences)} sequences, {args.device} {args.precision}")
    if not trained:
        print("note: not a released SEEM checkpoint (its sha256 is not one of the released files'): if its weights "
              "are untrained, like the tiny reference checkpoint's, these numbers mean nothing")
    print(table(results))
    means = {mode: overall(rows) for mode, rows in results.items()}
    print(json.dumps({mode: {"J": round(means[mode]["J"], 4), "F": round(means[mode]["F"], 4),
                             "JF": round(means[mode]["JF"], 4), "objects": means[mode]["objects"],
                             "id_switches": sum(r.id_switches for r in rows),
                             "fps": round(sum(r.fps for r in rows) / len(rows), 3),
                             "sequences": {r.sequence: round(r.jf, 4) for r in rows}}
                      for mode, rows in results.items()}))
    return 0


def build_engine(args: argparse.Namespace) -> int:
    from seem_ros.runtime.backends import BackendConfig, create_predictor, describe_backend
    device = "cpu" if args.backend == "onnxruntime" else args.device
    precision = "fp32" if args.backend == "onnxruntime" else args.precision  # ONNX graphs are exported in fp32
    cfg = BackendConfig(args.checkpoint, args.config, backend=args.backend, device=device, precision=precision,
                        engine_cache_dir=args.cache_dir, embedding_cache_dir="", canvas=args.canvas,
                        decoder_slots=(args.text_slots, args.visual_slots))
    started = time.monotonic()
    predictor = create_predictor(cfg)  # a fixed canvas: exports / builds both graphs now
    graphs = predictor.image_encoder
    print(f"{describe_backend(cfg, predictor)[0]}; ready in {time.monotonic() - started:.0f} s")
    for graph in ("encoder", "decoder"):
        print(f"  {graph}: {graphs.cache_dir}/{graphs.spec(graph, args.canvas).file_name()}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)  # exits with 2 on bad arguments
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        handlers = {"build-engine": build_engine, "eval-tracking": eval_tracking, "segment": segment, "track": track,
                    "info": info, "download": download, "serve": serve,
                    "export-triton": export_triton}
        return handlers[args.command](args)
    except UsageError as exc:
        print(f"seem-ros {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a failure is reported, not a traceback
        print(f"seem-ros {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

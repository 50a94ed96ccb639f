"""`seem-ros serve` (a frame server for robots with backend triton: runtime/triton_server.py) and
`seem-ros export-triton` (a model repository for NVIDIA's Triton images: runtime/triton_repository.py)."""
import argparse

from seem_ros.tools.arguments import OVERWRITE_HELP, UsageError, canvas, model_arguments, positive


def _batching_arguments(parser) -> None:
    parser.add_argument("--max-batch-size", type=positive, default=8,
                        help="frames Triton's dynamic batcher hands the image encoder at once (default %(default)s)")
    parser.add_argument("--queue-delay-us", type=int, default=2000,
                        help="how long a frame may wait for others to batch with, in microseconds (default %(default)s)")


def add_serve_command(commands) -> None:
    serve = commands.add_parser(
        "serve", help="a Triton Inference Server hosting the SEEM frame model, for robots with backend triton",
        description="Starts Triton Inference Server (the nvidia-pytriton wheel's tritonserver) with the SEEM frame "
                    "model (image, the frame's objects -> mask logits, scores) and Triton's dynamic batcher across "
                    "robots. Robots keep prompts and tracks; the server keeps nothing between requests. Health: "
                    "HTTP /v2/health/ready; metrics: Prometheus on --metrics-port. Runs until interrupted.")
    model_arguments(serve)
    serve.add_argument("--backend", choices=("torch", "onnxruntime", "tensorrt"), default="torch",
                       help="what runs the model on the server (default %(default)s)")
    serve.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default %(default)s)")
    serve.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default="fp32")
    serve.add_argument("--canvas", type=canvas, default=None,
                       help="padded input HxW the exported graphs are built for (onnxruntime, tensorrt)")
    serve.add_argument("--grpc-port", type=positive, default=8001)
    serve.add_argument("--http-port", type=positive, default=8000)
    serve.add_argument("--metrics-port", type=positive, default=8002)
    _batching_arguments(serve)
    serve.add_argument("--max-queue-size", type=int, default=0,
                       help="requests waiting beyond this are refused at once (default 0: no limit)")
    serve.add_argument("--stub-env", default="", help="the Python-backend stub's environment (default: "
                                                      "<this environment>/triton-stub, created on first use)")


def serve(args: argparse.Namespace) -> int:
    from seem_ros.runtime.backends import BackendConfig, create_predictor, describe_backend, inference_context, server_info
    from seem_ros.runtime.frame_server import FrameServer
    from seem_ros.runtime.triton_server import serve as serve_frames
    cfg = BackendConfig(args.checkpoint, args.config, backend=args.backend, device=args.device,
                        precision=args.precision, canvas=args.canvas, embedding_cache_dir="", vocabulary=("object",))
    predictor = create_predictor(cfg)
    info = server_info(cfg, describe_backend(cfg, predictor)[0], args.max_batch_size)
    server = FrameServer(predictor)

    def frames(requests):
        with inference_context(cfg):
            return server(requests)
    serve_frames(frames, info, grpc_port=args.grpc_port, http_port=args.http_port, metrics_port=args.metrics_port,
                 queue_delay_us=args.queue_delay_us, max_queue_size=args.max_queue_size, stub_env=args.stub_env,
                 ready=lambda: print(f"seem-ros serve: ready on gRPC :{args.grpc_port}", flush=True))
    return 0


def add_export_command(commands) -> None:
    export = commands.add_parser(
        "export-triton", help="a model repository for NVIDIA's Triton Inference Server images (ONNX Runtime backend)",
        description="Writes a Triton model repository: the image encoder and the point decoder as ONNX graphs for "
                    "one canvas, and the ensemble seem_frame_slots chaining them, with dynamic batching, instance "
                    "groups and versions. Served by NVIDIA's tritonserver images as they are (no seem_ros there). "
                    "Refuses a folder holding files seem_ros did not write; an earlier export's models are replaced.")
    model_arguments(export)
    export.add_argument("--out", required=True, help="the repository folder (new, empty, or an earlier export)")
    export.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    export.add_argument("--canvas", type=canvas, required=True,
                        help="padded input HxW (multiples of 32) of the robots' frames: their input_canvas")
    export.add_argument("--text-slots", type=positive, default=4, help="text objects per decoder run (default %(default)s)")
    export.add_argument("--visual-slots", type=positive, default=16,
                        help="visual objects per decoder run (default %(default)s)")
    _batching_arguments(export)
    export.add_argument("--instances", type=positive, default=1, help="model instances per GPU (default %(default)s)")
    export.add_argument("--kind", choices=("gpu", "cpu"), default="gpu", help="where the instances run (default %(default)s)")
    export.add_argument("--accelerator", choices=("none", "tensorrt"), default="none",
                        help="tensorrt: ONNX Runtime's TensorRT execution provider on the GPU (default %(default)s)")
    export.add_argument("--precision", choices=("fp32", "fp16"), default="fp32",
                        help="fp16: the graphs in fp16 with fp32 islands, fp32 in and out (default %(default)s)")


def export_triton(args: argparse.Namespace) -> int:
    from seem_ros.runtime.backends import BackendConfig, server_info
    from seem_ros.runtime.onnx_graphs import default_slots
    from seem_ros.runtime.triton_repository import MODELS, RepositoryOptions, write_repository
    from seem_ros.tools.recording import OutputFolderRefused, claim_output_folder
    from seem_ros.weights import load_seem
    try:  # before minutes of loading and exporting
        claim_output_folder(args.out, MODELS, overwrite=args.overwrite)
    except OutputFolderRefused as exc:
        raise UsageError(str(exc)) from exc
    cfg = BackendConfig(args.checkpoint, args.config, canvas=args.canvas, embedding_cache_dir="")
    model = load_seem(args.checkpoint, args.config)
    options = RepositoryOptions(args.canvas, default_slots(model, visual=args.visual_slots, text=args.text_slots),
                                args.max_batch_size, args.queue_delay_us, args.instances, args.kind, args.accelerator,
                                args.precision)
    info = server_info(cfg, f"onnxruntime (exported repository, {args.precision}, accelerator {args.accelerator})",
                       args.max_batch_size)
    written = write_repository(model, args.out, options, info)
    print(f"seem-ros export-triton: wrote {len(written)} files to {args.out}; serve with\n"
          f"  tritonserver --model-repository={args.out}\nand point robots at it with backend triton, triton_model "
          f"seem_frame_slots, input_canvas {args.canvas[0]}x{args.canvas[1]}")
    return 0

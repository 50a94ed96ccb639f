"""`seem-ros serve`: a frame server for robots with backend triton (runtime/triton_server.py)."""
import argparse

from seem_ros.tools.arguments import canvas, model_arguments, positive


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
    serve.add_argument("--max-batch-size", type=positive, default=8,
                       help="frames Triton's dynamic batcher hands the model at once (default %(default)s)")
    serve.add_argument("--queue-delay-us", type=int, default=2000,
                       help="how long a request may wait for others to batch with, in microseconds (default %(default)s)")
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

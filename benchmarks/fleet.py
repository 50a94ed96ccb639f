"""A fleet of robots against one frame server: N robot processes, each tracking a text object and a
clicked object through the shared DAVIS frames with backend triton, against one `seem-ros serve`.

    .venv/bin/python benchmarks/fleet.py --clients 1,2,4,8 --rate 2 --minutes 1 [--checkpoint CKPT --config CFG]

For each N, with Triton's dynamic batching (max batch 8) and without (max batch 1), the server is
killed and restarted halfway through (--no-restart: not). Per row: frames served per second (all
robots), p50/p99 latency of the served frames, frames failed (by reason), frames unaccounted
(attempted - served - failed: must be 0), and whether every robot was served again after the
restart, with the slowest robot's time from the server being ready. A robot is a camera at --rate
Hz: a frame that is not done by its next tick delays the next (as the node's mailbox keeps only the
newest frame). First, one robot's frames through the server against the in-process backend on the
same frames, one after the other: triton_over_in_process (per frame, medians). Prints a table; the
last line is JSON. Default: the tiny reference checkpoint (random weights: the masks mean nothing,
the timing of the path does).
"""
import argparse
import json
import multiprocessing
import os
import pathlib
import statistics
import tempfile
import time
from typing import Dict, List

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
TINY = REPO.parent / "shared" / "seem_reference" / "tiny"


def _frames() -> List[np.ndarray]:
    from PIL import Image
    from seem_ros.tools.evaluation import read_davis
    sequence = read_davis(str(REPO.parent / "shared" / "seem_reference" / "davis"))[0]
    return [np.asarray(Image.open(path).convert("RGB")) for path in sequence.frames]


def _tracker():
    """What every robot follows: a text object and a clicked one."""
    from seem_ros.inference.visual_prompt import VisualPrompt
    from seem_ros.tracking.tracker import ObjectTracker
    tracker = ObjectTracker()
    tracker.add("dog", text="dog")
    tracker.add("clicked", visual=VisualPrompt(points=[(400, 240, 1)]))
    return tracker


def _robot(cfg_kwargs: dict, frames_per_s: float, ready, go, stop_at, outcomes) -> None:
    """One robot: its own predictor and tracker; (start, end, outcome) per frame into outcomes."""
    import torch
    from seem_ros.runtime.backends import BackendConfig, apply_cpu_threads, create_predictor
    from seem_ros.runtime.triton_client import ServerUnavailable
    frames = _frames()
    cfg = BackendConfig(**cfg_kwargs)
    apply_cpu_threads(cfg)  # as the node does: backend triton, one torch thread
    predictor = create_predictor(cfg)
    tracker = _tracker()
    ready.set()
    go.wait()
    records, tick, index = [], time.monotonic(), 0
    while time.monotonic() < stop_at.value:
        start = time.monotonic()
        with torch.inference_mode():
            predictor.set_image(frames[index % len(frames)])
            try:
                tracker.step(predictor)
                outcome = "served"
            except ServerUnavailable as exc:
                outcome = exc.kind
            except Exception as exc:  # noqa: BLE001 - counted under its type, as the node counts it
                outcome = type(exc).__name__
        records.append((start, time.monotonic(), outcome))
        index += 1
        tick = max(tick + 1.0 / frames_per_s, time.monotonic())
        time.sleep(max(tick - time.monotonic(), 0))
    outcomes.put(records)


def _run(args, url: str, clients: int, server, seconds: float, restart: bool) -> Dict:
    context = multiprocessing.get_context("spawn")
    ready = [context.Event() for _ in range(clients)]
    go, outcomes = context.Event(), context.Queue()
    stop_at = context.Value("d", float("inf"))
    cfg = dict(checkpoint=args.checkpoint, model_config=args.config, backend="triton", triton_url=url,
               triton_timeout_ms=args.timeout_ms, embedding_cache_dir="", vocabulary=("object",))
    robots = [context.Process(target=_robot, args=(cfg, args.rate, ready[i], go, stop_at, outcomes))
              for i in range(clients)]
    for robot in robots:
        robot.start()
    for event in ready:
        event.wait(300)
    started = time.monotonic()
    stop_at.value = started + seconds
    go.set()
    killed_at = ready_at = None
    if restart:
        time.sleep(seconds / 2)
        killed_at = time.monotonic()
        server.kill()
        server.start()
        ready_at = server.ready_at
    records = [outcomes.get(timeout=seconds + 600) for _ in robots]
    for robot in robots:
        robot.join(60)
    served = [end - start for per in records for start, end, outcome in per if outcome == "served"]
    attempted = sum(len(per) for per in records)
    failed: Dict[str, int] = {}
    for per in records:
        for _, _, outcome in per:
            if outcome != "served":
                failed[outcome] = failed.get(outcome, 0) + 1
    row = {"clients": clients, "attempted": attempted, "served": len(served),
           "served_per_s": round(len(served) / seconds, 2),
           "p50_ms": round(float(np.percentile(served, 50)) * 1000, 1) if served else None,
           "p99_ms": round(float(np.percentile(served, 99)) * 1000, 1) if served else None,
           "failed": failed, "unaccounted": attempted - len(served) - sum(failed.values())}
    if restart:
        recovered = [min((end for start, end, outcome in per if outcome == "served" and start >= killed_at),
                         default=None) for per in records]
        row["all_recovered"] = all(r is not None for r in recovered)
        row["slowest_recovery_s"] = (round(max(r - ready_at for r in recovered), 2) if row["all_recovered"] else None)
    return row


def _in_process_ratio(args, url: str, count: int) -> Dict:
    """Per-frame medians of one robot's frames in process, through the server, and through it with
    shared memory: each frame taken by the three in turn, so that they meet the same load."""
    import torch
    from seem_ros.runtime.backends import BackendConfig, apply_cpu_threads, create_predictor, move_predictor
    frames = _frames()
    remote = {"backend": "triton", "triton_url": url, "triton_timeout_ms": args.timeout_ms}
    ways = {"in_process": {}, "triton": remote, "triton_shm": dict(remote, triton_shared_memory=True)}
    robots = {}
    for name, extra in ways.items():
        cfg = BackendConfig(args.checkpoint, args.config, embedding_cache_dir="", vocabulary=("object",), **extra)
        robots[name] = (create_predictor(cfg), _tracker(), cfg)
    per_frame: Dict[str, List[float]] = {name: [] for name in ways}
    for i in range(count + 2):  # the first two (the canvas, the text embedding) not counted
        for name, (predictor, tracker, cfg) in robots.items():
            apply_cpu_threads(cfg)  # the threads each robot's own process would have
            start = time.perf_counter()
            with torch.inference_mode():
                predictor.set_image(frames[i % len(frames)])
                tracker.step(predictor)
            per_frame[name].append(time.perf_counter() - start)
    for predictor, _, _ in robots.values():
        move_predictor(predictor, "cpu")  # the server lets go of the shared memory
    times = {name: statistics.median(values[2:]) * 1000 for name, values in per_frame.items()}
    return {"in_process_ms": round(times["in_process"], 1), "triton_ms": round(times["triton"], 1),
            "triton_shm_ms": round(times["triton_shm"], 1),
            "triton_over_in_process": round(times["triton"] / times["in_process"], 3),
            "triton_shm_over_in_process": round(times["triton_shm"] / times["in_process"], 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="1,2,4,8", help="comma-separated robot counts (default %(default)s)")
    parser.add_argument("--rate", type=float, default=2.0, help="frames per second per robot (default %(default)s)")
    parser.add_argument("--minutes", type=float, default=1.0, help="per row (default %(default)s)")
    parser.add_argument("--checkpoint", default=str(TINY / "tiny_seem.pt"))
    parser.add_argument("--config", default=str(TINY / "tiny_config.yaml"))
    parser.add_argument("--timeout-ms", type=int, default=2000, help="each frame's request (default %(default)s)")
    parser.add_argument("--no-restart", action="store_true", help="do not kill and restart the server halfway")
    parser.add_argument("--ratio-frames", type=int, default=20, help="frames for triton_over_in_process")
    args = parser.parse_args()
    from seem_ros.tools.serve_process import ServeProcess
    counts = [int(n) for n in args.clients.split(",") if n]
    seconds = args.minutes * 60
    rows = []
    with tempfile.TemporaryDirectory() as logs:
        for batching, extra in (("dynamic", ["--max-batch-size", "8"]), ("none", ["--max-batch-size", "1"])):
            server = ServeProcess(pathlib.Path(logs), args.checkpoint, args.config, extra=extra).start()
            try:
                if batching == "dynamic":
                    ratio = _in_process_ratio(args, server.url, args.ratio_frames)
                    print(f"one robot, frame by frame: in process {ratio['in_process_ms']} ms, through the server "
                          f"{ratio['triton_ms']} ms ({ratio['triton_over_in_process']}x), with shared memory "
                          f"{ratio['triton_shm_ms']} ms ({ratio['triton_shm_over_in_process']}x)", flush=True)
                for clients in counts:
                    row = dict(batching=batching, **_run(args, server.url, clients, server, seconds,
                                                        not args.no_restart))
                    rows.append(row)
                    print(row, flush=True)
            finally:
                server.stop()
    print(f"\n{'batching':>8} {'robots':>6} {'served/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'unaccounted':>11} "
          f"{'recovered':>9} {'slowest s':>9}  failed")
    for r in rows:
        print(f"{r['batching']:>8} {r['clients']:>6} {r['served_per_s']:>8} {str(r['p50_ms']):>7} {str(r['p99_ms']):>7} "
              f"{r['unaccounted']:>11} {str(r.get('all_recovered', '-')):>9} {str(r.get('slowest_recovery_s', '-')):>9}"
              f"  {r['failed']}")
    print(json.dumps({"cpu": f"{os.cpu_count()} cores", "rate_hz": args.rate, "seconds_per_row": seconds, **ratio,
                      "rows": rows}))


if __name__ == "__main__":
    main()

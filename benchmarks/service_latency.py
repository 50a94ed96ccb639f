"""How fast seem_node's lifecycle and prompt services answer while the model runs: seem_node (tiny
reference checkpoint, input_short_side 1536 so that one segment_image call keeps the model busy for
seconds) in its own process; get_state, set_prompt and clear_prompts called over and over from this
process until segment_image answers. Prints each service's answers and p50/max latency; the last
line is JSON (ms).

    .venv/bin/python benchmarks/service_latency.py [--rounds 3]

The figure depends on the machine's load (a fresh 2-core machine: ~45 ms at most; 268 ms was seen
while another process read files), which is why it lives here and not in a timed test:
test_defects_node.py asserts that every service answers while the model runs.
"""
import argparse
import json
import pathlib
import statistics
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "test"))

from ros_harness import NodeProcess, answers_while_the_model_runs, apply_ros_environment  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="segment_image calls to measure during (default 3)")
    args = parser.parse_args()
    apply_ros_environment()
    import rclpy
    rclpy.init()
    client = rclpy.create_node("service_latency_client")
    answers = {"get_state": [], "set_prompt": [], "clear_prompts": []}
    with tempfile.TemporaryDirectory() as folder:
        node = NodeProcess(pathlib.Path(folder) / "seem_node.log", {"input_short_side": 1536}, name="seem_busy")
        try:
            if not node.wait_for_log("processing /image", timeout=120):
                raise SystemExit(f"seem_node did not start:\n{node.log()[-2000:]}")
            for _ in range(args.rounds):
                for name, seconds in answers_while_the_model_runs(client, "seem_busy").items():
                    answers[name] += seconds
        finally:
            node.stop()
            client.destroy_node()
            rclpy.shutdown()
    figures = {}
    for name, seconds in answers.items():
        ms = [s * 1000 for s in seconds]
        figures[f"{name}_p50_ms"] = round(statistics.median(ms), 1) if ms else None
        figures[f"{name}_max_ms"] = round(max(ms), 1) if ms else None
        print(f"{name}: {len(ms)} answers while the model ran, p50 {figures[f'{name}_p50_ms']} ms, "
              f"max {figures[f'{name}_max_ms']} ms")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

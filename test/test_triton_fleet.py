"""The README's load benchmark (benchmarks/fleet.py), small: two robot processes against
`seem-ros serve` for 20 s a row, with and without dynamic batching, after the one-robot ratio.
Every frame a robot tried is served or counted with its reason; no speed is asserted here (the
figures are the benchmark's, printed)."""
import json
import subprocess
import sys

from conftest import REPO, reference_path
from triton_harness import require_triton


def test_the_fleet_benchmark_accounts_for_every_frame_and_prints_its_figures():
    require_triton()
    tiny = reference_path("tiny")
    run = subprocess.run([sys.executable, str(REPO / "benchmarks" / "fleet.py"), "--clients", "2", "--minutes",
                          str(20 / 60), "--no-restart", "--ratio-frames", "2", "--timeout-ms", "30000",
                          "--checkpoint", str(tiny / "tiny_seem.pt"), "--config", str(tiny / "tiny_config.yaml")],
                         capture_output=True, text=True, timeout=900, cwd=REPO)
    print(run.stdout[-3000:])
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    figures = json.loads(run.stdout.strip().splitlines()[-1])
    assert {"in_process_ms", "triton_ms", "triton_shm_ms", "triton_over_in_process",
            "triton_shm_over_in_process"} <= set(figures)
    assert [(row["batching"], row["clients"]) for row in figures["rows"]] == [("dynamic", 2), ("none", 2)]
    for row in figures["rows"]:
        assert row["served"] > 0 and row["unaccounted"] == 0, row

"""The 60-second soak (benchmarks/soak.py --minutes 1): seem_node across processes with a camera
that is killed and restarted, prompts changed every second, a corrupt checkpoint first, and SIGINT
mid-stream at the end. Every frame and every prompt must be accounted for and the exit clean."""
import json
import os
import subprocess
import sys

from conftest import REPO, REFERENCE


def test_one_minute_soak_accounts_for_everything_and_exits_cleanly():
    run = subprocess.run([sys.executable, str(REPO / "benchmarks" / "soak.py"), "--minutes", "1"],
                         capture_output=True, text=True, timeout=600, cwd=REPO,
                         env={**os.environ, "SEEM_REFERENCE": str(REFERENCE)})
    print(run.stdout[-3000:])
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    figures = json.loads(run.stdout.strip().splitlines()[-1])
    assert figures["recovered_from_corrupt_checkpoint"]
    assert figures["frames_sent"] > 300 and figures["frames_processed"] > 0
    assert figures["frames_unaccounted"] == 0
    assert figures["prompts_sent"] >= 50 and figures["prompts_lost_uncounted"] == 0
    assert figures["exit_code"] == 0 and figures["shutdown_s"] <= 2.0
    # a leak of even 1 MB per frame would add ~500 MB here; the 10-minute figure is in the README
    assert figures["rss_growth_pct"] <= 15.0

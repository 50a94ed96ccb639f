"""The parity tests' noise model, shown (README, "How exact"): the parity cases run under several
thread counts and CPU instruction sets, and our model in float64, each compared with the official
float32 outputs by test/noise_model.py. Per configuration: the largest |difference| and the largest
ratio of a difference to its bar (ATOL + RTOL x |value|; must stay <= 1), the mask and label pixels
that differ, how many of them are near-ties (excluded) and how many are not (must be 0).

    .venv/bin/python benchmarks/noise_table.py [--cases test/test_model_parity.py ...]

About 2 minutes per configuration on a 2-core CPU. Prints a Markdown table; the last line is JSON.
"""
import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
from typing import Tuple

import numpy as np
import torch

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "test"))

CONFIGURATIONS = [  # (name, environment)
    ("2 threads, native ISA", {"SEEM_TEST_THREADS": "2"}),
    ("1 thread, native ISA", {"SEEM_TEST_THREADS": "1"}),
    ("2 threads, ATEN_CPU_CAPABILITY=avx2", {"SEEM_TEST_THREADS": "2", "ATEN_CPU_CAPABILITY": "avx2"}),
    ("2 threads, ATEN_CPU_CAPABILITY=default", {"SEEM_TEST_THREADS": "2", "ATEN_CPU_CAPABILITY": "default"}),
]


def run_tests(files, env) -> Tuple[list, bool]:
    """-> (the comparisons' records, whether every test passed)."""
    with tempfile.NamedTemporaryFile("r", suffix=".jsonl") as report:
        run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files],
                             env={**os.environ, **env, "SEEM_NOISE_REPORT": report.name}, cwd=REPO,
                             stdout=subprocess.DEVNULL)
        return [json.loads(line) for line in report], run.returncode == 0


def float64_records() -> list:
    """Our encoder and decoder in float64 on the official input of the panoptic case: how far the
    official float32 outputs are from (nearly) exact arithmetic."""
    import noise_model
    from conftest import load_case, reference_path
    from seem_ros.inference.predictor import SeemPredictor
    from seem_ros.weights import load_seem

    records = []
    os.environ["SEEM_NOISE_REPORT"] = path = tempfile.mktemp(suffix=".jsonl")
    try:
        import yaml
        config = yaml.safe_load(reference_path("tiny", "tiny_config.yaml").read_text())
        model = load_seem(str(reference_path("tiny", "tiny_seem.pt")), config)
        embeddings = SeemPredictor(model).class_embeddings.double()
        model = model.double()
        case = load_case("a_panoptic_zebras1")
        with torch.no_grad():
            x = torch.from_numpy(case["rec/backbone_in/0"]).double()
            mask_features, multi_scale = model.sem_seg_head.pixel_decoder(model.backbone(x))
            noise_model.assert_close(mask_features, case["rec/pixdec/0/mask_features"], "mask_features")
            out = model.decoder(multi_scale, mask_features, text_embeddings=embeddings)
        for key in ("pred_logits", "pred_masks"):
            noise_model.assert_close(out.official(key), case[f"rec/pred_calls/0/out/{key}"], key)
            ours, official = out.official(key).numpy(), case[f"rec/pred_calls/0/out/{key}"]
            if key == "pred_masks":
                noise_model.assert_decided_equal(ours > 0, official > 0, official, "pred_masks > 0")
        records = [json.loads(line) for line in open(path)]
    finally:
        os.environ.pop("SEEM_NOISE_REPORT")
        if os.path.exists(path):
            os.unlink(path)
    return records


def summary(records: list, passed: bool = True) -> dict:
    floats = [r for r in records if r["kind"] == "float"]
    decisions = [r for r in records if r["kind"] == "decision"]
    worst = max(floats, key=lambda r: r["max_ratio"])
    return {"tests_passed": passed, "comparisons": len(records), "max_abs_diff": max(r["max_diff"] for r in floats),
            "max_ratio_to_bar": round(worst["max_ratio"], 3), "worst": worst["name"],
            "pixels_differing": sum(r["differing"] for r in decisions),
            "of_them_near_ties": sum(r["near_ties_differing"] for r in decisions),
            "near_ties_excluded": sum(r["near_ties"] for r in decisions),
            "decided_pixels_differing": sum(r["decided_differing"] for r in decisions)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=["test/test_model_parity.py", "test/test_engine.py"])
    args = parser.parse_args()
    rows = [(name, summary(*run_tests(args.cases, env))) for name, env in CONFIGURATIONS]
    rows.append(("our model in float64 (panoptic case)", summary(float64_records())))
    print(f"CPU: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.backends.cpu.get_cpu_capability()} native")
    print("| configuration | tests pass | comparisons | largest abs diff | largest diff / bar | where | pixels differing "
          "(near-ties) | near-ties excluded | decided pixels differing |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, s in rows:
        print(f"| {name} | {'yes' if s['tests_passed'] else 'NO'} | {s['comparisons']} | {s['max_abs_diff']:.3g} | {s['max_ratio_to_bar']} | {s['worst']} | "
              f"{s['pixels_differing']} ({s['of_them_near_ties']}) | {s['near_ties_excluded']} | "
              f"{s['decided_pixels_differing']} |")
    print(json.dumps({name: s for name, s in rows}))


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()

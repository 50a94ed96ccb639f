#!/usr/bin/env bash
# Every GPU check in one run (CI has no GPU): the CUDA tests (model parity, fp16, the node's GPU
# duties at the model level, the frame engine, the exported graphs, torch.compile) and the frame benchmark on
# CUDA in fp32, fp32 with the image encoder and frame decoder in CUDA graphs, fp16 autocast with the graphs, and
# both compiled (torch.compile) inside the graphs; each run also times the image encoder held in bf16
# (encoder_bf16_over_fp32). Needs python3 with torch (CUDA); no ROS. Writes logs to $OUT (default: gpu_check_out/).
#
#   benchmarks/gpu_check.sh                      # on a GPU machine, in the repository root
#
# Where a machine lacks packages or the reference fixtures, put wheels in .gpu/whl and a copy of
# seem_reference in .gpu/seem_reference (both git-ignored): they are used when present.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT="${OUT:-gpu_check_out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if compgen -G ".gpu/whl/*.whl" > /dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/seem_site .gpu/whl/*.whl || exit 1
  export PYTHONPATH="$PYTHONPATH:/tmp/seem_site"
fi
[ -d .gpu/seem_reference ] && export SEEM_REFERENCE="$PWD/.gpu/seem_reference"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT/gpu.txt"
status=0
# test_engine_export.py runs the exported graphs in ONNX Runtime on the CPU (as CI does) and in
# TensorRT engines: worth its minutes here only where `import tensorrt` works
tests=(test/test_model_cuda.py test/test_robustness_cuda.py test/test_engine_cuda.py test/test_speed_compile.py)
"$PY" -c "import tensorrt" 2>/dev/null && tests+=(test/test_engine_export.py)
"$PY" -m pytest "${tests[@]}" -v -s -p no:cacheprovider 2>&1 | tee "$OUT/cuda_tests.log" || status=1
for run in "fp32" "fp32 --cuda-graphs" "fp16 --cuda-graphs" "fp32 --cuda-graphs --compile" "fp16 --cuda-graphs --compile"; do
  set -- $run
  "$PY" benchmarks/frame_pipeline.py --device cuda --precision "$@" --repeats 10 2>&1 \
    | tee "$OUT/frame_pipeline_cuda_${1}${2:+_graphs}${3:+_compiled}.log" || status=1
done
exit $status

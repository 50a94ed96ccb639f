#!/usr/bin/env bash
# One-command set-up on a fresh machine (Python 3.11, gcc, cmake, git):
# creates .venv, installs ROS 2 wheels, torch (CPU), onnxruntime, opencv, builds the
# seem_ros_interfaces messages and installs seem_ros itself (editable).
# Idempotent: a second run only re-checks what is already there.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SEEM_ROS_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null || PY=python3

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip"
$PIP install -q --upgrade pip wheel setuptools

# requirements.txt pins torch==2.13.0: the CPU build on this disk (unpinned, pip takes a multi-GB CUDA build).
$PIP install -q -r "$ROOT/requirements.txt"
# open_clip ships the CLIP BPE vocabulary we tokenize with; --no-deps because its dependencies
# (torchvision, timm) are not needed for the vocabulary and torchvision does not load beside torch 2.13.
$PIP install -q --no-deps open_clip_torch==3.3.0
# TensorRT's type stubs, for type-checking the TensorRT backend without TensorRT (test_deploy_tensorrt.py):
# in a folder of their own, not site-packages, where their stub-only `tensorrt` folder would import
# as an empty namespace package and look like an installed TensorRT. The generated stubs name two
# parameters `in` and give a defaulted parameter before a plain one, which no Python parser takes:
# renamed in this copy.
STUBS="$VENV/typing/tensorrt-stubs"
if [ ! -f "$STUBS/tensorrt_bindings/tensorrt.pyi" ]; then
  $PIP install -q --no-deps --target "$STUBS" tensorrt-stubs==10.13.0.35.1
  sed -i -E 's/([(,] ?)in: /\1in_: /g; s/power: Weights = None, channel_axis: int\)/power: Weights = None, channel_axis: int = ...)/' \
    "$STUBS/tensorrt_bindings/tensorrt.pyi"
fi
# seem_ros_interfaces: rosidl messages built with the wheels' cmake packages into the venv prefix
"$ROOT/scripts/build_interfaces.sh" "$VENV"
# vision_msgs (every ROS install has it; the wheels here lack it): built from the test-time copy in
# ../shared/third_party where there is one, so that the node's vision_msgs topics are tested
VISION_MSGS="$ROOT/../shared/third_party/vision_msgs/vision_msgs"
if [ -d "$VISION_MSGS" ]; then
  "$ROOT/scripts/build_interfaces.sh" "$VENV" "$VISION_MSGS"
fi
$PIP install -q --no-deps --no-build-isolation -e "$ROOT"
echo "seem_ros: environment ready in $VENV"

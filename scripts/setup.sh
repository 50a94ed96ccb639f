#!/usr/bin/env bash
# One-command set-up on a fresh machine (Python 3.11, gcc, cmake, git):
# creates .venv, installs ROS 2 wheels, torch (CPU), onnxruntime, opencv, builds the
# seem_ros messages and services and installs seem_ros itself (editable).
# SEEM_ROS_DISTRO=jazzy sets up ROS 2 Jazzy instead of Kilted, in .venv-jazzy (scripts/ros_distro.sh).
# Idempotent: a second run only re-checks what is already there.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/ros_distro.sh"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null || PY=python3

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip"
$PIP install -q --upgrade pip wheel setuptools

# requirements.txt pins torch==2.13.0: the CPU build on this disk (unpinned, pip takes a multi-GB CUDA build).
if [ "$DISTRO" = kilted ]; then
  $PIP install -q -r "$ROOT/requirements.txt"
else
  REQUIREMENTS="$VENV/requirements-$DISTRO.txt"
  sed -E -e "/# on $DISTRO:/{s/^.*# on $DISTRO: +//; s/ +/\n/g}" -e "s/(^|\n)ros-/\1ros-$DISTRO-/g" \
    "$ROOT/requirements.txt" > "$REQUIREMENTS"
  $PIP install -q -r "$REQUIREMENTS"
fi
# Triton Inference Server for `seem-ros serve` (the wheel bundles tritonserver and its Python backend):
# without its dependencies, whose numpy<2 pin conflicts with OpenCV 5's numpy>=2 (requirements.txt has the
# rest); its Python-backend stub gets a numpy 1.x environment of its own (runtime/triton_server.py), made
# below. Kilted only: the serving tests run in .venv
if [ "$DISTRO" = kilted ]; then
  $PIP install -q --no-deps nvidia-pytriton==0.7.0
fi
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
# seem_ros's messages and services (seem_ros.msg, seem_ros.srv): rosidl, built with the wheels' cmake
# packages into the venv prefix
"$ROOT/scripts/build_interfaces.sh" "$VENV"
# ROS packages every ROS install has and the registries here lack (vision_msgs, launch, launch_ros,
# launch_testing, composition_interfaces): installed from the unmodified test-time copies in
# ../shared/third_party where there is one, for the tests of the node's vision_msgs topics and of
# the launch file run for real. seem_ros itself does not need them to run.
THIRD_PARTY="$ROOT/../shared/third_party"
if [ -d "$THIRD_PARTY" ]; then
  "$ROOT/scripts/build_interfaces.sh" "$VENV" "$THIRD_PARTY/vision_msgs/vision_msgs"
  "$ROOT/scripts/build_interfaces.sh" "$VENV" "$THIRD_PARTY/rcl_interfaces/composition_interfaces"
  if ! "$VENV/bin/python" -c "import launch, launch_ros" 2>/dev/null; then
    $PIP install -q --no-deps --no-build-isolation "$THIRD_PARTY/launch/launch" "$THIRD_PARTY/launch_ros/launch_ros"
  fi
  # launch_testing registers a pytest plugin written for an older pytest, which fails to load in
  # this one: it goes into a folder of its own, put on the path of the launch_test runs only
  if [ ! -d "$VENV/launch_testing/launch_testing" ]; then
    $PIP install -q --no-deps --no-build-isolation --target "$VENV/launch_testing" \
      "$THIRD_PARTY/launch/launch_testing" "$THIRD_PARTY/launch_ros/launch_testing_ros"
  fi
fi
# compat mode: the checkout's root on sys.path (a .pth file), not an import hook, so that seem_ros
# here and the generated seem_ros.msg/.srv form one package (seem_ros/__init__.py)
$PIP install -q --no-deps --no-build-isolation -e "$ROOT" --config-settings editable_mode=compat
if [ "$DISTRO" = kilted ]; then
  "$VENV/bin/python" -c "from seem_ros.runtime.triton_server import stub_environment; stub_environment()"
fi
echo "seem_ros: environment ready in $VENV"

#!/usr/bin/env bash
# One-command set-up on a fresh machine (Python 3.11, gcc, cmake, git):
# creates .venv, installs ROS 2 wheels, torch (CPU), onnxruntime, opencv,
# builds the seem_ros_interfaces messages and installs seem_ros itself.
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

# torch: the CPU build (a newer/unpinned torch pulls a multi-GB CUDA build).
$PIP install -q -r "$ROOT/requirements.txt"

"$ROOT/scripts/build_interfaces.sh" "$VENV"
$PIP install -q --no-deps --no-build-isolation -e "$ROOT"
echo "seem_ros: environment ready in $VENV"

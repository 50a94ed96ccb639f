#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: set-up first (idempotent), then pytest.
# Reference fixtures are read from ../shared/seem_reference (override with SEEM_REFERENCE).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The suite runs on Kilted (or SEEM_ROS_DISTRO's distribution); test/test_deploy_jazzy.py runs the
# ROS-side modules again in the Jazzy venv, set up here too.
source "$ROOT/scripts/ros_distro.sh"
"$ROOT/scripts/setup.sh"
SEEM_ROS_VENV="" SEEM_ROS_DISTRO=jazzy "$ROOT/scripts/setup.sh"
cd "$ROOT"
exec "$VENV/bin/python" -m pytest test -q "$@"

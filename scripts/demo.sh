#!/usr/bin/env bash
# The main job in one command: the set-up (idempotent: a second run only re-checks), then seem_node
# in its own process on a recorded sequence, prompted with a text command and a click, its outputs
# written into --out (default demo_out/): overlay.mp4, labels/, objects.jsonl, bag/ (MCAP), seem_node.log.
#
#   ./scripts/demo.sh [SOURCE] [--text "segment the zebra"] [--click X,Y] [--out DIR]
#                     [--checkpoint PATH --config CFG] [--device cuda]
#
# SOURCE: a video file, an image folder or a rosbag2 (--topic chooses its image topic); without one,
# demo/zebras_pan (12 frames shipped with the repository, see demo/README.md). The default checkpoint is
# the released Focal-T v1, fetched once into the Hugging Face cache (seem-ros download).
# SEEM_ROS_DISTRO=jazzy: on ROS 2 Jazzy (in .venv-jazzy) instead of Kilted.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/ros_distro.sh"
"$ROOT/scripts/setup.sh" >&2
SOURCE="$ROOT/demo/zebras_pan"
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  SOURCE="$1"
  shift
fi
exec "$VENV/bin/python" -m seem_ros.tools.demo "$SOURCE" "$@"

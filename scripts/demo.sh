#!/usr/bin/env bash
# The main job in one command: the set-up (idempotent: a second run only re-checks), then seem_node
# in its own process on a recorded sequence, prompted with a text command and a click, its outputs
# written into --out (default demo_out/): overlay.mp4, labels/, objects.jsonl, bag/ (MCAP), seem_node.log.
#
#   ./scripts/demo.sh [SOURCE] [--text "segment the dog"] [--click X,Y] [--out DIR]
#                     [--checkpoint PATH --config CFG] [--device cuda]
#
# SOURCE: a video file, an image folder or a rosbag2 (--topic chooses its image topic). Without one,
# the DAVIS "dog" frames of ../shared/seem_reference when they are there. The default checkpoint is
# the released Focal-T v1, fetched once into the Hugging Face cache (seem-ros download).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh" >&2
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  SOURCE="$1"
  shift
else
  SOURCE="$ROOT/../shared/seem_reference/davis/JPEGImages/480p/dog"
  if [ ! -d "$SOURCE" ]; then
    echo "demo.sh: give a SOURCE (a video file, an image folder or a rosbag2): there is no default sequence here" >&2
    exit 2
  fi
fi
exec "$ROOT/.venv/bin/python" -m seem_ros.demo "$SOURCE" "$@"

#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: set-up first (idempotent), then pytest.
# Reference fixtures are read from ../shared/seem_reference (override with SEEM_REFERENCE).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
VENV="${SEEM_ROS_VENV:-$ROOT/.venv}"
cd "$ROOT"
exec "$VENV/bin/python" -m pytest test -q "$@"

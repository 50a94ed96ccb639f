#!/usr/bin/env bash
# Builds an interface package (rosidl, C + Python type support) with the ROS 2 pip wheels and cmake,
# and installs it into the venv prefix. Usage: build_interfaces.sh VENV [PACKAGE_SOURCE]
# (default: seem_ros_interfaces, whose .msg/.srv files are the top-level msg/ and srv/).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$(cd "$1" && pwd)"
SOURCE="$(cd "${2:-$ROOT/seem_ros_interfaces}" && pwd)"
NAME="$(basename "$SOURCE")"
PY="$VENV/bin/python"
BUILD="$VENV/build/$NAME"  # per venv: a Kilted and a Jazzy build of one package must not share a CMake cache
mkdir -p "$VENV/build"

# Skip when the installed interfaces are newer than every source file.
STAMP="$VENV/share/$NAME/.seem_ros_build_stamp"
SOURCES=("$SOURCE")
[ "$NAME" = seem_ros_interfaces ] && SOURCES+=("$ROOT/msg" "$ROOT/srv")
if [ -f "$STAMP" ] && [ -z "$(find "${SOURCES[@]}" -newer "$STAMP" -type f)" ]; then
  exit 0
fi

# The wheels' exported CMake files name the include dirs of the machine they were built on.
PY_INCLUDE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
NP_INCLUDE="$("$PY" -c 'import numpy; print(numpy.get_include())')"
# (a rebuild finds nothing left to rewrite: grep's "no match" must not end the script)
{ grep -rl --include='*.cmake' '/opt/python/cp311-cp311' "$VENV/share" 2>/dev/null || true; } | while read -r f; do
  sed -i -e "s#/opt/python/cp311-cp311/include/python3.11#$PY_INCLUDE#g" \
         -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$NP_INCLUDE#g" "$f"
done

export AMENT_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH"
cmake -S "$SOURCE" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
  -DCMAKE_INSTALL_PREFIX="$VENV" -DCMAKE_PREFIX_PATH="$VENV" \
  -DPython3_EXECUTABLE="$PY" -DPYTHON_EXECUTABLE="$PY" -Wno-dev > "$BUILD.configure.log" 2>&1 \
  || { cat "$BUILD.configure.log"; exit 1; }
cmake --build "$BUILD" -j"$(nproc)" > "$BUILD.build.log" 2>&1 || { tail -50 "$BUILD.build.log"; exit 1; }
cmake --install "$BUILD" > "$BUILD.install.log" 2>&1 || { tail -50 "$BUILD.install.log"; exit 1; }
touch "$STAMP"

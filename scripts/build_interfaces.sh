#!/usr/bin/env bash
# Builds ROS interfaces (rosidl, C + Python type support) with the ROS 2 pip wheels and cmake, and
# installs them into the venv prefix. Usage: build_interfaces.sh VENV [PACKAGE_SOURCE]
# Default: seem_ros's own messages and services (top-level msg/ and srv/, CMakeLists.txt with
# SEEM_ROS_MESSAGES_ONLY), whose Python modules go into a folder of their own that a .pth file puts
# on sys.path: seem_ros itself is an editable install, and seem_ros/__init__.py joins the two.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$(cd "$1" && pwd)"
SOURCE="$(cd "${2:-$ROOT}" && pwd)"
NAME="$(sed -n 's:.*<name>\(.*\)</name>.*:\1:p' "$SOURCE/package.xml" | head -1)"
PY="$VENV/bin/python"
BUILD="$VENV/build/$NAME"  # per venv: a Kilted and a Jazzy build of one package must not share a CMake cache
mkdir -p "$VENV/build"
EXTRA_ARGS=()
SOURCES=("$SOURCE")
if [ "$SOURCE" = "$ROOT" ]; then
  MESSAGES_DIR="lib/seem_ros_messages"
  EXTRA_ARGS=(-DSEEM_ROS_MESSAGES_ONLY=ON "-DPYTHON_INSTALL_DIR=$MESSAGES_DIR")
  SOURCES=("$ROOT/msg" "$ROOT/srv" "$ROOT/CMakeLists.txt" "$ROOT/package.xml")
fi

# Skip when the installed interfaces are newer than every source file.
STAMP="$VENV/share/$NAME/.seem_ros_build_stamp"
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
  -DPython3_EXECUTABLE="$PY" -DPYTHON_EXECUTABLE="$PY" "${EXTRA_ARGS[@]}" -Wno-dev > "$BUILD.configure.log" 2>&1 \
  || { cat "$BUILD.configure.log"; exit 1; }
cmake --build "$BUILD" -j"$(nproc)" > "$BUILD.build.log" 2>&1 || { tail -50 "$BUILD.build.log"; exit 1; }
cmake --install "$BUILD" > "$BUILD.install.log" 2>&1 || { tail -50 "$BUILD.install.log"; exit 1; }
if [ -n "${MESSAGES_DIR:-}" ]; then
  # rosidl registers the generated modules as a distribution named seem_ros (an egg-info listing
  # them): pip, installing seem_ros editable, took it for an older seem_ros and uninstalled the
  # generated modules with it. The egg-info this build wrote goes.
  rm -rf "$VENV/$MESSAGES_DIR"/seem_ros-*.egg-info
  # after the editable install's .pth (names sort so), whichever seem_ros folder Python meets first
  # joins the other (rosidl wrote an empty __init__.py here)
  SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  echo "$VENV/$MESSAGES_DIR" > "$SITE/seem_ros_messages.pth"
  echo '__path__ = __import__("pkgutil").extend_path(__path__, __name__)' > "$VENV/$MESSAGES_DIR/seem_ros/__init__.py"
fi
touch "$STAMP"

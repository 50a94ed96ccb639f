# Sourced by setup.sh, demo.sh and test.sh: the ROS 2 distribution (SEEM_ROS_DISTRO: kilted, the
# default, or jazzy) and its venv (SEEM_ROS_VENV, else .venv for Kilted and .venv-jazzy for Jazzy:
# the two distributions' wheels install under the same distribution names, so each needs its own).
DISTRO="${SEEM_ROS_DISTRO:-kilted}"
case "$DISTRO" in
  kilted) VENV="${SEEM_ROS_VENV:-$ROOT/.venv}" ;;
  jazzy) VENV="${SEEM_ROS_VENV:-$ROOT/.venv-jazzy}" ;;
  *) echo "SEEM_ROS_DISTRO=$DISTRO: kilted or jazzy" >&2; exit 2 ;;
esac

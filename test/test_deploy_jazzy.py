"""The ROS-side tests again on ROS 2 Jazzy, the LTS most robots run (the main venv has Kilted).
Jazzy's wheels install under the same distribution names as Kilted's, so Jazzy has a venv of its
own, .venv-jazzy, which the test command sets up (SEEM_ROS_DISTRO=jazzy scripts/setup.sh). Every
test module that starts ROS runs there, each in a pytest process of its own; a module passes here
when it passes there.

Found by running them there: Fast DDS 2 (Jazzy) reads its profile only from
FASTRTPS_DEFAULT_PROFILES_FILE (ros_in/fastdds.py), Jazzy's rclpy gives no publisher GID with a
message (ros_in/sequence_gaps.py) and its MultiThreadedExecutor.shutdown takes no wait_for_threads."""
import os
import pathlib
import subprocess
import sys

import pytest

from conftest import REPO
from seem_ros.ros_in.fastdds import FASTDDS_VARIABLE, FASTRTPS_VARIABLE

JAZZY_PYTHON = pathlib.Path(os.environ.get("SEEM_ROS_JAZZY_VENV", REPO / ".venv-jazzy")) / "bin" / "python"
TESTS = REPO / "test"
MODULE_TIMEOUT_S = 900
pytestmark = pytest.mark.skipif(not JAZZY_PYTHON.exists(), reason=f"no Jazzy venv at {JAZZY_PYTHON.parents[1]}: "
                                "SEEM_ROS_DISTRO=jazzy scripts/setup.sh makes it")


def ros_side_modules():
    """The modules that start ROS: rclpy in the test process or ROS processes (ros_harness's environment)."""
    return [path.name for path in sorted(TESTS.glob("test_*.py"))
            if path.name != pathlib.Path(__file__).name and "ros_environment()" in path.read_text()]


def jazzy_environment() -> dict:
    """This process's environment without what its own ROS set-up added: Jazzy's python then finds
    its own libraries (its wheels' bootstrapper sets LD_LIBRARY_PATH when that guard is unset)."""
    kilted = ("_ROS_WHEELS_BOOTSTRAP_COMPLETE", "AMENT_PREFIX_PATH", "PYTHONPATH", "ROS_DOMAIN_ID", "SEEM_ROS_VENV",
              "SEEM_ROS_DISTRO", FASTDDS_VARIABLE, FASTRTPS_VARIABLE)
    env = {name: value for name, value in os.environ.items() if name not in kilted}
    env["LD_LIBRARY_PATH"] = os.pathsep.join(part for part in env.get("LD_LIBRARY_PATH", "").split(os.pathsep)
                                             if part and not part.startswith(sys.prefix))
    return env


def test_the_jazzy_venv_has_jazzy():
    versions = subprocess.run([str(JAZZY_PYTHON), "-c", "import importlib.metadata as m, rclpy; "
                               "print(m.version('ros-jazzy-rclpy'), rclpy.__file__)"],
                              env=jazzy_environment(), capture_output=True, text=True, timeout=120)
    assert versions.returncode == 0, versions.stderr
    rclpy_version, rclpy_file = versions.stdout.split()
    assert rclpy_version.startswith("7.") and rclpy_file.startswith(str(JAZZY_PYTHON.parents[1]))


@pytest.mark.parametrize("module", ros_side_modules())
def test_ros_side_module_passes_on_jazzy(module):
    run = subprocess.run([str(JAZZY_PYTHON), "-m", "pytest", "-q", "-p", "no:cacheprovider", f"test/{module}"],
                         cwd=REPO, env=jazzy_environment(), capture_output=True, text=True, timeout=MODULE_TIMEOUT_S)
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else ""
    print(f"Jazzy, {module}: {summary}")
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]

"""`ros2 launch` for real: a colcon workspace whose src/ holds this clone is built into a scratch
folder with a plain `colcon build` and the ROS wheels (seem_ros, one ament_cmake package, installed
the ament way: ament index entry, lib/seem_ros/seem_node, share/seem_ros/{launch,config}, the
generated seem_ros.msg/.srv beside the Python package), and every `ros2 launch` line of the README
is run from that install space as ros2launch runs it (ros_tools/ros2_launch.py: a LaunchService
including the installed launch file with the line's launch arguments; launch and launch_ros from
../shared/third_party). Each line's arguments reach the node, read back through its parameter
service; frames are processed where the line can run here (the CUDA lines cannot: no GPU, and
their node says so and stays up unconfigured); SIGINT to the launch stops everything with exit
code 0."""
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO, reference_path
from launch_file import launch_file
from ros_harness import (TOOLS, apply_ros_environment, node_parameters, ros_environment, run_tool, spin_until)
from seem_ros.node.parameters import from_launch_text
from test_defects_parameters import readme_launch_lines

apply_ros_environment()  # before rclpy is imported anywhere in this process

from seem_ros.msg import SegmentationResult  # noqa: E402

VENV = pathlib.Path(sys.prefix)
TINY = {"checkpoint": str(reference_path("tiny", "tiny_seem.pt")),
        "model_config": str(reference_path("tiny", "tiny_config.yaml")), "embedding_cache_dir": ""}
SITE_PACKAGES = f"lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages"


def readme_colcon_build() -> str:
    """The README quick start's workspace build command."""
    return next(line.split("&&")[0].strip() for line in (REPO / "README.md").read_text().splitlines()
                if line.startswith("colcon build"))


@pytest.fixture(scope="module")
def install_space(tmp_path_factory) -> pathlib.Path:
    assert readme_colcon_build() == "colcon build"  # what runs below, plus the CMake arguments the wheels need
    workspace = tmp_path_factory.mktemp("workspace")
    (workspace / "src").mkdir()
    (workspace / "src" / "seem_ros").symlink_to(REPO)
    env = ros_environment()
    env.update(CMAKE_PREFIX_PATH=str(VENV), PATH=f"{VENV / 'bin'}:{env['PATH']}")
    built = subprocess.run([str(VENV / "bin" / "colcon"), "build", "--cmake-args", "-DBUILD_TESTING=OFF",
                            f"-DPython3_EXECUTABLE={sys.executable}"], cwd=workspace, env=env, capture_output=True,
                           text=True, timeout=1200)
    assert built.returncode == 0, built.stdout[-4000:] + built.stderr[-4000:]
    install = workspace / "install"
    assert sorted(path.name for path in install.iterdir() if path.is_dir()) == ["seem_ros"]  # found by itself
    package = install / "seem_ros" / SITE_PACKAGES / "seem_ros"
    assert (package / "msg" / "_segmentation_result.py").is_file() and (package / "node" / "process.py").is_file()
    assert "Layers" in (package / "__init__.py").read_text()  # seem_ros's own, not rosidl's empty one
    assert (install / "seem_ros" / "lib" / "seem_ros" / "seem_node").is_file()
    assert (install / "seem_ros" / "share" / "ament_index" / "resource_index" / "packages" / "seem_ros").is_file()
    assert (install / "seem_ros" / "share" / "seem_ros" / "launch" / "seem.launch.py").is_file()
    return install


def _launch_environment(install: pathlib.Path) -> dict:
    """What sourcing the install space's setup.bash sets, as far as launching needs it."""
    env = ros_environment()
    package = install / "seem_ros"
    env["AMENT_PREFIX_PATH"] = os.pathsep.join([str(package), env["AMENT_PREFIX_PATH"]])
    env["PYTHONPATH"] = os.pathsep.join([str(package / SITE_PACKAGES), env.get("PYTHONPATH", "")])
    env["LD_LIBRARY_PATH"] = os.pathsep.join([str(package / "lib"), env.get("LD_LIBRARY_PATH", "")])
    return env


@pytest.mark.parametrize("index", range(len(readme_launch_lines())))
def test_each_readme_launch_line_runs_through_launch_ros_from_the_install_space(install_space, ros, tmp_path,
                                                                                 monkeypatch, index):
    line, arguments = readme_launch_lines()[index]
    given = {**arguments, **TINY}  # the released checkpoint is not here
    log_path = tmp_path / "launch.log"
    with open(log_path, "w") as log:
        launch = subprocess.Popen([sys.executable, str(TOOLS / "ros2_launch.py"), "seem_ros", "seem.launch.py"]
                                  + [f"{name}:={value}" for name, value in given.items()],
                                  env=_launch_environment(install_space), stdout=log, stderr=subprocess.STDOUT,
                                  cwd=tmp_path, start_new_session=True)
    camera = None
    try:
        assert _wait_for(log_path, "configuring: loading", launch, 120), log_path.read_text()
        parameter_of = launch_file(monkeypatch).CAMERA_ARGUMENTS  # arguments named otherwise than their parameter
        expected = {parameter_of.get(name, name): from_launch_text(parameter_of.get(name, name), value)
                    for name, value in given.items() if name != "fastdds_profile"}
        seen = node_parameters(ros, list(expected))
        assert seen == expected, line
        # launch_ros found seem_node through the ament index: the install space's executable runs
        pid = re.search(r"\[seem_node-1\]: process started with pid \[(\d+)\]", log_path.read_text()).group(1)
        command = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert str(install_space / "seem_ros" / "lib" / "seem_ros" / "seem_node").encode() in command, command
        if arguments.get("device", "cpu").startswith("cuda"):  # no GPU here: the node says so and stays up
            assert _wait_for(log_path, "CUDA is not available", launch, 60), log_path.read_text()
        else:
            results = []
            ros.create_subscription(SegmentationResult, "/seem_node/result", results.append, 10)
            camera = run_tool("camera_publisher", str(reference_path("images", "zebras1.jpg")), "--topic",
                              seen["image_topic"], "--rate", "5", "--duration", "120")
            assert spin_until(ros, lambda: len(results) >= 2, 120), log_path.read_text()[-3000:]
        launch.send_signal(signal.SIGINT)
        assert launch.wait(timeout=30) == 0, log_path.read_text()[-3000:]
        assert "process has finished cleanly" in log_path.read_text(), log_path.read_text()[-3000:]
    finally:
        if camera is not None:
            camera.kill()
            camera.wait()
        if launch.poll() is None:  # a failed check: the launch and the node it started go together
            os.killpg(launch.pid, signal.SIGKILL)
            launch.wait()


def _wait_for(path: pathlib.Path, text: str, process: subprocess.Popen, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in path.read_text():
            return True
        if process.poll() is not None:
            return text in path.read_text()
        time.sleep(0.2)
    return False


def test_the_launch_testing_proof_of_life_passes(install_space, tmp_path):
    """launch_tests/seem_proof_of_life.py under launch_testing's own runner (`launch_test`), from the
    install space; launch_testing lives in .venv/launch_testing, off pytest's path (its pytest
    plugin does not load in this pytest)."""
    env = _launch_environment(install_space)
    env["PYTHONPATH"] = os.pathsep.join([str(VENV / "launch_testing"), str(REPO / "test"), env["PYTHONPATH"]])
    run = subprocess.Popen([sys.executable, "-m", "launch_testing.launch_test",
                            str(REPO / "test" / "launch_tests" / "seem_proof_of_life.py")], env=env, cwd=tmp_path,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = run.communicate(timeout=600)
    finally:
        if run.poll() is None:  # timed out: the runner and what it launched go together
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    assert run.returncode == 0, output[-4000:]
    assert "Ran 1 test" in output and "OK" in output, output[-4000:]

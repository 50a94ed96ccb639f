"""Proof of life under launch_testing: the installed seem.launch.py (seem_ros built in a colcon
workspace) brings the node up active with the tiny checkpoint, with the shipped Fast DDS profile in
its environment, and it exits with code 0 when the launch ends. Run by `launch_test` (see
test_deploy_launch.py, which builds the workspace and runs this file), not collected by pytest:
launch_testing's pytest plugin does not load in the pytest the tests use."""
import os
import pathlib
import tempfile
import unittest

import launch
import launch_testing.actions
import launch_testing.asserts
import yaml
from ament_index_python.packages import get_package_share_directory
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource

from conftest import reference_path
from seem_ros.ros_in.fastdds import profile_variable


def _params_file() -> str:
    params = {"/**": {"ros__parameters": {"checkpoint": str(reference_path("tiny", "tiny_seem.pt")),
                                          "model_config": str(reference_path("tiny", "tiny_config.yaml")),
                                          "embedding_cache_dir": ""}}}
    path = pathlib.Path(tempfile.mkdtemp(prefix="seem_launch_")) / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return str(path)


def generate_test_description():
    seem = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(get_package_share_directory("seem_ros"), "launch",
                                                   "seem.launch.py")),
        launch_arguments={"params_file": _params_file(), "camera_topic": "/launch_test/image"}.items())
    return launch.LaunchDescription([seem, launch_testing.actions.ReadyToTest()]), {}


class TestSeemLaunch(unittest.TestCase):
    def test_node_becomes_active_with_the_large_fastdds_profile(self, proc_output, proc_info):
        proc_output.assertWaitFor("processing /launch_test/image (raw)", timeout=180, stream="stderr")
        node = next(name for name in proc_info.process_names() if "seem_node" in name)
        environment = pathlib.Path(f"/proc/{proc_info[node].pid}/environ").read_bytes().split(b"\0")
        variable = profile_variable().encode() + b"="  # the one this install's Fast DDS reads
        assert any(entry.startswith(variable) and entry.endswith(b"fastdds_large_shm.xml") for entry in environment), \
            f"the launch file did not name the large Fast DDS profile in {variable.decode()}"


@launch_testing.post_shutdown_test()
class TestSeemLaunchShutdown(unittest.TestCase):
    def test_exit_code_is_zero(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)

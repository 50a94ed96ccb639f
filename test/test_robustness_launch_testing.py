"""launch/seem.launch.py run for real by launch_testing, on a ROS 2 install where seem_ros is built
(launch, launch_ros and launch_testing are not on PyPI: skipped here; test_launch.py checks the
file's structure with stand-ins). The node must come up active with the tiny checkpoint, run with
the shipped Fast DDS profile in its environment, and exit with code 0 when the launch ends."""
import pathlib
import tempfile
import unittest

import pytest

launch_testing = pytest.importorskip("launch_testing")
pytest.importorskip("launch_ros")

import launch  # noqa: E402
import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
import yaml  # noqa: E402
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402

from conftest import REPO, reference_path  # noqa: E402


def _params_file() -> str:
    params = {"/**": {"ros__parameters": {"checkpoint": str(reference_path("tiny", "tiny_seem.pt")),
                                          "model_config": str(reference_path("tiny", "tiny_config.yaml")),
                                          "embedding_cache_dir": ""}}}
    path = pathlib.Path(tempfile.mkdtemp(prefix="seem_launch_")) / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return str(path)


@pytest.mark.launch_test
def generate_test_description():
    seem = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(REPO / "launch" / "seem.launch.py")),
        launch_arguments={"params_file": _params_file(), "camera_topic": "/launch_test/image"}.items())
    return launch.LaunchDescription([seem, launch_testing.actions.ReadyToTest()]), {}


class TestSeemLaunch(unittest.TestCase):
    def test_node_becomes_active_with_the_large_fastdds_profile(self, proc_output, proc_info):
        proc_output.assertWaitFor("processing /launch_test/image (raw)", timeout=180, stream="stderr")
        node = next(name for name in proc_info.process_names() if "seem_node" in name)
        environment = pathlib.Path(f"/proc/{proc_info[node].pid}/environ").read_bytes().split(b"\0")
        assert any(entry.startswith(b"FASTDDS_DEFAULT_PROFILES_FILE=") and entry.endswith(b"fastdds_large_shm.xml")
                   for entry in environment), "the launch file did not apply the large Fast DDS profile"


@launch_testing.post_shutdown_test()
class TestSeemLaunchShutdown(unittest.TestCase):
    def test_exit_code_is_zero(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)

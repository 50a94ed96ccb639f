"""launch/seem.launch.py: loaded with the real launch_ros where installed, otherwise with recording
stand-ins for the launch API, and checked for the node, arguments and parameter files it declares."""
import importlib.util
import sys
import types

import pytest
import yaml

from conftest import REPO
from seem_ros.node import PARAMETERS

LAUNCH_FILE = REPO / "launch" / "seem.launch.py"


class _Recorded:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


def _stand_in_modules():
    launch = types.ModuleType("launch")
    launch.LaunchDescription = type("LaunchDescription", (_Recorded,), {})
    actions = types.ModuleType("launch.actions")
    actions.DeclareLaunchArgument = type("DeclareLaunchArgument", (_Recorded,), {})
    substitutions = types.ModuleType("launch.substitutions")
    substitutions.LaunchConfiguration = type("LaunchConfiguration", (_Recorded,), {})
    launch_ros = types.ModuleType("launch_ros")
    ros_actions = types.ModuleType("launch_ros.actions")
    ros_actions.Node = type("Node", (_Recorded,), {})
    ament = types.ModuleType("ament_index_python.packages")
    ament.get_package_share_directory = lambda name: str(REPO)  # config/ lives at the top of the source tree
    return {"launch": launch, "launch.actions": actions, "launch.substitutions": substitutions,
            "launch_ros": launch_ros, "launch_ros.actions": ros_actions, "ament_index_python.packages": ament}


def _load(monkeypatch):
    if importlib.util.find_spec("launch_ros") is None:
        for name, module in _stand_in_modules().items():
            monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location("seem_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description()


def test_launch_declares_arguments_node_and_params(monkeypatch):
    if importlib.util.find_spec("launch_ros") is not None:
        pytest.skip("real launch_ros installed: covered by launch_testing on a ROS install")
    description = _load(monkeypatch)
    entities = description.args[0]
    arguments = {e.args[0]: e.kwargs for e in entities if type(e).__name__ == "DeclareLaunchArgument"}
    assert set(arguments) == {"camera_topic", "camera_info_topic", "params_file", "namespace", "backend"}
    assert all(a.get("description") for a in arguments.values())
    assert arguments["backend"]["default_value"] == "torch"
    params_file = arguments["params_file"]["default_value"]
    assert params_file == str(REPO / "config" / "seem.yaml")
    nodes = [e for e in entities if type(e).__name__ == "Node"]
    assert len(nodes) == 1
    node = nodes[0].kwargs
    assert (node["package"], node["executable"], node["name"]) == ("seem_ros", "seem_node", "seem_node")
    assert node["namespace"].args == ("namespace",)
    file_arg, overrides = node["parameters"]
    assert file_arg.args == ("params_file",)
    assert {k: v.args for k, v in overrides.items()} == {"image_topic": ("camera_topic",),
                                                         "camera_info_topic": ("camera_info_topic",),
                                                         "backend": ("backend",)}
    assert set(overrides) <= set(PARAMETERS)


def test_params_file_sets_every_node_parameter_and_nothing_else():
    params = yaml.safe_load((REPO / "config" / "seem.yaml").read_text())["/**"]["ros__parameters"]
    assert set(params) == set(PARAMETERS)
    for name, value in params.items():
        assert type(value) is type(PARAMETERS[name][0]), name


def test_readme_documents_every_parameter():
    readme = (REPO / "README.md").read_text()
    missing = [name for name in PARAMETERS if f"`{name}`" not in readme]
    assert not missing, f"parameters missing from the README table: {missing}"

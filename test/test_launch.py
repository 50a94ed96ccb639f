"""launch/seem.launch.py loaded with recording stand-ins for the launch API (launch_ros is not on
PyPI) and checked for the node, arguments, parameter files and environment it declares. Where
launch_testing is installed, test_robustness_launch_testing.py runs the launch file for real."""
import importlib.util
import sys
import types

import yaml

from conftest import REPO
from seem_ros.node import PARAMETERS

LAUNCH_FILE = REPO / "launch" / "seem.launch.py"


class _Recorded:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


def _stand_in_modules():
    def recorded(module, *names):
        for name in names:
            setattr(module, name, type(name, (_Recorded,), {}))
        return module

    launch = recorded(types.ModuleType("launch"), "LaunchDescription")
    actions = recorded(types.ModuleType("launch.actions"), "DeclareLaunchArgument", "SetEnvironmentVariable")
    conditions = recorded(types.ModuleType("launch.conditions"), "IfCondition")
    substitutions = recorded(types.ModuleType("launch.substitutions"), "LaunchConfiguration", "EnvironmentVariable",
                             "PythonExpression")
    launch_ros = types.ModuleType("launch_ros")
    ros_actions = types.ModuleType("launch_ros.actions")
    ros_actions.Node = type("Node", (_Recorded,), {})
    ament = types.ModuleType("ament_index_python.packages")
    ament.get_package_share_directory = lambda name: str(REPO)  # config/ lives at the top of the source tree
    return {"launch": launch, "launch.actions": actions, "launch.conditions": conditions,
            "launch.substitutions": substitutions, "launch_ros": launch_ros, "launch_ros.actions": ros_actions,
            "ament_index_python.packages": ament}


def _load(monkeypatch):
    for name, module in _stand_in_modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location("seem_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description()


def test_launch_declares_arguments_node_and_params(monkeypatch):
    description = _load(monkeypatch)
    entities = description.args[0]
    arguments = {e.args[0]: e.kwargs for e in entities if type(e).__name__ == "DeclareLaunchArgument"}
    assert set(arguments) == {"camera_topic", "camera_info_topic", "params_file", "namespace", "backend",
                              "fastdds_profile"}
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


def test_launch_applies_the_large_fastdds_profile_by_default(monkeypatch):
    entities = _load(monkeypatch).args[0]
    profile = next(e for e in entities if type(e).__name__ == "DeclareLaunchArgument"
                   and e.args[0] == "fastdds_profile").kwargs["default_value"]
    # an existing FASTDDS_DEFAULT_PROFILES_FILE wins; otherwise the shipped profile
    assert profile.args == ("FASTDDS_DEFAULT_PROFILES_FILE",)
    assert profile.kwargs["default_value"] == str(REPO / "config" / "fastdds_large_shm.xml")
    assert (REPO / "config" / "fastdds_large_shm.xml").is_file()
    setters = [e for e in entities if type(e).__name__ == "SetEnvironmentVariable"]
    assert len(setters) == 1 and setters[0].args[0] == "FASTDDS_DEFAULT_PROFILES_FILE"
    assert setters[0].args[1].args == ("fastdds_profile",)
    assert type(setters[0].kwargs["condition"]).__name__ == "IfCondition"  # '' leaves Fast DDS's defaults
    # the environment is set before the node starts
    names = [type(e).__name__ for e in entities]
    assert names.index("SetEnvironmentVariable") < names.index("Node")


def test_params_file_sets_every_node_parameter_and_nothing_else():
    params = yaml.safe_load((REPO / "config" / "seem.yaml").read_text())["/**"]["ros__parameters"]
    assert set(params) == set(PARAMETERS)
    for name, value in params.items():
        assert type(value) is type(PARAMETERS[name][0]), name


def test_readme_documents_every_parameter():
    readme = (REPO / "README.md").read_text()
    missing = [name for name in PARAMETERS if f"`{name}`" not in readme]
    assert not missing, f"parameters missing from the README table: {missing}"

"""launch/seem.launch.py loaded with recording stand-ins for the launch API (launch_ros is not on
PyPI) and checked for the node, arguments, parameter files and environment it declares. Where
launch_testing is installed, test_robustness_launch_testing.py runs the launch file for real."""
import yaml

from conftest import REPO
from launch_stand_ins import declared_arguments, launch_entities, launched_node
from seem_ros.node.parameters import PARAMETERS


def test_launch_declares_arguments_node_and_params(monkeypatch):
    arguments = declared_arguments(monkeypatch)
    assert {"camera_topic", "camera_info_topic", "params_file", "namespace", "fastdds_profile"} <= set(arguments)
    assert set(PARAMETERS) - {"image_topic", "camera_info_topic"} <= set(arguments)  # every node parameter
    assert all(a.get("description") for a in arguments.values())
    params_file = arguments["params_file"]["default_value"]
    assert params_file == str(REPO / "config" / "seem.yaml")
    node = launched_node(monkeypatch, {"camera_topic": "/cam"})
    assert (node["package"], node["executable"], node["name"]) == ("seem_ros", "seem_node", "seem_node")
    assert node["namespace"].args == ("namespace",)
    file_arg, overrides = node["parameters"]
    assert file_arg.args == ("params_file",)
    # arguments not given leave params_file's values; the camera arguments always set their parameters
    assert overrides == {"image_topic": "/cam", "camera_info_topic": "/camera/camera_info"}


def test_launch_applies_the_large_fastdds_profile_by_default(monkeypatch):
    entities = launch_entities(monkeypatch)
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
    # the environment is set before the node starts (the OpaqueFunction that makes its Node)
    names = [type(e).__name__ for e in entities]
    assert names.index("SetEnvironmentVariable") < names.index("OpaqueFunction")


def test_params_file_sets_every_node_parameter_and_nothing_else():
    params = yaml.safe_load((REPO / "config" / "seem.yaml").read_text())["/**"]["ros__parameters"]
    assert set(params) == set(PARAMETERS)
    for name, value in params.items():
        assert type(value) is type(PARAMETERS[name][0]), name


def test_readme_documents_every_parameter():
    readme = (REPO / "README.md").read_text()
    missing = [name for name in PARAMETERS if f"`{name}`" not in readme]
    assert not missing, f"parameters missing from the README table: {missing}"

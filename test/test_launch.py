"""launch/seem.launch.py read with the real launch and launch_ros: the arguments, node, parameter
files and environment it declares (test_deploy_launch.py runs it from a colcon install space)."""
import yaml
from launch.actions import OpaqueFunction, SetEnvironmentVariable
from launch.conditions import IfCondition

from conftest import REPO
from launch_file import declared_arguments, launch_context, launch_description, launched_node
from seem_ros.node.parameters import PARAMETERS
from seem_ros.ros_in.fastdds import profile_variable


def test_launch_declares_arguments_node_and_params(monkeypatch):
    arguments = declared_arguments(monkeypatch)
    assert {"camera_topic", "camera_info_topic", "params_file", "namespace", "fastdds_profile"} <= set(arguments)
    assert set(PARAMETERS) - {"image_topic", "camera_info_topic"} <= set(arguments)  # every node parameter
    assert all(argument.description for argument in arguments.values())
    context = launch_context(monkeypatch, {})
    assert context.launch_configurations["params_file"] == str(REPO / "config" / "seem.yaml")
    node, overrides = launched_node(monkeypatch, {"camera_topic": "/cam"})
    assert (node.node_package, node.node_executable) == ("seem_ros", "seem_node")
    # arguments not given leave params_file's values; the camera arguments always set their parameters
    assert overrides == {"image_topic": "/cam", "camera_info_topic": "/camera/camera_info"}


def test_launch_applies_the_large_fastdds_profile_by_default(monkeypatch, tmp_path):
    variable = profile_variable()  # the one this install's Fast DDS reads
    monkeypatch.delenv(variable, raising=False)
    context = launch_context(monkeypatch, {})
    # without the variable set, the shipped profile; an existing setting wins
    assert context.launch_configurations["fastdds_profile"] == str(REPO / "config" / "fastdds_large_shm.xml")
    assert (REPO / "config" / "fastdds_large_shm.xml").is_file()
    monkeypatch.setenv(variable, str(tmp_path / "mine.xml"))
    assert launch_context(monkeypatch, {}).launch_configurations["fastdds_profile"] == str(tmp_path / "mine.xml")
    entities = launch_description(monkeypatch).entities
    setters = [e for e in entities if isinstance(e, SetEnvironmentVariable)]
    assert [setter.name[0].text for setter in setters] == [variable]
    assert isinstance(setters[0].condition, IfCondition)  # '' leaves Fast DDS's defaults
    # the environment is set before the node starts (the OpaqueFunction that makes its Node)
    assert entities.index(setters[0]) < next(i for i, e in enumerate(entities) if isinstance(e, OpaqueFunction))


def test_the_profile_variable_is_the_one_the_installed_fastdds_reads(tmp_path):
    kilted, jazzy, overlay = (tmp_path / name for name in ("kilted", "jazzy", "overlay"))
    (kilted / "share" / "fastdds").mkdir(parents=True)  # Fast DDS 3's CMake package
    (jazzy / "share" / "fastrtps").mkdir(parents=True)  # Fast DDS 2's
    overlay.mkdir()
    assert profile_variable([str(overlay), str(kilted)]) == "FASTDDS_DEFAULT_PROFILES_FILE"
    assert profile_variable([str(overlay), str(jazzy)]) == "FASTRTPS_DEFAULT_PROFILES_FILE"
    assert profile_variable([str(jazzy), str(kilted)]) == "FASTRTPS_DEFAULT_PROFILES_FILE"  # the first found
    assert profile_variable([]) == "FASTDDS_DEFAULT_PROFILES_FILE"  # no Fast DDS found: today's name


def test_params_file_sets_every_node_parameter_and_nothing_else():
    params = yaml.safe_load((REPO / "config" / "seem.yaml").read_text())["/**"]["ros__parameters"]
    assert set(params) == set(PARAMETERS)
    for name, value in params.items():
        assert type(value) is type(PARAMETERS[name][0]), name


def test_readme_documents_every_parameter():
    readme = (REPO / "README.md").read_text()
    missing = [name for name in PARAMETERS if f"`{name}`" not in readme]
    assert not missing, f"parameters missing from the README table: {missing}"

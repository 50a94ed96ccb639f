"""launch/seem.launch.py imported with the real launch and launch_ros (scripts/setup.sh installs
them from ../shared/third_party): its launch description, its declared arguments, and the Node it
starts for given `name:=value` arguments, evaluated in a real LaunchContext. Only the package
lookup is pointed at the source tree, whose config/ and launch/ are laid out as the installed
share/seem_ros is (test_deploy_launch.py runs the installed file)."""
import importlib.util

import ament_index_python.packages
from launch import LaunchContext
from launch.actions import OpaqueFunction
from launch.utilities import perform_substitutions

from conftest import REPO

LAUNCH_FILE = REPO / "launch" / "seem.launch.py"


def launch_file(monkeypatch):
    """The launch file as a module."""
    monkeypatch.setattr(ament_index_python.packages, "get_package_share_directory",
                        lambda package: str(REPO) if package == "seem_ros" else None)
    spec = importlib.util.spec_from_file_location("seem_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def launch_description(monkeypatch):
    return launch_file(monkeypatch).generate_launch_description()


def declared_arguments(monkeypatch) -> dict:
    """{name: DeclareLaunchArgument} of the launch file."""
    return {argument.name: argument for argument in launch_description(monkeypatch).get_launch_arguments()}


def launch_context(monkeypatch, arguments: dict) -> LaunchContext:
    """A LaunchContext holding the declared defaults, then `arguments`, as launch configurations."""
    context = LaunchContext()
    for name, argument in declared_arguments(monkeypatch).items():
        context.launch_configurations[name] = perform_substitutions(context, argument.default_value)
    context.launch_configurations.update(arguments)
    return context


def launched_node(monkeypatch, arguments: dict):
    """The launch_ros Node the launch file starts given `name:=value` arguments, and the parameter
    overrides it hands that Node."""
    module = launch_file(monkeypatch)
    context = launch_context(monkeypatch, arguments)
    (opaque,) = [e for e in module.generate_launch_description().entities if isinstance(e, OpaqueFunction)]
    (node,) = opaque.execute(context)
    return node, module.parameter_overrides(context.launch_configurations)

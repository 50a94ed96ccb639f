"""launch/seem.launch.py loaded with recording stand-ins for the launch API (launch_ros is not on
PyPI): what it declares and the Node it starts for given `name:=value` arguments."""
import importlib.util
import sys
import types

from conftest import REPO

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
    actions = recorded(types.ModuleType("launch.actions"), "DeclareLaunchArgument", "SetEnvironmentVariable",
                       "OpaqueFunction")
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


def launch_module(monkeypatch):
    for name, module in _stand_in_modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location("seem_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def launch_entities(monkeypatch) -> list:
    """What generate_launch_description() returns, as recorded stand-ins."""
    return launch_module(monkeypatch).generate_launch_description().args[0]


def declared_arguments(monkeypatch) -> dict:
    """{name: DeclareLaunchArgument's keyword arguments} of the launch file."""
    return {e.args[0]: e.kwargs for e in launch_entities(monkeypatch) if type(e).__name__ == "DeclareLaunchArgument"}


def launched_node(monkeypatch, arguments: dict):
    """The Node the launch file starts given `name:=value` arguments (the declared defaults for the
    others), as launch evaluates its OpaqueFunction."""
    entities = launch_entities(monkeypatch)
    configurations = {name: kwargs["default_value"] for name, kwargs in declared_arguments(monkeypatch).items()}
    configurations.update(arguments)
    (opaque,) = [e for e in entities if type(e).__name__ == "OpaqueFunction"]
    (node,) = opaque.kwargs["function"](types.SimpleNamespace(launch_configurations=configurations))
    return node.kwargs

"""The house rules, read from the source: every import inside seem_ros goes from a higher layer to a
lower one (or within one folder, without a cycle); the layers below the ROS interface import no ROS;
the node stays wiring; files stay readable."""
import ast
import pathlib
import re
from typing import Dict, List, Set, Tuple

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "seem_ros"

# Lowest first; a module may import modules of its own layer or of a layer listed before it.
LAYERS = [
    "seem_ros.throttled_log",  # rate-limited logging, used by the ROS-facing layers
    "seem_ros.model",  # nn.Modules, their configs and the tokenizer
    "seem_ros.weights",  # checkpoints: download, sha256, loading into the modules
    "seem_ros.inference",  # predictor, frame engine, post-processing: modules -> answers
    "seem_ros.runtime",  # backends: torch, CUDA graphs, ONNX Runtime, TensorRT, their caches
    "seem_ros.tracking",  # objects across frames, ids
    "seem_ros.prompts",  # text commands, the ordered prompt queue
    "seem_ros.ros_in",  # ROS messages -> images and prompts; the camera subscription
    "seem_ros.ros_out",  # results -> ROS messages, diagnostics
    "seem_ros.node",  # the lifecycle node: wiring, parameters, frame worker, prompt applier, services
    "seem_ros.tools",  # offline: CLI, demo, frame sources, recording, evaluation
]
ROS_FREE = LAYERS[:LAYERS.index("seem_ros.prompts") + 1]
ROS_PACKAGES = ("rclpy", "rcl_interfaces", "sensor_msgs", "std_msgs", "geometry_msgs", "diagnostic_msgs",
                "std_srvs", "vision_msgs", "tf2_ros", "tf2_geometry_msgs", "rosbags", "launch")
GENERATED_MESSAGES = ("seem_ros.msg", "seem_ros.srv")  # rosidl's (CMakeLists.txt), not in the source tree
MAX_LINES = 400
MAX_NODE_CLASS_LINES = 200


def _modules() -> Dict[str, pathlib.Path]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _imports(module: str, path: pathlib.Path) -> List[Tuple[str, int]]:
    """(imported module, line) for every import in the file, lazy ones inside functions included."""
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[:len(base) - node.level + (1 if is_package else 0)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((name, node.lineno))
            # `from seem_ros.x import y` may import the submodule seem_ros.x.y
            found += [(f"{name}.{alias.name}", node.lineno) for alias in node.names]
    return found


def _layer(module: str) -> int:
    for index, prefix in enumerate(LAYERS):
        if module == prefix or module.startswith(prefix + "."):
            return index
    raise AssertionError(f"{module} belongs to no declared layer: add its folder to LAYERS")


def _internal_graph() -> Dict[str, Set[str]]:
    modules = _modules()
    graph = {}
    for module, path in modules.items():
        graph[module] = {name for name, _ in _imports(module, path) if name in modules and name != module}
    return graph


def _upward_imports(graph: Dict[str, Set[str]]) -> List[str]:
    return [f"{module} (layer {LAYERS[_layer(module)]}) imports {target} (layer {LAYERS[_layer(target)]})"
            for module, targets in graph.items() for target in sorted(targets) if _layer(target) > _layer(module)]


def _cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    cycles, state = [], {}

    def visit(module: str, stack: List[str]) -> None:
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target, stack + [target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return cycles


def _is_ros(name: str) -> bool:
    return name.split(".")[0] in ROS_PACKAGES or name.startswith(GENERATED_MESSAGES)


def test_every_module_belongs_to_a_layer():
    for module in _modules():
        if module != "seem_ros":
            _layer(module)


def test_no_import_runs_upward():
    assert _upward_imports(_internal_graph()) == []


def test_no_modules_import_each_other_in_a_cycle():
    assert _cycles(_internal_graph()) == []


def test_the_layers_below_the_ros_interface_import_no_ros():
    found = []
    for module, path in _modules().items():
        if module != "seem_ros" and LAYERS[_layer(module)] in ROS_FREE:
            found += [f"{module}:{line} imports {name}" for name, line in _imports(module, path) if _is_ros(name)]
    assert found == []


def test_the_check_fails_on_an_upward_import_and_on_a_cycle():
    """The rule bites: a model module importing the tracker, or two trackers importing each other,
    is reported."""
    upward = {module: set(targets) for module, targets in _internal_graph().items()}
    upward["seem_ros.model.decoder"].add("seem_ros.tracking.tracker")
    assert _upward_imports(upward) == [
        "seem_ros.model.decoder (layer seem_ros.model) imports seem_ros.tracking.tracker (layer seem_ros.tracking)"]
    cyclic = {module: set(targets) for module, targets in _internal_graph().items()}
    cyclic["seem_ros.tracking.association"].add("seem_ros.tracking.tracker")
    assert _upward_imports(cyclic) == []
    assert [set(cycle) for cycle in _cycles(cyclic)] == [{"seem_ros.tracking.association", "seem_ros.tracking.tracker"}]


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_file_is_over_400_lines_without_a_reason_in_its_docstring(path):
    lines = len(path.read_text().splitlines())
    if lines > MAX_LINES:
        docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
        assert re.search(rf"over {MAX_LINES} lines", docstring), (
            f"{path.name} has {lines} lines: split it, or say in its docstring why it is over {MAX_LINES} lines")


def test_the_node_class_only_wires():
    tree = ast.parse((PACKAGE / "node" / "node.py").read_text())
    node_class = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "SeemNode")
    assert node_class.end_lineno - node_class.lineno + 1 <= MAX_NODE_CLASS_LINES
    no_math = {"torch", "numpy", "cv2"}
    imported = {name.split(".")[0] for name, _ in _imports("seem_ros.node.node", PACKAGE / "node" / "node.py")}
    assert not imported & no_math


# what benchmarks/gpu_check.sh runs on the GPU machines, which have no ROS
GPU_CHECKED = ["seem_ros.runtime.backends", "seem_ros.node.frame_worker", "seem_ros.node.shared_model",
               "seem_ros.node.one_shot"]
WITHOUT_ROS = """
import importlib.abc, sys
class NoRos(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {ros} or name.startswith({generated}):
            raise ImportError("no ROS here: " + name)
sys.meta_path.insert(0, NoRos())
for module in {modules}:
    __import__(module)
"""


def test_the_modules_the_gpu_checks_run_import_without_ros():
    import subprocess
    import sys
    code = WITHOUT_ROS.format(ros=set(ROS_PACKAGES), generated=GENERATED_MESSAGES, modules=GPU_CHECKED)
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert imported.returncode == 0, imported.stderr[-2000:]

"""Runners on a node that is configured but inactive (issue 15, item 5): the model is on the CPU
then, so a CUDA-graph runner handed host tensors runs them eagerly instead of failing a capture
for good; release() gives capturing a fresh try; a TensorRT engine refuses inputs that are not on
its device (it would read host pointers as device memory)."""
import types

import pytest
import torch

from seem_ros.runtime.cuda_graphs import CudaGraphRunner
from seem_ros.runtime.tensorrt_backend import TensorRTGraph


def test_host_inputs_run_eagerly_and_leave_the_runner_able_to_capture():
    runner = CudaGraphRunner(lambda inputs: inputs["x"] * 2, "test graph")
    out = runner({"x": torch.ones(3)})
    assert torch.equal(out, torch.full((3,), 2.0))
    assert runner.failed == "" and not runner.graphs  # no capture tried, nothing marked failed
    runner.failed = "RuntimeError: an earlier capture failed"
    runner.release()
    assert runner.failed == ""


class _Engine:
    """One float32 input "x" and one output "y" of shape (2,): the calls TensorRTGraph makes."""

    def create_execution_context(self):
        return types.SimpleNamespace(set_tensor_address=lambda name, address: None,
                                     execute_async_v3=lambda stream: True)

    num_io_tensors = 2

    def get_tensor_name(self, i):
        return ["x", "y"][i]

    def get_tensor_dtype(self, name):
        return "float32"

    def get_tensor_mode(self, name):
        return "input" if name == "x" else "output"

    def get_tensor_shape(self, name):
        return (2,)


TRT = types.SimpleNamespace(float32="float32", float16="float16", int64="int64", int32="int32", bool="bool",
                            TensorIOMode=types.SimpleNamespace(INPUT="input"))


def test_a_tensorrt_engine_refuses_inputs_off_its_device():
    graph = TensorRTGraph(TRT, _Engine(), ["y"], "meta")  # an engine "on" another device than the input
    assert graph.device == graph.outputs[0].device  # the buffers' own device ("cuda" -> cuda:<current>)
    with pytest.raises(ValueError, match="input x is on cpu, the engine on meta"):
        graph({"x": torch.ones(2)})


"""Runners on a node that is configured but inactive (issue 15, item 5): the model is on the CPU
then, so a CUDA-graph runner handed host tensors runs them eagerly instead of failing a capture
for good; release() gives capturing a fresh try; a TensorRT engine refuses inputs that are not on
its device (it would read host pointers as device memory)."""
import sys

import pytest
import torch

from fake_tensorrt import ICudaEngine, fake_tensorrt
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


def test_a_tensorrt_engine_refuses_inputs_off_its_device(monkeypatch):
    fake = fake_tensorrt("10.3.0")
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    spec = {"version": "10.3.0", "tensors": [dict(name="x", mode="INPUT", dtype="FLOAT", shape=[2]),
                                             dict(name="y", mode="OUTPUT", dtype="FLOAT", shape=[2])]}
    graph = TensorRTGraph(ICudaEngine(fake, spec), ["y"], "meta")  # an engine "on" another device than the input
    assert graph.device == graph.outputs[0].device  # the buffers' own device ("cuda" -> cuda:<current>)
    with pytest.raises(ValueError, match="input x is on cpu, the engine on meta"):
        graph({"x": torch.ones(2)})
    assert fake.executions == []

"""seem-ros export-triton (runtime/triton_repository.py): the model repository for NVIDIA's Triton
images, checked as far as this machine can without their ONNX Runtime backend:
- the configs parse as tritonclient's ModelConfig protobufs, every model's inputs and outputs are its
  ONNX graph's (names, types, dims under Triton's batch convention), and the ensemble wires them as
  Triton's ensemble validation requires (each input mapped once, the same types, consistent dims);
- the ensemble's steps run in ONNX Runtime, as Triton's scheduler chains them, give the frame server's
  in-process results for what a robot sends (text, clicks with a negative click, a box, followed
  objects with memory): within the noise model;
- the pytriton wheel's tritonserver loads the repository as written (its ONNX models run by the
  Python backend in ONNX Runtime: the wheel has no ONNX Runtime backend) and serves backend triton
  with triton_model seem_frame_slots the in-process masks; a robot of another canvas is refused at
  configure, and what the repository does not serve is refused with the reason;
- the command refuses a folder of someone else's files (writing nothing), and replaces its own."""
import json
import pathlib
import subprocess
import sys
import time

import numpy as np
import onnx
import pytest
import torch

from conftest import reference_path, tiny_backend_config
from noise_model import assert_close
from triton_harness import StandInServer, assert_tracks_alike, require_triton

from seem_ros.inference.visual_prompt import VisualPrompt
from seem_ros.model.visual_sampler import DeterministicSampling
from seem_ros.runtime.backends import BackendError, create_predictor
from seem_ros.runtime.frame_server import FrameServer
from seem_ros.runtime.triton_client import RemotePredictor, ServerUnavailable
from seem_ros.runtime.triton_repository import (DECODER_MODEL, ENCODER_MODEL, ENSEMBLE_MODEL, INFO_PARAMETER,
                                                ensemble_layout, response_from_passes, slot_passes)

CANVAS = (256, 480)  # DAVIS's 854x480 at short side 256
SLOTS = ("--text-slots", "2", "--visual-slots", "3")  # 4 visual objects below: two decoder passes
model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="tritonclient is not installed")


def _export(out: pathlib.Path, *extra: str) -> subprocess.CompletedProcess:
    tiny = reference_path("tiny")
    return subprocess.run([sys.executable, "-m", "seem_ros.tools.cli", "export-triton", "--checkpoint",
                           str(tiny / "tiny_seem.pt"), "--config", str(tiny / "tiny_config.yaml"), "--canvas",
                           f"{CANVAS[0]}x{CANVAS[1]}", "--out", str(out), *SLOTS, *extra],
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def repository(tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("export") / "models"
    done = _export(out)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def _configs(repository: pathlib.Path) -> dict:
    from google.protobuf import text_format
    return {name: text_format.Parse((repository / name / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
            for name in (ENCODER_MODEL, DECODER_MODEL, ENSEMBLE_MODEL)}


def _graph(repository: pathlib.Path, name: str) -> onnx.ModelProto:
    return onnx.load(str(repository / name / "1" / "model.onnx"))


TRITON_TYPES = {onnx.TensorProto.FLOAT: "TYPE_FP32", onnx.TensorProto.UINT8: "TYPE_UINT8",
                onnx.TensorProto.INT32: "TYPE_INT32", onnx.TensorProto.BOOL: "TYPE_BOOL"}


def _full_dims(config, tensor) -> list:
    """A tensor's dims with the batch dimension Triton adds for a batching model (-1)."""
    return ([-1] if config.max_batch_size > 0 else []) + list(tensor.dims)


def _same_dims(a: list, b: list) -> bool:
    return len(a) == len(b) and all(x == y or -1 in (x, y) for x, y in zip(a, b))


def test_every_model_config_is_its_onnx_graph(repository):
    configs = _configs(repository)
    assert configs[ENCODER_MODEL].max_batch_size == 8 and configs[ENCODER_MODEL].dynamic_batching is not None
    assert configs[DECODER_MODEL].max_batch_size == 0
    for name in (ENCODER_MODEL, DECODER_MODEL):
        config, graph = configs[name], _graph(repository, name)
        assert config.backend == "onnxruntime" and config.instance_group[0].count == 1
        assert (repository / name / "1" / "model.onnx").is_file()
        for declared, values in ((config.input, graph.graph.input), (config.output, graph.graph.output)):
            assert [t.name for t in declared] == [v.name for v in values], name
            for tensor, value in zip(declared, values):
                dims = [d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim]
                assert model_config_pb2.DataType.Name(tensor.data_type) == TRITON_TYPES[value.type.tensor_type.elem_type]
                assert _full_dims(config, tensor) == dims, (name, tensor.name)
    info = json.loads(configs[ENSEMBLE_MODEL].parameters[INFO_PARAMETER].string_value)
    assert info["protocol_version"] == 1 and len(info["checkpoint_sha256"]) == 64


def test_the_ensemble_wires_the_models_as_triton_validates_it(repository):
    """Triton's ensemble validation (ensemble_utils.cc): every step input mapped exactly once, every
    ensemble tensor of one type and of consistent dims wherever it is used (full dims with the batch
    dimension of a batching model), and the ensemble's outputs produced by some step."""
    configs = _configs(repository)
    ensemble = configs[ENSEMBLE_MODEL]
    assert ensemble.platform == "ensemble" and (repository / ENSEMBLE_MODEL / "1").is_dir()
    tensors = {t.name: (t.data_type, _full_dims(ensemble, t)) for t in ensemble.input}
    produced = set(tensors)
    for step in ensemble.ensemble_scheduling.step:
        model = configs[step.model_name]
        for model_input in model.input:
            mapped = [tensor for key, tensor in step.input_map.items() if key == model_input.name]
            assert len(mapped) == 1, (step.model_name, model_input.name)
            assert mapped[0] in produced, f"{mapped[0]} is used before a step produces it"
            data_type, dims = tensors[mapped[0]]
            assert data_type == model_input.data_type, (step.model_name, model_input.name)
            assert _same_dims(dims, _full_dims(model, model_input)), (step.model_name, model_input.name, dims)
        assert set(step.input_map) <= {t.name for t in model.input}
        for key, tensor in step.output_map.items():
            (output,) = [o for o in model.output if o.name == key]
            tensors[tensor] = (output.data_type, _full_dims(model, output))
            produced.add(tensor)
    for output in ensemble.output:
        assert output.name in produced
        assert tensors[output.name][0] == output.data_type
        assert _same_dims(tensors[output.name][1], _full_dims(ensemble, output)), output.name


class InProcessServer:
    """The frame server in this process, keeping each request: what a robot sends a server."""

    def __init__(self, server: FrameServer):
        self.server, self.requests = server, []

    def infer(self, request):
        self.requests.append(request)
        return self.server([request])[0]


def _run_ensemble(repository: pathlib.Path, inputs: dict) -> dict:
    """The ensemble's steps in ONNX Runtime, tensors passed between them as Triton's ensemble
    scheduler passes them (every ensemble tensor with the request's batch dimension of 1)."""
    import onnxruntime
    configs = _configs(repository)
    tensors = {name: array[None] for name, array in inputs.items()}
    for step in configs[ENSEMBLE_MODEL].ensemble_scheduling.step:
        session = onnxruntime.InferenceSession(str(repository / step.model_name / "1" / "model.onnx"),
                                               providers=["CPUExecutionProvider"])
        outputs = session.run(list(step.output_map), {key: tensors[name] for key, name in step.input_map.items()})
        tensors.update({step.output_map[key]: value for key, value in zip(step.output_map, outputs)})
    return {output.name: tensors[output.name][0] for output in configs[ENSEMBLE_MODEL].output}


def _frames_a_robot_sends(predictor) -> list:
    """A DAVIS frame with three texts, clicks with a negative click and a box with one; the next
    frame with those objects followed (memory), a new text and clicks chosen by a text. -> the
    results of both frames."""
    from PIL import Image
    frames = sorted((reference_path("davis") / "JPEGImages" / "480p").iterdir())[0]
    first, second = (np.asarray(Image.open(path).convert("RGB")) for path in sorted(frames.iterdir())[:2])
    with torch.inference_mode():
        predictor.set_image(first)
        found = predictor.decode([predictor.text_query(frames.name), predictor.visual_query(
            VisualPrompt(points=[(420, 240, 1), (380, 200, 0)])), predictor.visual_query(VisualPrompt(
                box=(300, 150, 600, 420), points=[(450, 300, 0)])), predictor.text_query("a tree"),
            predictor.text_query("the road")])
        predictor.set_image(second)
        queries = predictor.follow_queries(found, [frames.name, "", "", "a tree", "the road"], memories=found)
        followed = predictor.decode(queries + [predictor.text_query("the sky"), predictor.visual_query(
            VisualPrompt(points=[(100, 100, 1)]), text="grass")])
    return found + followed


@pytest.fixture(scope="module")
def sent(repository):
    """(the repository's decoder slots, the frame requests a robot sent an in-process frame server)."""
    local = create_predictor(tiny_backend_config(short_side=CANVAS[0], canvas=CANVAS))
    robot = InProcessServer(FrameServer(local))
    _frames_a_robot_sends(RemotePredictor(local.model, robot, short_side=CANVAS[0], canvas=CANVAS,
                                          rng=DeterministicSampling()))
    slots, canvas = ensemble_layout(_configs(repository)[ENSEMBLE_MODEL])
    assert canvas == CANVAS and len(robot.requests) == 2
    return slots, robot.requests


def test_the_ensemble_in_onnx_runtime_gives_the_in_process_frames(repository, sent):
    slots, requests = sent
    server = FrameServer(create_predictor(tiny_backend_config(short_side=CANVAS[0], canvas=CANVAS)))
    for request in requests:
        passes = slot_passes(request, slots)
        assert len(passes) == 2  # 3 texts, then 7 visual objects, in slots of 2 texts and 3 visual objects
        served = response_from_passes(request, [_run_ensemble(repository, arrays) for arrays in passes])
        reference = server([request])[0]
        assert served.logits.shape == reference.logits.shape
        assert_close(served.logits, reference.logits, "ensemble logits")
        assert_close(served.match, reference.match, "ensemble match")


@pytest.fixture(scope="module")
def triton(repository, tmp_path_factory):
    require_triton()
    server = StandInServer(repository, tmp_path_factory.mktemp("stand_in")).start()
    yield server
    assert server.stop() == 0, server.log_path.read_text()[-2000:]


def _robot(**kwargs):
    return create_predictor(tiny_backend_config(short_side=CANVAS[0], canvas=CANVAS, **kwargs))


def test_triton_serves_the_exported_repository_to_backend_triton(triton):
    served = _frames_a_robot_sends(_robot(backend="triton", triton_url=triton.url, triton_model=ENSEMBLE_MODEL))
    reference = _frames_a_robot_sends(_robot())
    assert len(served) == len(reference) == 12
    for ours, theirs in zip(served, reference):
        assert_close(ours.low_res_logits, theirs.low_res_logits, "served logits")
        assert abs(ours.score - theirs.score) < 1e-4


def test_the_encoder_batches_frames_of_robots_calling_at_once(triton, sent):
    """Triton's dynamic batcher hands the image encoder the frames of concurrent requests together."""
    import tritonclient.grpc as grpcclient
    from seem_ros.runtime.triton_client import _input
    slots, requests = sent
    arrays = slot_passes(requests[0], slots)[0]
    client = grpcclient.InferenceServerClient(triton.url)
    done: list = []
    for _ in range(6):
        client.async_infer(ENSEMBLE_MODEL, [_input(name, array[None]) for name, array in arrays.items()],
                           callback=lambda result, error: done.append(error))
    deadline = time.monotonic() + 120
    while len(done) < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert done == [None] * 6
    stats = client.get_inference_statistics(ENCODER_MODEL).model_stats[0]
    print("encoder executions by batch size:", {b.batch_size: b.compute_infer.count for b in stats.batch_stats})
    assert max(batch.batch_size for batch in stats.batch_stats) > 1, stats.batch_stats


def test_seem_ros_track_through_the_exported_repository_writes_what_it_writes_in_process(triton, tmp_path):
    assert_tracks_alike(tmp_path, ("--triton-url", triton.url, "--triton-model", ENSEMBLE_MODEL),
                        ("--canvas", f"{CANVAS[0]}x{CANVAS[1]}"))


def test_what_the_exported_repository_does_not_serve_is_refused_with_the_reason(triton):
    with pytest.raises(BackendError, match=f"built for a {CANVAS[0]}x{CANVAS[1]} canvas: set input_canvas"):
        create_predictor(tiny_backend_config(short_side=CANVAS[0], canvas=(256, 512), backend="triton",
                                             triton_url=triton.url, triton_model=ENSEMBLE_MODEL))
    robot = _robot(backend="triton", triton_url=triton.url, triton_model=ENSEMBLE_MODEL)
    rng = np.random.RandomState(0)
    with torch.inference_mode():
        robot.set_image((rng.rand(200, 300, 3) * 255).astype(np.uint8))
        found = robot.decode([robot.visual_query(VisualPrompt(points=[(100, 100, 1)]))])
        appearance = robot.appearance(found)
        robot.set_image((rng.rand(200, 300, 3) * 255).astype(np.uint8))
        with pytest.raises(ServerUnavailable, match="another image .* seem-ros serve") as refused:
            robot.decode([robot.reference_query(appearance[0])])
        assert refused.value.kind == "refused"
        with pytest.raises(ServerUnavailable, match="vocabulary"):
            robot.semantic()
        assert len(robot.decode([robot.text_query("zebra")])) == 1  # and the next frame is served
    assert robot.transport.failures["refused"] == 2


def test_a_folder_of_other_files_is_refused_untouched_and_an_export_replaced(repository, tmp_path):
    mine = tmp_path / "my_models"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    refused = _export(mine)
    assert refused.returncode == 2 and "did not write there (notes.txt)" in refused.stderr
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"] and (mine / "notes.txt").read_text() == "keep me"
    again = _export(repository, "--instances", "2")  # this tool's own files: replaced
    assert again.returncode == 0, again.stderr[-2000:]
    assert _configs(repository)[ENCODER_MODEL].instance_group[0].count == 2

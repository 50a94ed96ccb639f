"""The engine and embedding caches (issue 15, item 8): two GPUs or TensorRT versions sharing a cache
keep an engine each, two processes exporting the same graph at once export it once, a failed write
leaves no temporary file, and the class-embedding cache is written atomically and keyed on the
templates and the code."""
import dataclasses
import multiprocessing
import os
import time

import pytest

from conftest import reference_path
from seem_ros.runtime.engine_cache import GraphSpec, cached_onnx, write_atomically
from test_engine_cache import KEY, cache  # noqa: F401 - cache: the fixture


@pytest.mark.parametrize("change", [dict(tensorrt="10.7.0"), dict(gpu="NVIDIA H100", compute_capability="9.0")])
def test_another_gpu_or_tensorrt_keeps_its_own_engine_beside_the_first(cache, change):  # noqa: F811
    trt, engines, onnx = cache
    first = engines.get(onnx, KEY)
    other = engines.get(onnx, dataclasses.replace(KEY, **change))
    assert other.built and other.path != first.path
    for _ in range(2):  # the two machines (or JetPack versions) start in turn: neither rebuilds
        assert not engines.get(onnx, KEY).built and not engines.get(onnx, dataclasses.replace(KEY, **change)).built
    assert len(trt.builds) == 2
    assert "Orin-sm8.7_trt10.3.0.engine" in first.path


def _export_slowly(folder, log):
    def export(path):
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(1.0)
        with open(path, "wb") as f:
            f.write(b"graph")
    cached_onnx(GraphSpec("encoder", "focalt_v1", "c" * 64, (512, 704)), export, folder)


def test_two_processes_export_one_graph_once(tmp_path):
    log = tmp_path / "exports.log"
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_export_slowly, args=(str(tmp_path / "engines"), str(log))) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    assert [w.exitcode for w in workers] == [0, 0]
    assert len(log.read_text().split()) == 1  # the second waited for the first and used its file
    assert sorted(p.suffix for p in (tmp_path / "engines").iterdir() if p.suffix != ".lock") == [".json", ".onnx"]


def test_a_failed_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    def failing_fsync(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="No space left"):
        write_atomically(str(tmp_path / "engine.engine"), b"data")
    assert list(tmp_path.iterdir()) == []


def test_the_class_embedding_cache_is_keyed_on_the_templates_and_written_whole(tiny_model, tmp_path, monkeypatch):
    from seem_ros.runtime import backends
    checkpoint = str(reference_path("tiny", "tiny_seem.pt"))
    first = backends.cached_class_embeddings(tiny_model, checkpoint, ["cup"], str(tmp_path))
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 1 and files[0].startswith("class_embeddings_")  # no temporary file beside it
    monkeypatch.setattr(backends, "PROMPT_TEMPLATES", ("a photo of a {}.",))
    backends.cached_class_embeddings(tiny_model, checkpoint, ["cup"], str(tmp_path))
    assert len(list(tmp_path.iterdir())) == 2  # other templates: another entry, not the old one's numbers
    assert first.shape[0] == 2

"""The persistent caches (seem_ros/runtime/engine_cache.py): ONNX files named by what they were
exported from, and TensorRT engines used only when their manifest's key matches. The engine
builder is passed in, so that the cache logic is checked for real where TensorRT is absent."""
import dataclasses
import json
import logging

import pytest

from seem_ros.runtime.engine_cache import EngineCache, EngineKey, GraphSpec, cached_onnx, export_code_digest

KEY = EngineKey(tensorrt="10.3.0", gpu="Orin", compute_capability="8.7", onnx_sha256="a" * 64, precision="fp16",
                shapes=(("image", (1, 3, 512, 704)),), builder_flags=("FP16",))


class FakeTensorRT:
    """Builds 'engines' that say which key they were built for; refuses data it did not build."""

    def __init__(self):
        self.builds = []

    def build(self, onnx_path, key):
        self.builds.append(key)
        return b"ENGINE " + json.dumps(key.as_dict()).encode()

    @staticmethod
    def deserialize(data):
        if not data.startswith(b"ENGINE "):
            raise RuntimeError("not an engine")
        return json.loads(data[7:])


@pytest.fixture
def cache(tmp_path):
    trt = FakeTensorRT()
    onnx = tmp_path / "seem_decoder_x.onnx"
    onnx.write_bytes(b"onnx")
    return trt, EngineCache(trt.build, trt.deserialize, str(tmp_path / "engines")), str(onnx)


def test_a_matching_key_never_rebuilds(cache):
    trt, engines, onnx = cache
    first = engines.get(onnx, KEY)
    assert first.built and first.reason == "no cached engine" and first.engine == KEY.as_dict()
    for _ in range(3):
        again = engines.get(onnx, KEY)
        assert not again.built and again.engine == KEY.as_dict()
    assert len(trt.builds) == 1
    manifest = json.loads(open(first.path + ".json").read())
    assert manifest["key"] == KEY.as_dict() and len(manifest["engine_sha256"]) == 64


@pytest.mark.parametrize("change, said", [  # another TensorRT or GPU: test_defects_engine_cache.py
    (dict(onnx_sha256="b" * 64), "onnx_sha256"),
    (dict(shapes=(("image", (1, 3, 512, 960)),)), "shapes"),
])
def test_another_setup_rebuilds_with_the_reason_logged(cache, caplog, change, said):
    trt, engines, onnx = cache
    engines.get(onnx, KEY)
    changed = dataclasses.replace(KEY, **change)
    with caplog.at_level(logging.WARNING):
        rebuilt = engines.get(onnx, changed)
    assert rebuilt.built and said in rebuilt.reason and rebuilt.engine == changed.as_dict()
    assert said in caplog.text and "building the TensorRT engine" in caplog.text
    assert not engines.get(onnx, changed).built  # and now it is the cached one


def test_a_corrupt_engine_file_is_rebuilt(cache):
    trt, engines, onnx = cache
    path = engines.get(onnx, KEY).path
    with open(path, "r+b") as f:  # one flipped byte
        f.seek(10)
        byte = f.read(1)
        f.seek(10)
        f.write(bytes([byte[0] ^ 0xFF]))
    rebuilt = engines.get(onnx, KEY)
    assert rebuilt.built and "corrupt" in rebuilt.reason and len(trt.builds) == 2
    assert not engines.get(onnx, KEY).built


def test_an_engine_tensorrt_refuses_is_rebuilt(cache):
    trt, engines, onnx = cache
    path = engines.get(onnx, KEY).path
    manifest = json.loads(open(path + ".json").read())
    with open(path, "wb") as f:  # whole (its manifest updated) but not something TensorRT can load
        f.write(b"garbage")
    import hashlib
    manifest["engine_sha256"] = hashlib.sha256(b"garbage").hexdigest()
    open(path + ".json", "w").write(json.dumps(manifest))
    rebuilt = engines.get(onnx, KEY)
    assert rebuilt.built and "could not deserialise" in rebuilt.reason and "not an engine" in rebuilt.reason


def test_an_engine_without_its_manifest_is_rebuilt(cache):
    trt, engines, onnx = cache
    path = engines.get(onnx, KEY).path
    open(path + ".json", "w").write("{not json")
    assert "manifest" in engines.get(onnx, KEY).reason


def test_onnx_files_are_named_by_what_they_come_from_and_exported_once(tmp_path, caplog):
    exports = []

    def export(path):
        exports.append(path)
        open(path, "wb").write(b"graph %d" % len(exports))

    spec = GraphSpec("encoder", "focalt_v1", "c" * 64, (512, 704))
    path = cached_onnx(spec, export, str(tmp_path))
    assert path.endswith(f"seem_encoder_focalt_v1_cccccccccccccccc_512x704_fp32_{export_code_digest()[:8]}.onnx")
    assert cached_onnx(spec, export, str(tmp_path)) == path and len(exports) == 1
    other = cached_onnx(dataclasses.replace(spec, checkpoint_sha256="d" * 64), export, str(tmp_path))
    assert other != path and len(exports) == 2  # another checkpoint never meets this file
    assert cached_onnx(dataclasses.replace(spec, canvas=(512, 960)), export, str(tmp_path)) not in (path, other)
    open(path, "ab").write(b" edited")
    with caplog.at_level(logging.INFO):
        assert cached_onnx(spec, export, str(tmp_path)) == path
    assert len(exports) == 4 and "the file changed since it was exported" in caplog.text
    manifest = json.loads(open(path + ".json").read())
    manifest["exporter"] = {"torch": "1.0", "code": "0" * 16}  # an earlier version of the export code
    open(path + ".json", "w").write(json.dumps(manifest))
    caplog.clear()
    with caplog.at_level(logging.INFO):
        cached_onnx(spec, export, str(tmp_path))
    assert len(exports) == 5 and "exported differently (exporter" in caplog.text
    assert not list(tmp_path.glob("encoder.*"))  # no half-written files left behind

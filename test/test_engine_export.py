"""The exported graphs (seem_ros/runtime/onnx_graphs.py) run by ONNX Runtime against the official
outputs and against torch: the parity cases through the exported slot decoder (the official draws
replayed), every kind of object in one pass of fixed slots, the image encoder, the whole
onnxruntime backend, and TensorRT where it is installed."""
import copy

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import load_case, reference_path, tiny_backend_config
from noise_model import assert_close, assert_masks_from_logits
from parity_prompts import DEMO_PROMPTS, DOG, EVAL_CASES, eval_prompt, every_kind_of_object
from replay import ReplayedRandomness
from seem_ros.inference.predictor import SeemPredictor
from seem_ros.inference.visual_prompt import VisualPrompt
from seem_ros.model.visual_sampler import DeterministicSampling
from seem_ros.runtime.backends import create_predictor, describe_backend
from seem_ros.runtime.cuda_graphs import CudaGraphSlotDecoder
from seem_ros.runtime.exported import ExportedGraphs, ort_opener
from seem_ros.runtime.onnx_graphs import default_slots


def _rgb(path):
    return np.asarray(Image.open(reference_path(path)).convert("RGB"))


@pytest.fixture(scope="module")
def graphs(tiny_model, tmp_path_factory):
    """The tiny model's graphs in ONNX Runtime, exported once per input size into one cache."""
    return ExportedGraphs(tiny_model, "tiny", "0" * 64, default_slots(tiny_model, visual=3, text=2),
                          ort_opener(["CPUExecutionProvider"], {}), str(tmp_path_factory.mktemp("engines")))


def _through_onnxruntime(predictor: SeemPredictor, graphs: ExportedGraphs) -> SeemPredictor:
    predictor.image_encoder = graphs
    predictor.engine.run_slots = graphs.decode_slots
    return predictor


def _close(ours: torch.Tensor, official: np.ndarray, what: str) -> float:
    """ONNX Runtime is held to the same noise model as the torch engine against the official outputs."""
    assert_close(ours, official, what)
    assert_masks_from_logits(ours, official, what)
    return float(np.abs(ours.detach().cpu().numpy() - official).max())


@pytest.mark.parametrize("name", sorted(DEMO_PROMPTS))
def test_visual_prompt_cases_through_the_exported_decoder(tiny_model, graphs, name):
    case = load_case(name)
    rng = ReplayedRandomness(case)
    predictor = SeemPredictor(tiny_model, rng=rng)
    predictor.engine.run_slots = graphs.decode_slots  # the torch encoder: the decoder graph alone
    with torch.no_grad():
        predictor.set_image(case["input/image_uint8_hwc"].astype(np.uint8))
        result = predictor.decode([predictor.visual_query(DEMO_PROMPTS[name](case))])[0]
    print(f"{name}: max |diff| {_close(result.low_res_logits, case['rec/pred_calls/0/out/prev_mask'][0, 0], name):.2g}")
    rng.assert_all_used()


@pytest.mark.parametrize("name", list(EVAL_CASES[:2]) + ["d_multiround_point"])
def test_rounds_with_memory_through_the_exported_decoder(tiny_model, graphs, name):
    case = load_case(name)
    rng = ReplayedRandomness(case)
    predictor = SeemPredictor(tiny_model, rng=rng)
    predictor.engine.run_slots = graphs.decode_slots
    rounds = 3 if name == "d_multiround_point" else 1
    with torch.no_grad():
        predictor.set_image(_rgb(DOG))
        previous = None
        for r in range(rounds):
            pos, neg = predictor.prompt_masks([eval_prompt(case)])
            if r:
                pos = [torch.from_numpy(case[f"rec/pred_calls/{r}/extra_in/spatial_query_pos_mask/0"]).bool()]
                neg = [torch.from_numpy(case[f"rec/pred_calls/{r}/extra_in/spatial_query_neg_mask/0"]).bool()]
            query = predictor._spatial_queries(pos, neg, [previous], [""])[0]
            previous = predictor.decode([query])[0]
            _close(previous.low_res_logits, case[f"rec/pred_calls/{r}/out/prev_mask"][0, 0], f"{name} round {r}")
    rng.assert_all_used()


def test_text_case_through_the_exported_decoder(tiny_model, graphs):
    case = load_case("b_grounding_dog_left")
    predictor = SeemPredictor(tiny_model, rng=ReplayedRandomness(case))
    predictor.engine.run_slots = graphs.decode_slots
    with torch.no_grad():
        predictor.set_image(_rgb("images/corgi2.jpg"))
        result = predictor.decode([predictor.text_query("the dog on the left")])[0]
    _close(result.low_res_logits, case["rec/pred_calls/0/out/pred_gmasks"][0][case["derived/matched_id"]][0], "text")


def test_every_kind_of_object_in_fixed_slots_equals_torch(tiny_model, graphs):
    """Texts, clicks with memory, text + box, a followed mask and an example region in one frame,
    more objects of each kind than the graph has slots (they take a second pass)."""
    predictor = SeemPredictor(copy.deepcopy(tiny_model), rng=DeterministicSampling())
    with torch.no_grad():
        queries = every_kind_of_object(predictor) + [
            predictor.visual_query(VisualPrompt(scribbles=[[(10, 100), (200, 120)]]))]
        in_torch = predictor.engine.decode(predictor.frame, queries)
        predictor.engine.run_slots = graphs.decode_slots
        exported = predictor.engine.decode(predictor.frame, queries)
    diff = float((in_torch.logits - exported.logits).abs().max())
    print(f"{len(queries)} objects, slots {graphs.slots.describe()}: max |diff| ONNX Runtime vs torch {diff:.2g}")
    assert_close(exported.logits, in_torch.logits, "ONNX Runtime vs torch")
    assert_masks_from_logits(exported.logits, in_torch.logits, "ONNX Runtime vs torch")
    assert float((in_torch.match - exported.match).abs().max()) <= 1e-5


def test_the_fixed_slot_decoder_in_torch_equals_the_engine(tiny_model, caplog):
    """What a CUDA graph replays (SlotDecoderGraph over fixed slots) run eagerly: host tensors (no
    CUDA here, or an inactive node's model on the CPU) are run eagerly without trying a capture."""
    predictor = SeemPredictor(copy.deepcopy(tiny_model), rng=DeterministicSampling())
    with torch.no_grad():
        predictor.set_image(_rgb("images/zebras2.jpg"))
        clicked = predictor.decode([predictor.visual_query(VisualPrompt(points=[(120, 90, 1)]))])[0]
        queries = [predictor.text_query("the zebra"), predictor.follow_query(clicked),
                   predictor.visual_query(VisualPrompt(points=[(120, 90, 1), (20, 20, 0)]), memory=clicked)]
        engine = predictor.engine.decode(predictor.frame, queries)
        decoder = CudaGraphSlotDecoder(predictor.model, default_slots(predictor.model, visual=2, text=1))
        predictor.engine.run_slots = decoder.decode_slots
        slots = predictor.engine.decode(predictor.frame, queries)
    assert_close(slots.logits, engine.logits, "fixed slots vs engine")  # rounding of longer padded rows
    assert_masks_from_logits(slots.logits, engine.logits, "fixed slots vs engine")
    if not torch.cuda.is_available():
        assert not decoder.failed and not decoder.graphs and "runs eagerly" not in caplog.text


def test_exported_image_encoder_equals_torch(tiny_model, graphs):
    image = tiny_model.normalize_and_pad(torch.from_numpy(_rgb("images/penguin.jpeg").copy()).permute(2, 0, 1))
    with torch.no_grad():
        mask_features, levels = tiny_model.encode_image(image)
    ours, our_levels = graphs.encode_image(image)
    diffs = [float((a - b).abs().max()) for a, b in zip([mask_features, *levels], [ours, *our_levels])]
    print(f"image encoder {tuple(image.shape[-2:])}: max |diff| ONNX Runtime vs torch {max(diffs):.2g}")
    for name, a, b in zip(["mask_features", "level0", "level1", "level2"], [mask_features, *levels], [ours, *our_levels]):
        assert_close(b, a, f"image encoder {name}")


def test_the_onnxruntime_backend_runs_both_graphs_from_its_cache(tmp_path):
    cfg = tiny_backend_config(backend="onnxruntime", engine_cache_dir=str(tmp_path), canvas=(512, 800))
    predictor = create_predictor(cfg)  # a fixed canvas: both graphs exported at configure
    files = sorted(p.name for p in tmp_path.glob("*.onnx"))
    assert len(files) == 2 and files[0].startswith("seem_decoder_custom-") and files[1].startswith("seem_encoder_")
    assert all("_512x800_" in name and "_fp32_" in name for name in files)
    backend, warning = describe_backend(cfg, predictor)
    assert backend.startswith("onnxruntime [CPUExecutionProvider] (image encoder and decoder)") and not warning
    torch_cfg = tiny_backend_config(canvas=(512, 800))
    results = []
    for p in (predictor, create_predictor(torch_cfg)):
        with torch.no_grad():
            p.set_image(_rgb("images/zebras1.jpg"))
            results.append(p.decode([p.text_query("zebra"), p.visual_query(VisualPrompt(points=[(100, 100, 1)]))]))
    for ort_result, torch_result in zip(*results):
        # encoder and decoder both exported: their float differences add up
        assert float((ort_result.low_res_logits - torch_result.low_res_logits).abs().max()) <= 1e-3
        assert (ort_result.mask != torch_result.mask).sum() <= 0.001 * ort_result.mask.size
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*.onnx")}
    create_predictor(cfg)  # a second start: the cached graphs, nothing exported again
    assert {p: p.stat().st_mtime_ns for p in tmp_path.glob("*.onnx")} == stamps


def _tensorrt_and_cuda() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


@pytest.mark.skipif(not _tensorrt_and_cuda(), reason="needs TensorRT's Python package and a CUDA GPU")
@pytest.mark.parametrize("precision, tolerance", [("fp32", 1e-3), ("fp16", None)])
def test_tensorrt_engines_match_torch_and_are_cached(tmp_path, precision, tolerance):
    cfg = tiny_backend_config(backend="tensorrt", device="cuda", precision=precision, engine_cache_dir=str(tmp_path),
                              canvas=(512, 800))
    predictor = create_predictor(cfg)
    assert "engines built" in describe_backend(cfg, predictor)[0]
    assert len(list(tmp_path.glob("*.engine"))) == 2 and len(list(tmp_path.glob("*.engine.json"))) == 2
    again = create_predictor(cfg)
    assert "engines built" not in describe_backend(cfg, again)[0]  # the same key: loaded, never rebuilt
    torch_cfg = tiny_backend_config(device="cuda", canvas=(512, 800))
    results = []
    for p in (again, create_predictor(torch_cfg)):
        with torch.no_grad():
            p.set_image(_rgb("images/zebras1.jpg"))
            results.append(p.decode([p.text_query("zebra"), p.visual_query(VisualPrompt(points=[(100, 100, 1)]))]))
    for trt_result, torch_result in zip(*results):
        agreement = float(((trt_result.mask == torch_result.mask).mean()))
        print(f"TensorRT {precision}: mask agreement with torch {agreement:.4f}")
        assert agreement >= 0.995
        if tolerance is not None:
            assert float((trt_result.low_res_logits - torch_result.low_res_logits).abs().max()) <= tolerance

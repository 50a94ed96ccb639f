"""Parity with the official SEEM v1 code: every case in seem_reference/cases, replaying the
official random draws. Floats and mask decisions within the noise model of noise_model.py."""
import copy

import numpy as np
import pytest
import torch
from PIL import Image
from torch.nn import functional as F

from conftest import load_case, reference_path
from noise_model import NEAR_TIE_PROBABILITY, assert_close, assert_decided_equal
from replay import ReplayedRandomness
from seem_ros.inference.coco_classes import COCO_PANOPTIC_CLASSES
from seem_ros.inference.official_layout import OfficialLayoutPredictor
from seem_ros.inference.postprocess import (resize, semantic_inference, semantic_postprocess, top2_gap,
                                            upsample_and_crop)
from seem_ros.inference.visual_prompt import VisualPrompt


def image(case, key="input/image_uint8_hwc"):
    return case[key].astype(np.uint8)


@pytest.fixture
def make_predictor(tiny_model):
    def make(case):
        rng = ReplayedRandomness(case)
        return OfficialLayoutPredictor(tiny_model, rng=rng), rng
    return make


def test_text_encoder(tiny_model):
    case = load_case("t_text_encoder")
    texts = ["zebra", "a photo of a zebra.", "the dog on the left", "A background in coco."]
    ids, mask = tiny_model.language.tokenize(texts)
    np.testing.assert_array_equal(ids.numpy(), case["input/input_ids"])
    np.testing.assert_array_equal(mask.numpy(), case["input/attention_mask"])
    with torch.no_grad():
        assert_close(tiny_model.language.lang_encoder(ids), case["out/last_hidden_state"], "last_hidden_state")
        tokens, sentence = tiny_model.language.encode_tokens(ids, full_length=True)
        assert_close(tokens, case["out/token_emb"], "token_emb")
        short_tokens, short_sentence = tiny_model.language.encode_tokens(ids)
        assert short_tokens.shape[1] == int(mask.sum(1).max())  # stops at the longest text's end token
        assert_close(short_tokens, case["out/token_emb"][:, : short_tokens.shape[1]], "token_emb (truncated)")
        assert_close(short_sentence, case["out/class_emb"], "class_emb (truncated)")
        assert_close(sentence, case["out/class_emb"], "class_emb")
        assert_close(tiny_model.language.encode_tokens(ids, norm=True)[1], case["out/forward_language_norm"],
                     "forward_language(norm=True)")


def test_class_embeddings(tiny_model):
    ref = load_case("text_class_embeddings")
    ours = tiny_model.language.class_embeddings(list(COCO_PANOPTIC_CLASSES) + ["background"])
    assert_close(ours, ref["default_text_embeddings"], "default_text_embeddings")
    assert_close(tiny_model.language.logit_scale, ref["logit_scale"], "logit_scale")


def test_a_panoptic_zebras1(tiny_model, make_predictor):
    case = load_case("a_panoptic_zebras1")
    predictor, _ = make_predictor(case)
    rgb = np.asarray(Image.open(reference_path("images", "zebras1.jpg")).convert("RGB"))
    with torch.no_grad():
        x = tiny_model.normalize_and_pad(torch.from_numpy(image(case)).permute(2, 0, 1))
        assert_close(x, case["rec/backbone_in/0"], "backbone input")
        features = tiny_model.backbone(x)
        for name, value in features.items():
            assert_close(value, case[f"rec/backbone_out/0/{name}"], f"backbone {name}")
        mask_features, multi_scale = tiny_model.sem_seg_head.pixel_decoder(features)
        assert_close(mask_features, case["rec/pixdec/0/mask_features"], "mask_features")
        for i, level in enumerate(multi_scale):
            assert_close(level, case[f"rec/pixdec/0/multi_scale_features/{i}"], f"multi_scale_features/{i}")
    _check_object_queries(tiny_model, predictor.class_embeddings, multi_scale, mask_features, case)

    predictor.set_image(rgb)  # the predictor's own resize must give the official input
    f = predictor.features
    # the official decoder outputs through the same post-processing: the official decisions' margins
    official_logits = torch.from_numpy(case["rec/pred_calls/0/out/pred_logits"][0])
    official_masks = upsample_and_crop(torch.from_numpy(case["rec/pred_calls/0/out/pred_masks"][0]), f.padded_hw,
                                       f.input_hw)
    semantic = predictor.semantic()
    assert_close(semantic[:, ::8, ::8], case["post/sem_seg_stride8"], "sem_seg (stride 8)")
    assert_close(semantic.max(0).values, case["post/sem_seg_max"], "sem_seg max")
    official_semantic = semantic_postprocess(semantic_inference(official_logits, official_masks), f.input_hw,
                                             f.input_hw)
    assert_decided_equal(semantic.argmax(0), case["post/sem_seg_argmax"], top2_gap(official_semantic),
                         "sem_seg argmax", NEAR_TIE_PROBABILITY)
    panoptic, instances = predictor.segment_everything()
    official_panoptic = panoptic_margin(official_logits, official_masks, predictor)
    assert_decided_equal(panoptic.id_map, case["post/panoptic_seg"], official_panoptic, "panoptic id map",
                         NEAR_TIE_PROBABILITY)
    official = [{"id": 1, "isthing": True, "category_id": 63}]
    assert [{"id": s.id, "isthing": s.is_thing, "category_id": s.category_id} for s in panoptic.segments] == official
    order = torch.argsort(instances.scores, descending=True, stable=True)
    assert_close(instances.scores[order], np.sort(case["post/instances_scores"])[::-1].copy(), "instance scores")
    np.testing.assert_array_equal(np.sort(instances.classes.numpy()), np.sort(case["post/instances_pred_classes"]))
    top5 = torch.from_numpy(case["post/instances_top5_index"])
    for rank, index in enumerate(top5):
        assert_decided_equal(instances.masks[index], case["post/instances_top5_masks"][rank],
                             official_masks[instances.queries[index]], f"instance {int(index)} mask")


def _check_object_queries(model, class_embeddings, multi_scale, mask_features, case):
    """The decoder's object-query outputs, every layer's, against the official ones."""
    with torch.no_grad():
        out = model.decoder(multi_scale, mask_features, text_embeddings=class_embeddings)
    for key in ("pred_logits", "pred_masks"):
        assert_close(out.official(key), case[f"rec/pred_calls/0/out/{key}"], key)
        for layer, aux in enumerate(out.earlier_layers):
            assert_close(aux.official(key), case[f"rec/pred_calls/0/out/aux_outputs/{layer}/{key}"],
                         f"layer {layer} {key}")


@pytest.mark.parametrize("layer", ["first", "last"])
@pytest.mark.parametrize("weights", ["ffn", "cross_attention"])
def test_the_noise_model_still_catches_a_weight_changed_by_1e_3(tiny_model, layer, weights, monkeypatch):
    """The tolerances are float noise, not slack: one decoder layer's weights scaled by 1 + 1e-3
    must fail the parity check."""
    case = load_case("a_panoptic_zebras1")
    changed = copy.deepcopy(tiny_model)
    index = 0 if layer == "first" else changed.decoder.num_layers - 1
    module = (changed.decoder.transformer_ffn_layers[index].linear2 if weights == "ffn"
              else changed.decoder.transformer_cross_attention_layers[index].multihead_attn.out_proj)
    with torch.no_grad():
        module.weight.mul_(1 + 1e-3)
        multi_scale = [torch.from_numpy(case[f"rec/pixdec/0/multi_scale_features/{i}"]) for i in range(3)]
        mask_features = torch.from_numpy(case["rec/pixdec/0/mask_features"])
    class_embeddings = OfficialLayoutPredictor(tiny_model).class_embeddings
    _check_object_queries(tiny_model, class_embeddings, multi_scale, mask_features, case)  # unchanged: passes
    monkeypatch.delenv("SEEM_NOISE_REPORT", raising=False)  # the changed model's differences are not noise
    with pytest.raises(AssertionError, match="over the noise bar"):
        _check_object_queries(changed, class_embeddings, multi_scale, mask_features, case)


def panoptic_margin(class_logits, mask_logits, predictor):
    """Per pixel, how far the panoptic merge's decision is from flipping (official_panoptic's
    inputs): the gap between the best and second-best owner (class score x mask probability) and
    the owner's distance from the 0.5 mask threshold, in probability units."""
    cfg = predictor.model.cfg
    scores, labels = F.softmax(class_logits, dim=-1).max(-1)
    keep = labels.ne(class_logits.shape[-1] - 1) & (scores > cfg.object_mask_threshold)
    probabilities = mask_logits[keep].sigmoid()
    owner = (scores[keep].view(-1, 1, 1) * probabilities)
    threshold = (probabilities.gather(0, owner.argmax(0, keepdim=True))[0] - 0.5).abs()
    return torch.minimum(top2_gap(owner), threshold)


def _grounding_case(name, make_predictor, tiny_model, texts, image_file):
    case = load_case(name)
    predictor, _ = make_predictor(case)
    predictor.set_image(np.asarray(Image.open(reference_path(image_file)).convert("RGB")))
    for i, text in enumerate(texts):
        tokens, sentence = predictor.text_tokens(text)
        assert_close(sentence, case["rec/text_tok/0/class_emb"][i], f"class_emb {text!r}")
    ref_tokens = case["rec/pred_calls/0/extra_in/grounding_tokens"]
    ours_tokens = torch.cat([predictor.text_tokens(t)[0] for t in texts])[:, None]
    assert_close(ours_tokens, ref_tokens, "grounding tokens")
    logits, _ = predictor.grounding_logits(texts)
    np.testing.assert_array_equal(case["derived/matched_id"].shape, (len(texts),))
    ref_gmasks = case["rec/pred_calls/0/out/pred_gmasks"][0]
    assert_close(logits, ref_gmasks[case["derived/matched_id"]], "matched grounding masks")
    f = predictor.features
    upsampled = F.interpolate(logits[None], size=f.padded_hw, mode="bilinear", align_corners=False)[0]
    assert_close(semantic_postprocess(upsampled, f.input_hw, f.input_hw), case["post/grounding_mask"],
                 "grounding_mask")
    results = predictor.predict_text(texts)
    for result, ref in zip(results, case["post/grounding_mask"]):
        ref_resized = resize(torch.from_numpy(ref), f.original_hw).numpy() > 0
        assert result.mask.shape == ref_resized.shape


def test_b_grounding_zebra(make_predictor, tiny_model):
    _grounding_case("b_grounding_zebra", make_predictor, tiny_model, ["zebra"], "images/zebras1.jpg")


def test_b_grounding_dog_left(make_predictor, tiny_model):
    _grounding_case("b_grounding_dog_left", make_predictor, tiny_model, ["the dog on the left"], "images/corgi2.jpg")


def test_b_grounding_two_texts(make_predictor, tiny_model):
    _grounding_case("b_grounding_two_texts", make_predictor, tiny_model, ["zebra", "the grass"], "images/zebras1.jpg")


def _prompt_masks_equal(predictor, case, call, prompts):
    pos, neg = predictor.prompt_masks(prompts)
    for j, (p, n) in enumerate(zip(pos, neg)):
        np.testing.assert_array_equal(p.numpy(), case[f"rec/pred_calls/{call}/extra_in/spatial_query_pos_mask/{j}"],
                                      err_msg="rasterised positive prompt differs")
        np.testing.assert_array_equal(n.numpy(), case[f"rec/pred_calls/{call}/extra_in/spatial_query_neg_mask/{j}"])
    return pos, neg


def _interactive_case(name, make_predictor, rounds):
    """evaluate_interactive: round 0 from the sampler's mask; later rounds from the official click
    simulator's accumulated pos/neg masks, with our previous round's mask as memory."""
    case = load_case(name)
    predictor, rng = make_predictor(case)
    predictor.set_image(np.asarray(Image.open(reference_path("davis/JPEGImages/480p/dog/00000.jpg")).convert("RGB")))
    f = predictor.features
    pos, neg = _prompt_masks_equal(predictor, case, 0, [VisualPrompt(mask=case["input/rand_shape"][0, 0])])
    memory = None
    gt = torch.from_numpy(case["input/gt_masks_orisize"][0])
    for r in range(rounds):
        if r:
            pos = [torch.from_numpy(case[f"rec/pred_calls/{r}/extra_in/spatial_query_pos_mask/0"]).bool()]
            neg = [torch.from_numpy(case[f"rec/pred_calls/{r}/extra_in/spatial_query_neg_mask/0"]).bool()]
            assert_close(memory[:, None], case[f"rec/pred_calls/{r}/extra_in/prev_mask"], f"round {r} memory input")
        logits = predictor.spatial_logits(pos, neg, memory)
        assert_close(logits[:, None], case[f"rec/pred_calls/{r}/out/prev_mask"], f"round {r} mask logits")
        at_original = lambda x: resize(upsample_and_crop(x, f.padded_hw, f.input_hw), f.original_hw)  # noqa: E731
        mask = at_original(logits).sigmoid() > 0.5
        official = at_original(torch.from_numpy(case[f"rec/pred_calls/{r}/out/prev_mask"][:, 0]))
        assert_decided_equal(mask, case[f"derived/round{r}_pred_mask_orisize"], official, f"round {r} mask")
        iou = float((mask[0] & (gt == 1)).sum() / ((mask[0] | (gt == 1)).sum()))
        assert abs(iou - case["post/mask_iou_per_round"][0, r]) < 1e-3
        memory = logits
    rng.assert_all_used()


@pytest.mark.parametrize("name", ["c_eval_point", "c_eval_box", "c_eval_scribble", "c_eval_circle", "c_eval_polygon"])
def test_c_eval(name, make_predictor):
    _interactive_case(name, make_predictor, 1)


def test_d_multiround_point(make_predictor):
    _interactive_case("d_multiround_point", make_predictor, 3)


def _check_single_outputs(predictor, case, logits, call, orig_hw):
    """evaluate_interactive_single post-processing: bicubic to padded, crop, (bicubic to original)."""
    f = predictor.features
    assert_close(logits[:, None], case[f"rec/pred_calls/{call}/out/prev_mask"], "selected mask logits")
    at_input = lambda x: upsample_and_crop(x, f.padded_hw, f.input_hw, mode="bicubic")  # noqa: E731
    official = at_input(torch.from_numpy(case[f"rec/pred_calls/{call}/out/prev_mask"][:, 0]))
    assert_decided_equal(at_input(logits) > 0, case["post/pred_mask_batch"][:, 0], official, "pred_mask_batch")
    assert_decided_equal(resize(at_input(logits), orig_hw, mode="bicubic") > 0, case["post/pred_mask_ori"],
                         resize(official, orig_hw, mode="bicubic"), "pred_mask_ori")


def _demo_case(name, make_predictor, prompts):
    case = load_case(name)
    predictor, rng = make_predictor(case)
    predictor.set_image(image(case))
    _prompt_masks_equal(predictor, case, 0, prompts)
    results = predictor.predict_visual(prompts)
    logits = torch.stack([r.low_res_logits for r in results])
    _check_single_outputs(predictor, case, logits, 0, case["post/pred_mask_ori"].shape[-2:])
    assert all(r.mask.shape == tuple(predictor.features.original_hw) for r in results)
    rng.assert_all_used()


def test_c_demo_point(make_predictor):
    _demo_case("c_demo_point", make_predictor, [VisualPrompt(points=[(300, 300, 1)])])


def test_c_demo_scribble(make_predictor):
    _demo_case("c_demo_scribble", make_predictor, [VisualPrompt(scribbles=[[(250, 250), (400, 330)]])])


def test_c_demo_box_filled(make_predictor):
    _demo_case("c_demo_box_filled", make_predictor, [VisualPrompt(box=(200, 150, 450, 420))])


def test_c_demo_two_prompts(make_predictor):
    _demo_case("c_demo_two_prompts", make_predictor,
               [VisualPrompt(points=[(300, 300, 1)]), VisualPrompt(scribbles=[[(600, 200), (750, 300)]])])


def test_c_demo_mask_river(make_predictor):
    sketch = np.asarray(Image.open(reference_path("images", "river1_mask.png")))[:, :, 0]
    _demo_case("c_demo_mask_river", make_predictor, [VisualPrompt(mask=sketch)])


def test_g_video_maskprop_f0_to_f1(make_predictor):
    case = load_case("g_video_maskprop_f0_to_f1")
    _demo_case("g_video_maskprop_f0_to_f1", make_predictor, [VisualPrompt(mask=case["input/rand_shape"][0, 0] > 0)])


def _reference_case(name, make_predictor, patched):
    case = load_case(name)
    predictor, rng = make_predictor(case)
    predictor.set_image(image(case, "input/imageA_uint8_hwc"))
    pos, neg = _prompt_masks_equal(predictor, case, 0, [VisualPrompt(mask=case["input/maskA"][0, 0] > 0)])
    reference = predictor.encode_reference_masks(pos, neg)
    assert_close(reference.pos_query, case["refimg_tokens/spatial_query_pos"], "reference pos query")
    assert_close(reference.neg_query, case["refimg_tokens/spatial_query_neg"], "reference neg query")
    for level in range(3):
        assert_close(reference.level_tokens[level], case[f"refimg_tokens/src_spatial_queries/{level}"], "tokens")
        np.testing.assert_array_equal(reference.level_padding[level].numpy(),
                                      case[f"refimg_tokens/src_spatial_maskings/{level}"])
        if patched:
            assert_close(reference.level_prompt_index[level], case[f"refimg_tokens/src_spatial_indices/{level}"],
                         "token prompt indices")
    predictor.set_image(image(case, "input/imageB_uint8_hwc"))
    logits = predictor.spatial_logits([], [], reference=reference)
    if patched:
        _check_single_outputs(predictor, case, logits, 1, case["post/pred_mask_ori"].shape[-2:])
    else:
        # the official v1 code crashes on image B; ours must produce a finite mask there
        assert torch.isfinite(logits).all() and logits.shape[-2:] == predictor.features.mask_features.shape[-2:]
    rng.assert_all_used()


@pytest.mark.parametrize("name", ["e_refimg_river", "g_video_refimg_f0_to_f1", "g_video_refimg_f0_to_f2"])
def test_referring_image_official_crashes(name, make_predictor, cases_index):
    assert "UnboundLocalError" in cases_index["cases"][name]["error_on_B"]
    _reference_case(name, make_predictor, patched=False)


@pytest.mark.parametrize("name", ["e_refimg_river_PATCHED", "g_video_refimg_f0_to_f1_PATCHED",
                                  "g_video_refimg_f0_to_f2_PATCHED"])
def test_referring_image_patched(name, make_predictor):
    _reference_case(name, make_predictor, patched=True)


def test_f_composition_zebra_scribble(make_predictor):
    case = load_case("f_composition_zebra_scribble")
    predictor, rng = make_predictor(case)
    predictor.set_image(image(case))
    prompt = VisualPrompt(mask=case["input/rand_shape"][0, 0] > 0)
    result = predictor.predict_text_with_prompts(["zebra"], [prompt])[0]
    ref = case["rec/pred_calls/0/out/pred_gmasks"][0]
    f = predictor.features
    upsampled = F.interpolate(result.low_res_logits[None, None], size=f.padded_hw, mode="bilinear",
                              align_corners=False)[0]
    assert_close(semantic_postprocess(upsampled, f.input_hw, f.input_hw), case["post/grounding_mask"],
                 "grounding_mask")
    # the official choice: the grounding query whose caption embedding is closest to the text's
    captions, sentence = case["rec/pred_calls/0/out/pred_gtexts"][0], case["rec/text_tok/0/class_emb"]
    matched = int(np.argmax(captions @ sentence[0] / np.linalg.norm(captions, axis=-1)))
    assert_close(result.low_res_logits, ref[matched], "matched grounding mask")
    rng.assert_all_used()

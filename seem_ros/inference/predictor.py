"""SeemPredictor: set an image once, then ask for any number of prompts (segment-anything's
SamPredictor pattern, with SEEM's prompts).

    predictor = SeemPredictor(load_seem("seem_focalt_v1.pt"))
    predictor.set_image(rgb)                         # backbone + pixel decoder run once
    everything = predictor.segment_everything()      # panoptic, COCO or custom vocabulary

    # a camera frame with several objects: one decoder pass for all (the frame engine)
    ref = predictor.encode_reference(example_rgb, example_mask)
    queries = [predictor.text_query("the red cup"), predictor.visual_query(VisualPrompt(points=[(320, 240, 1)])),
               predictor.follow_query(previous_result), predictor.reference_query(ref)]
    results = predictor.decode(queries)

decode() runs every object in its own row of one frame-engine pass, so objects do not influence one
another (the official call layouts, one decoder call per request: official_layout.py). Prompt
coordinates are pixels of the image given to `set_image` (x right, y down). Masks come back at that
image's size.
"""
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.nn import functional as F

from seem_ros.inference.coco_classes import COCO_PANOPTIC_CLASSES, NUM_THING_CLASSES
from seem_ros.inference.frame_engine import Decoded, FrameEngine, FrameFeatures
from seem_ros.inference.frame_slots import ObjectQuery
from seem_ros.inference.postprocess import (InstanceResult, PanopticResult, instance_inference, masks_to_host,
                                            panoptic_inference, resize, semantic_inference, semantic_postprocess,
                                            upsample_and_crop)
from seem_ros.inference.visual_prompt import VisualPrompt, no_negatives, rasterize
from seem_ros.model.seem import SEEM, pad_to_multiple
from seem_ros.model.visual_sampler import DecoderRandomness, SpatialPrompt


def resize_short_side(image: np.ndarray, short_side: int) -> np.ndarray:
    """PIL bicubic resize so the short side is `short_side` (torchvision Resize(int) semantics)."""
    h, w = image.shape[:2]
    if min(h, w) == short_side:
        return image
    if w < h:
        size = (short_side, int(short_side * h / w))
    else:
        size = (int(short_side * w / h), short_side)
    return np.asarray(Image.fromarray(image).resize(size, Image.BICUBIC))


@dataclass
class EncodedImage:
    """An image through the backbone and the pixel decoder, with its geometry."""
    mask_features: Tensor  # (1, mask_dim, Hp/4, Wp/4)
    multi_scale: List[Tensor]  # 3 maps (1, C, h, w), coarse to fine
    input_hw: Tuple[int, int]  # the resized image's size within the padded input
    padded_hw: Tuple[int, int]  # the padded input (the canvas when one is set)
    original_hw: Tuple[int, int]  # the image given to set_image
    scale: Tuple[float, float]  # input / original, (y, x)
    canvas_image: Optional[np.ndarray] = None  # uint8 (Hp, Wp, 3), for a runtime that encodes elsewhere (Triton)

    @property
    def mask_hw(self) -> Tuple[int, int]:  # the mask logits' (and mask features') size
        return self.padded_hw[0] // 4, self.padded_hw[1] // 4


@dataclass
class MaskResult:
    mask: np.ndarray  # bool (H, W) at the set_image size
    score: float
    low_res_logits: Tensor  # (h/4, w/4) logits on the padded input: pass back as memory
    label: str = ""
    input_hw: Optional[Tuple[int, int]] = None  # the image's size within the padded input
    input_mask: Optional[Tensor] = None  # bool input_hw on the logits' device: prompts the next frame


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


CATEGORY_CACHE_SIZE = 64  # category nouns whose class embeddings are kept


class SeemPredictor:
    def __init__(self, model: SEEM, class_names: Sequence[str] = COCO_PANOPTIC_CLASSES,
                 num_thing_classes: int = NUM_THING_CLASSES, short_side: int = 512,
                 rng: Optional[DecoderRandomness] = None, text_cache_size: int = 256,
                 image_encoder: Optional[Callable[[Tensor], Tuple[Tensor, List[Tensor]]]] = None,
                 class_embeddings: Optional[Tensor] = None, canvas: Optional[Tuple[int, int]] = None):
        """image_encoder: replaces model.encode_image (e.g. an ONNX Runtime / TensorRT session).
        class_embeddings: precomputed embeddings of class_names + ["background"] (e.g. from a cache).
        canvas: (height, width), multiples of 32: every image, resized to short side `short_side`
        (and shrunk to fit when it does not), is padded to this one size, so that one encoder graph
        or engine serves a whole stream; None pads each image to the next multiple of 32, as the
        official code does."""
        if model.cfg.decoder_version != 1:
            # v0 checkpoints share v1's keys but attend differently; running them as v1 would be silently wrong
            raise NotImplementedError("only SEEM v1 checkpoints can be run; v0 loads for inspection only")
        self.model = model.eval()
        self.image_encoder = image_encoder or model.encode_image
        self.short_side = short_side
        if canvas is not None and (canvas[0] % model.cfg.size_divisibility or canvas[1] % model.cfg.size_divisibility):
            raise ValueError(f"canvas {canvas} must be multiples of {model.cfg.size_divisibility}")
        self.canvas = tuple(canvas) if canvas is not None else None
        self.rng = rng or DecoderRandomness(torch.Generator().manual_seed(0))
        self.engine = FrameEngine(model, self.rng)
        self._frame: Optional[FrameFeatures] = None
        self._text_cache: "OrderedDict[str, Tuple[Tensor, Tensor]]" = OrderedDict()
        self._text_cache_size = text_cache_size
        # decode_and_detect's vocabulary, a row per noun (each row is computed on its own: 81
        # templates), kept for the newest CATEGORY_CACHE_SIZE nouns
        self._category_embeddings: "OrderedDict[str, Tensor]" = OrderedDict()
        self.set_vocabulary(class_names, num_thing_classes, class_embeddings)
        self._features: Optional[EncodedImage] = None

    def to(self, device) -> "SeemPredictor":
        """Moves the model and what is cached with it (class embeddings, text tokens) to `device`
        and forgets the current image, so that nothing of it stays on the previous device."""
        self.model.to(device)
        self.class_embeddings = self.class_embeddings.to(device)
        self._text_cache = OrderedDict((text, tuple(t.to(device) for t in value))
                                       for text, value in self._text_cache.items())
        self._category_embeddings = OrderedDict((noun, e.to(device)) for noun, e in self._category_embeddings.items())
        self._features = self._frame = None
        return self

    # ---------------------------------------------------------------- vocabulary and text
    @torch.no_grad()
    def set_vocabulary(self, class_names: Sequence[str], num_thing_classes: Optional[int] = None,
                       embeddings: Optional[Tensor] = None) -> None:
        """Classes for segment_everything; "background" is appended as the no-object class."""
        self.class_names = list(class_names)
        self.num_thing_classes = len(self.class_names) if num_thing_classes is None else num_thing_classes
        if embeddings is None:
            embeddings = self.model.language.class_embeddings(self.class_names + ["background"])
        elif embeddings.shape[0] != len(self.class_names) + 1:
            raise ValueError(f"{embeddings.shape[0]} class embeddings for {len(self.class_names)} classes + background")
        self.class_embeddings = embeddings.to(self.model.device)

    @torch.no_grad()
    def text_tokens(self, text: str) -> Tuple[Tensor, Tensor]:
        """(token embeddings of the text's real tokens (T, D), sentence embedding (D,)), cached."""
        if text in self._text_cache:
            self._text_cache.move_to_end(text)
            return self._text_cache[text]
        ids, attention = self.model.language.tokenize([text])
        tokens, sentence = self.model.language.encode_tokens(ids)
        value = (tokens[0][attention[0, : tokens.shape[1]].bool()], sentence[0])
        self._text_cache[text] = value
        if len(self._text_cache) > self._text_cache_size:
            self._text_cache.popitem(last=False)
        return value

    # ---------------------------------------------------------------- image
    @torch.no_grad()
    def set_image(self, image_rgb: np.ndarray) -> None:
        """image_rgb: uint8 (H, W, 3) RGB. Resized (short side 512), normalised, padded, encoded."""
        if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
            raise ValueError(f"expected uint8 (H, W, 3) RGB, got {image_rgb.dtype} {image_rgb.shape}")
        self._features = self._encode(image_rgb)
        self._frame = None

    def lock_canvas(self) -> Tuple[int, int]:
        """Keeps the current image's padded size as the canvas of every following image (see canvas)."""
        self.canvas = tuple(self.features.padded_hw)
        return self.canvas

    def _encode(self, image_rgb: np.ndarray) -> EncodedImage:
        resized = self.fit_to_canvas(image_rgb)
        tensor = self.input_tensor(resized)
        mask_features, multi_scale = self.image_encoder(tensor)
        h, w = resized.shape[:2]
        return EncodedImage(mask_features, list(multi_scale), (h, w), tuple(tensor.shape[-2:]), image_rgb.shape[:2],
                            (h / image_rgb.shape[0], w / image_rgb.shape[1]))

    def fit_to_canvas(self, image_rgb: np.ndarray) -> np.ndarray:
        """The image resized to the model's input (short side `short_side`, shrunk to fit the canvas)."""
        resized = resize_short_side(image_rgb, self.short_side)
        if self.canvas is not None:
            fit = min(self.canvas[0] / resized.shape[0], self.canvas[1] / resized.shape[1])
            if fit < 1:  # letterbox: the whole image inside the canvas
                size = (max(round(resized.shape[1] * fit), 1), max(round(resized.shape[0] * fit), 1))
                resized = np.asarray(Image.fromarray(resized).resize(size, Image.BICUBIC))
        return resized

    def input_tensor(self, resized: np.ndarray, canvas: Optional[Tuple[int, int]] = None) -> Tensor:
        """The image encoder's input: a resized uint8 image normalised and zero-padded to the canvas."""
        tensor = self.model.normalize_and_pad(torch.from_numpy(resized.copy()).permute(2, 0, 1))
        canvas = canvas or self.canvas
        if canvas is not None:
            tensor = F.pad(tensor, (0, canvas[1] - tensor.shape[-1], 0, canvas[0] - tensor.shape[-2]))
        return tensor

    @property
    def features(self) -> EncodedImage:
        if self._features is None:
            raise RuntimeError("call set_image() first")
        return self._features

    @property
    def frame(self) -> FrameFeatures:
        """The current image prepared for the frame engine (once per image)."""
        if self._frame is None:
            f = self.features
            self._frame = self.engine.prepare(f.mask_features, f.multi_scale)
        return self._frame

    # ---------------------------------------------------------------- everything
    def _object_query_outputs(self) -> Tuple[Tensor, Tensor]:
        """Class logits (Q, K+1) and mask logits (Q, H, W) of the object queries at the input size."""
        f = self.features
        decoded = self._decode([], self.class_embeddings)
        return decoded.class_logits, upsample_and_crop(decoded.object_masks, f.padded_hw, f.input_hw)

    @torch.no_grad()
    def segment_everything(self) -> Tuple[PanopticResult, InstanceResult]:
        """Panoptic and instance segmentation over the vocabulary, at the model input size."""
        logits, masks = self._object_query_outputs()
        cfg = self.model.cfg
        panoptic = panoptic_inference(logits, masks, self.num_thing_classes, cfg.object_mask_threshold,
                                      cfg.overlap_threshold)
        return panoptic, instance_inference(logits, masks, self.num_thing_classes)

    @torch.no_grad()
    def semantic(self) -> Tensor:
        """(K, H, W) class scores at the input size."""
        logits, masks = self._object_query_outputs()
        hw = self.features.input_hw
        return semantic_postprocess(semantic_inference(logits, masks), hw, hw)

    # ---------------------------------------------------------------- visual prompts
    def prompt_masks(self, prompts: Sequence[VisualPrompt]) -> Tuple[List[Tensor], List[Tensor]]:
        """Visual prompts -> per prompt (1, Hp, Wp) bool pos/neg masks on the padded input."""
        f = self.features
        pos, neg = [], []
        for prompt in prompts:
            scale = f.scale
            if prompt.image_hw is not None:
                scale = (f.input_hw[0] / prompt.image_hw[0], f.input_hw[1] / prompt.image_hw[1])
            p, n = rasterize(prompt, f.input_hw, scale)
            pos.append(pad_to_multiple(torch.from_numpy(p).bool()[None], self.model.cfg.size_divisibility))
            neg.append(pad_to_multiple(torch.from_numpy(n).bool()[None], self.model.cfg.size_divisibility))
        return pos, neg

    def _features_per_prompt(self, n: int) -> Tuple[Tensor, List[Tensor]]:
        """The image features repeated once per prompt: each prompt gets its own batch row."""
        f = self.features
        return f.mask_features.repeat(n, 1, 1, 1), [m.repeat(n, 1, 1, 1) for m in f.multi_scale]

    def _results(self, logits: Tensor, match: Optional[Tensor] = None,
                 labels: Sequence[str] = ()) -> List[MaskResult]:
        """Masks at the set_image size; score (0..1) = mean mask probability inside the mask, times
        the text match (cosine, clamped at 0) for text prompts. Computed on the logits' device for all
        masks at once, then brought to the host together."""
        if len(logits) == 0:
            return []
        inside = logits > 0
        scores = (logits.sigmoid() * inside).flatten(1).sum(1) / inside.flatten(1).sum(1).clamp(min=1)
        if match is not None:
            scores = scores * match.to(scores.dtype)
        f = self.features
        upsampled = upsample_and_crop(logits, f.padded_hw, f.input_hw)
        on_input = upsampled > 0  # kept on the device: the next frame's prompt (_canvas_masks)
        on_original = resize(upsampled, f.original_hw) > 0 if f.original_hw != f.input_hw else on_input
        masks_np, scores_list = masks_to_host(on_original, scores)
        return [MaskResult(mask, score, low, labels[i] if labels else "", tuple(f.input_hw), input_mask)
                for i, (mask, score, low, input_mask) in enumerate(zip(masks_np, scores_list, logits, on_input))]

    # ---------------------------------------------------------------- frame engine
    def text_query(self, text: str) -> ObjectQuery:
        tokens, sentence = self.text_tokens(text)
        return ObjectQuery(text_tokens=tokens, sentence=sentence)

    def visual_query(self, prompt: VisualPrompt, memory: Optional[MaskResult] = None, text: str = "") -> ObjectQuery:
        """Clicks, box, scribbles or mask; memory: this object's previous result (its logits are
        attended by the memory queries); text: text + visual, the text choosing among the prompt's
        candidate masks (frame_engine.py; the positive mask dilated by one pixel, as the official
        composition does)."""
        if not prompt.has_positive():
            raise ValueError("a visual prompt needs a positive point, a box, a scribble or a mask")
        (pos,), (neg,) = self.prompt_masks([prompt])
        return self._spatial_queries([pos], [neg], [memory], [text])[0]

    def follow_query(self, previous: MaskResult, text: str = "") -> ObjectQuery:
        """Mask propagation: the object's previous mask prompts this frame."""
        return self.follow_queries([previous], [text])[0]

    def follow_queries(self, previous: Sequence[MaskResult], texts: Sequence[str],
                       memories: Optional[Sequence[Optional[MaskResult]]] = None) -> List[ObjectQuery]:
        """follow_query for several objects, prompted all together.
        memories: per object, a result its memory queries attend (e.g. the previous one)."""
        memories = list(memories) if memories is not None else [None] * len(previous)
        pos = self._canvas_masks(previous)
        return self._spatial_queries(pos, no_negatives(pos), memories, texts)

    @torch.no_grad()  # kept by the tracker: no autograd graph may hold the frame's features
    def appearance(self, results: Sequence[MaskResult]) -> List[SpatialPrompt]:
        """Each result's mask on the current image as reference tokens (SEEM's referring-region
        path): what the object looks like, to find it in a later frame wherever it is then
        (reference_query)."""
        pos = self._canvas_masks(results)
        return self._prompts_on_image(pos, no_negatives(pos))

    def _canvas_masks(self, results: Sequence[MaskResult]) -> List[Tensor]:
        """Each result's mask as a (1, Hp, Wp) bool prompt on the current padded input: its mask at the
        input size, on the device, padded, when the frames share one input geometry (else from its
        host mask)."""
        f = self.features
        (height, width), (pad_h, pad_w) = f.input_hw, f.padded_hw
        same = [i for i, r in enumerate(results) if r.input_mask is not None and tuple(r.input_mask.shape) == (
            height, width) and tuple(r.low_res_logits.shape[-2:]) == f.mask_hw]
        masks: List[Optional[Tensor]] = [None] * len(results)
        if same:
            on = F.pad(torch.stack([results[i].input_mask for i in same])[:, None], (0, pad_w - width, 0, pad_h - height))
            for i, mask in zip(same, on):
                masks[i] = mask
        for i, result in enumerate(results):
            if masks[i] is None:
                (masks[i],), _ = self.prompt_masks([VisualPrompt(mask=result.mask)])
        return masks

    def _spatial_queries(self, pos: Sequence[Tensor], neg: Sequence[Tensor], memories: Sequence[Optional[MaskResult]],
                         texts: Sequence[str]) -> List[ObjectQuery]:
        """Objects with visual prompts ((1, Hp, Wp) masks), encoded together."""
        device = self.model.device
        pos = [p.to(device) for p in pos]
        pos = [F.conv2d(p[None].float(), self.model.dilation_kernel, padding=1)[0] > 0 if text else p
               for p, text in zip(pos, texts)]
        spatial = self._prompts_on_image(pos, [n.to(device) for n in neg])
        queries = []
        for prompt, memory, text in zip(spatial, memories, texts):
            query = ObjectQuery(spatial=prompt, memory=memory.low_res_logits if memory is not None else None)
            if text:
                query.text_tokens, query.sentence = self.text_tokens(text)
            queries.append(query)
        return queries

    def reference_query(self, reference: SpatialPrompt) -> ObjectQuery:
        return ObjectQuery(spatial=reference)

    @torch.inference_mode()
    def decode_and_detect(self, queries: Sequence[ObjectQuery], categories: Sequence[str], threshold: float,
                          labels: Sequence[str] = ()) -> Tuple[List[MaskResult], List[Tuple[int, MaskResult]]]:
        """decode(), plus every instance of the categories, found in the same decoder pass by the
        object queries with the categories as vocabulary: -> (a result per query, [(category
        index, result)]), instances whose class probability reaches threshold, best first;
        an instance found by two object queries (mask IoU above 0.8) is kept once."""
        vocabulary = list(categories) + ["background"]
        missing = [noun for noun in dict.fromkeys(vocabulary) if noun not in self._category_embeddings]
        if missing:  # only a new noun's templates are encoded, not the whole vocabulary again
            self._category_embeddings.update(zip(missing, self.model.language.class_embeddings(missing)))
        for noun in vocabulary:
            self._category_embeddings.move_to_end(noun)
        while len(self._category_embeddings) > max(CATEGORY_CACHE_SIZE, len(vocabulary)):
            self._category_embeddings.popitem(last=False)
        embeddings = torch.stack([self._category_embeddings[noun] for noun in vocabulary])
        decoded = self._decode(queries, embeddings)
        results = self._results(decoded.logits, decoded.match.clamp(min=0), labels)
        best = decoded.class_logits.softmax(-1)[:, :-1].max(-1)
        order = best.values.argsort(descending=True)
        order = order[best.values[order] >= threshold]
        found = self._results(decoded.object_masks[order], best.values[order]) if len(order) else []
        detections: List[Tuple[int, MaskResult]] = []
        for category, result in zip(best.indices[order].tolist(), found):
            if result.mask.any() and all(_iou(result.mask, kept.mask) <= 0.8 for _, kept in detections):
                detections.append((category, result))
        return results, detections

    @torch.inference_mode()
    def decode(self, queries: Sequence[ObjectQuery], labels: Sequence[str] = ()) -> List[MaskResult]:
        """Every object of the current image in one frame-engine pass; one result per query."""
        decoded = self._decode(queries)
        return self._results(decoded.logits, decoded.match.clamp(min=0), labels)

    def _prompts_on_image(self, pos: Sequence[Tensor], neg: Sequence[Tensor]) -> List[SpatialPrompt]:
        """Visual prompts ((1, Hp, Wp) masks) on the current image, one per object (with _decode: Triton's hooks)."""
        return self.engine.spatial_prompts(self.frame, pos, neg)

    def _decode(self, queries: Sequence[ObjectQuery], class_embeddings: Optional[Tensor] = None) -> Decoded:
        return self.engine.decode(self.frame, queries, class_embeddings=class_embeddings)

    # ---------------------------------------------------------------- referring image
    @torch.no_grad()
    def encode_reference(self, image_rgb: np.ndarray, mask: np.ndarray) -> SpatialPrompt:
        """Spatial tokens of an example region (mask on image_rgb), to find that object in other images."""
        features = self._encode(image_rgb)
        saved, self._features = self._features, features
        try:
            pos, neg = self.prompt_masks([VisualPrompt(mask=mask)])
            return self.encode_reference_masks(pos, neg)
        finally:
            self._features = saved

    def encode_reference_masks(self, pos: Sequence[Tensor], neg: Sequence[Tensor]) -> SpatialPrompt:
        mask_features, multi_scale = self._features_per_prompt(len(pos))
        device = mask_features.device
        return self.model.decoder.encode_spatial_prompt(multi_scale, mask_features, [m.to(device) for m in pos],
                                                        [m.to(device) for m in neg], self.rng)

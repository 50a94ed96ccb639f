"""The two graphs a deployment runtime (ONNX Runtime, TensorRT) runs, with fixed shapes:

- the image encoder: normalised padded image (1, 3, H, W) -> mask features and 3 levels;
- the slot decoder: the encoder's outputs plus a fixed number of text and visual object slots
  (FrameEngine.decode_slots) -> each slot's mask logits. Unused slots are marked invalid and
  cost the same as used ones: one shape, one graph, one engine for any mix of objects.

The slot decoder takes each visual object's spatial tokens (sampled from the frame, or an
example region's) rather than its prompt masks: sampling is a few gathers, done by torch on the
device, and the same graph then serves clicks, previous masks and example regions.

For Triton's own backends (triton_repository) the two graphs take what a robot sends instead
(triton_protocol): the frame encoder uint8 canvas images in a batch of any size, the point decoder
each visual object's drawn points, sampled inside the graph at one fixed shape.
"""
from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
from torch import Tensor, nn

from seem_ros.inference.frame_engine import FrameEngine

from seem_ros.inference.frame_slots import TextSlots, VisualSlots
from seem_ros.model.seem import SEEM
from seem_ros.model.visual_sampler import DeterministicSampling, encode_point_rows

OPSET = 17
ENCODER_INPUTS = ["image"]
ENCODER_OUTPUTS = ["mask_features", "level0", "level1", "level2"]
DECODER_INPUTS = ENCODER_OUTPUTS + [
    "text_tokens", "text_valid", "sentence",
    "query_index", "pos_query", "tokens0", "tokens1", "tokens2", "valid0", "valid1", "valid2",
    "memory", "has_memory", "select_text"]
DECODER_OUTPUTS = ["text_logits", "text_match", "visual_logits", "visual_match"]


@dataclass(frozen=True)
class DecoderSlots:
    """The fixed slot layout of an exported decoder."""
    text: int = 4  # text objects per pass
    visual: int = 16  # visual objects per pass
    text_length: int = 77  # tokens per text (CLIP's context length)
    # spatial tokens per level and visual object (512 positive + 512 negative points); with drawn
    # points (PointDecoderGraph) also the mean query's points
    token_length: int = 1024

    def describe(self) -> str:
        return f"t{self.text}x{self.text_length}_v{self.visual}x{self.token_length}"


def default_slots(model: SEEM, visual: int = 16, text: int = 4) -> DecoderSlots:
    return DecoderSlots(text=text, visual=visual, text_length=model.language.tokenizer.context_length,
                        token_length=2 * max(model.decoder.cfg.max_spatial_len))


class ImageEncoderGraph(nn.Module):
    """backbone + pixel decoder: normalised padded image -> (mask_features, level0, level1, level2)."""

    def __init__(self, model: SEEM):
        super().__init__()
        self.model = model

    def forward(self, image: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        mask_features, multi_scale = self.model.encode_image(image)
        return (mask_features, *multi_scale)


class SlotDecoderGraph(nn.Module):
    """FrameEngine.decode_slots over DecoderSlots, inputs and outputs named as DECODER_INPUTS/OUTPUTS."""

    def __init__(self, model: SEEM):
        super().__init__()
        self.model = model
        self.engine = FrameEngine(model, DeterministicSampling())

    def forward(self, mask_features, level0, level1, level2, text_tokens, text_valid, sentence, query_index,
                pos_query, tokens0, tokens1, tokens2, valid0, valid1, valid2, memory, has_memory, select_text):
        frame = self.engine.prepare(mask_features, [level0, level1, level2])
        out = self.engine.decode_slots(
            frame, TextSlots(text_tokens, text_valid, sentence),
            VisualSlots(query_index, pos_query, [tokens0, tokens1, tokens2], [valid0, valid1, valid2], memory,
                        has_memory, select_text))
        return out.text_logits, out.text_match, out.visual_logits, out.visual_match


class FrameEncoderGraph(nn.Module):
    """The image encoder from robots' frames (triton_protocol.FrameRequest.image, input_hw): uint8
    canvas images (B, Hc, Wc, 3) with the resized frame at the top left, and each one's frame size
    (B, 2) -> ImageEncoderGraph's outputs, batch B. Normalised and zeroed around the frame in the
    graph, as SeemPredictor.input_tensor does on the host."""

    def __init__(self, model: SEEM):
        super().__init__()
        self.model = model

    def forward(self, image: Tensor, input_hw: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        model = self.model
        x = (image.permute(0, 3, 1, 2).float() - model.pixel_mean) / model.pixel_std
        rows = torch.arange(x.shape[2], device=x.device)[None] < input_hw[:, :1]  # (B, Hc)
        cols = torch.arange(x.shape[3], device=x.device)[None] < input_hw[:, 1:]  # (B, Wc)
        inside = rows[:, None, :, None] & cols[:, None, None, :]
        mask_features, multi_scale = model.encode_image(x * inside.to(x.dtype))
        return (mask_features, *multi_scale)


class PointDecoderGraph(nn.Module):
    """SlotDecoderGraph for one frame whose visual objects come as drawn points (FrameRequest.points:
    (V, levels + 1, P, 3)) sampled in the graph (encode_point_rows), each row's spatial queries
    chosen as DeterministicSampling chooses them. Every input and output has a leading batch of 1
    (one frame per run): an ensemble's batched encoder outputs feed it as they are."""

    def __init__(self, model: SEEM):
        super().__init__()
        self.model = model
        self.engine = FrameEngine(model, DeterministicSampling())
        cfg = model.decoder.cfg
        self.register_buffer("query_index", self.engine.rng.spatial_query_indices(
            model.decoder.num_queries, cfg.queries_per_prompt, "cpu"), persistent=False)

    def forward(self, mask_features, level0, level1, level2, text_tokens, text_valid, sentence, points, memory,
                has_memory, select_text):
        frame = self.engine.prepare(mask_features, [level0, level1, level2])
        points = points[0]
        pos_query, tokens, valid = encode_point_rows(points, frame.mask_features, frame.spatial_maps,
                                                     self.engine.decoder.pn_indicator.weight)
        index = self.query_index[None].expand(points.shape[0], -1)
        out = self.engine.decode_slots(
            frame, TextSlots(text_tokens[0], text_valid[0], sentence[0]),
            VisualSlots(index, pos_query, tokens, valid, memory[0], has_memory[0], select_text[0]))
        return out.text_logits[None], out.text_match[None], out.visual_logits[None], out.visual_match[None]


def encoder_example(model: SEEM, canvas: Tuple[int, int]) -> Tuple[Tensor]:
    return (torch.zeros((1, 3, *canvas), device=model.device),)


def decoder_example(model: SEEM, canvas: Tuple[int, int], slots: DecoderSlots) -> Tuple[Tensor, ...]:
    """Inputs of the right shapes and kinds (the encoder run on a blank canvas, empty slots)."""
    with torch.no_grad():
        mask_features, levels = model.encode_image(torch.zeros((1, 3, *canvas), device=model.device))
    return (mask_features, *levels, *slot_inputs(
        empty_text_slots(model, slots, model.device),
        empty_visual_slots(model, slots, tuple(mask_features.shape[-2:]), model.device)))


def empty_text_slots(model: SEEM, slots: DecoderSlots, device) -> TextSlots:
    """Unused text rows: one (zero) token each, so that no row is all padding."""
    cfg = model.decoder.cfg
    valid = torch.zeros((slots.text, slots.text_length), dtype=torch.bool, device=device)
    valid[:, 0] = True
    return TextSlots(torch.zeros((slots.text, slots.text_length, cfg.hidden_dim), device=device), valid,
                     torch.zeros((slots.text, cfg.dim_proj), device=device))


def empty_visual_slots(model: SEEM, slots: DecoderSlots, mask_size: Tuple[int, int], device) -> VisualSlots:
    cfg = model.decoder.cfg
    zeros = lambda *shape, dtype=torch.float32: torch.zeros(shape, dtype=dtype, device=device)  # noqa: E731
    return VisualSlots(zeros(slots.visual, cfg.queries_per_prompt, dtype=torch.long), zeros(slots.visual, cfg.mask_dim),
                       [zeros(slots.visual, slots.token_length, cfg.hidden_dim) for _ in range(3)],
                       [zeros(slots.visual, slots.token_length, dtype=torch.bool) for _ in range(3)],
                       zeros(slots.visual, *mask_size), zeros(slots.visual, dtype=torch.bool),
                       zeros(slots.visual, cfg.dim_proj))  # zero rows: chosen by the prompt, no text


def slot_inputs(text: TextSlots, visual: VisualSlots) -> List[Tensor]:
    """The slot tensors in DECODER_INPUTS order (after the encoder's outputs)."""
    return [text.tokens, text.valid, text.sentence, visual.query_index, visual.pos_query, *visual.level_tokens,
            *visual.level_valid, visual.memory, visual.has_memory, visual.select_text]


def export_image_encoder(model: SEEM, canvas: Tuple[int, int], path: str) -> None:
    with torch.no_grad():
        torch.onnx.export(ImageEncoderGraph(model).eval(), encoder_example(model, canvas), path, opset_version=OPSET,
                          input_names=ENCODER_INPUTS, output_names=ENCODER_OUTPUTS, dynamo=False)


def export_slot_decoder(model: SEEM, canvas: Tuple[int, int], slots: DecoderSlots, path: str) -> None:
    with torch.no_grad():
        torch.onnx.export(SlotDecoderGraph(model).eval(), decoder_example(model, canvas, slots), path,
                          opset_version=OPSET, input_names=DECODER_INPUTS, output_names=DECODER_OUTPUTS, dynamo=False)


def pad_slots(text: Optional[TextSlots], visual: Optional[VisualSlots], slots: DecoderSlots, model: SEEM,
              mask_size: Tuple[int, int], device) -> List[Tuple[TextSlots, VisualSlots, int, int]]:
    """Objects packed by the frame engine -> fixed-slot passes: [(text, visual, texts used, visuals used)].
    More objects of a kind than slots take further passes."""
    nt = 0 if text is None else text.tokens.shape[0]
    nv = 0 if visual is None else visual.query_index.shape[0]
    passes = max(-(-nt // slots.text), -(-nv // slots.visual), 1)
    out = []
    for p in range(passes):
        t_rows = range(p * slots.text, min(nt, (p + 1) * slots.text))
        v_rows = range(p * slots.visual, min(nv, (p + 1) * slots.visual))
        fixed_text = empty_text_slots(model, slots, device)
        if len(t_rows):
            rows, n, length = slice(t_rows.start, t_rows.stop), len(t_rows), text.tokens.shape[1]
            fixed_text.tokens[:n, :length] = text.tokens[rows]
            fixed_text.valid[:n] = False
            fixed_text.valid[:n, :length] = text.valid[rows]
            fixed_text.sentence[:n] = text.sentence[rows]
        fixed_visual = empty_visual_slots(model, slots, mask_size, device)
        if len(v_rows):
            rows, n = slice(v_rows.start, v_rows.stop), len(v_rows)
            fixed_visual.query_index[:n] = visual.query_index[rows]
            fixed_visual.pos_query[:n] = visual.pos_query[rows]
            for level in range(3):
                length = visual.level_tokens[level].shape[1]
                fixed_visual.level_tokens[level][:n, :length] = visual.level_tokens[level][rows]
                fixed_visual.level_valid[level][:n, :length] = visual.level_valid[level][rows]
            if visual.memory is not None:
                fixed_visual.memory[:n] = visual.memory[rows]
                fixed_visual.has_memory[:n] = visual.has_memory[rows]
            if visual.select_text is not None:
                fixed_visual.select_text[:n] = visual.select_text[rows]
        out.append((fixed_text, fixed_visual, len(t_rows), len(v_rows)))
    return out

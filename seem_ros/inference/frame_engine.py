"""The frame engine: SEEM's decoder laid out for a camera stream.

SEEMDecoder.forward reproduces the official call layouts (one decoder call per request, the image
features repeated per prompt, every layer's masks predicted at stride 4 for all 101 object
queries); the parity tests hold it to the official outputs. The frame engine computes the same
outputs for every object of a frame in one call:
- the frame is prepared once (FrameFeatures): decoder inputs and their positional encodings, the
  maps spatial tokens are sampled from, and the mask features at each attention level's size;
- each object is one row of fixed slots (decode_slots): a text object's row holds the 101
  grounding queries and its text tokens, a visual object's row its spatial queries, memory
  queries and, per level, its prompt's spatial tokens; validity masks say which slots are real,
  so that rows never see one another and a fixed number of rows serves any mix of objects (one
  graph, one engine, one CUDA graph). The image keys and values are projected once for all rows;
- a text + visual object is a visual row whose mask the text chooses: in the v1 attention layout
  the grounding queries never attend the spatial prompt (the official evaluate_grounding_sptial
  gives the text-only mask whatever the prompt: checked against its fixture), so the composition
  is the prompt's candidate masks (its spatial queries) chosen by the text, as text rows choose
  among the grounding queries: the clicks say where, the text which of the masks there;
- object queries run only when segment-everything is asked: no attention path leads from them to
  the grounding or spatial queries;
- the intermediate attention masks are predicted at their level's size directly: bilinear resizing
  is linear, so resizing the mask features and then projecting equals projecting and then resizing;
  on a canvas padded to a multiple of 32 the resize is by 2, 4 and 8, where bilinear sampling
  (align_corners=False) reads two pixels per axis at a fixed offset: strided slices instead;
- the image's keys and values: projected once per layer for all rows, or, where the queries are
  few (one clicked object: 3), folded into the queries instead (as for the spatial tokens below);
- the position encodings depend on the level's size only: computed once per canvas;
- only the spatial queries attend the spatial tokens (up to 512 per level and prompt): the key
  and value projections are folded into those few queries instead of applied to every token, and
  the tokens' own self-attention outputs, never used (each layer takes them anew from the prompt),
  are not computed;
- final masks are computed for each object's selected query only.
"""
from collections import OrderedDict
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor
from torch.nn import functional as F

from seem_ros.inference.frame_attention import image_attention, self_attention
from seem_ros.inference.frame_slots import (ObjectQuery, SlotOutputs, TextSlots, VisualSlots, text_slots,
                                            visual_slots)
from seem_ros.model.language_encoder import normalize
from seem_ros.model.visual_sampler import DecoderRandomness, SpatialPrompt, encode_spatial_prompt, project_levels


@dataclass
class FrameFeatures:
    """One encoded frame, prepared for any number of decodes."""
    mask_features: Tensor  # (1, D, h4, w4) on the padded input
    src: List[Tensor]  # per level (HW, 1, C): projected decoder inputs + level embedding
    keyed: List[Tensor]  # per level (HW, 1, C): src + positional encodings, what the keys are computed from
    sizes: List[Tuple[int, int]]
    level_mask_features: List[Tensor]  # per level (D, HW): mask features resized to the level
    spatial_maps: List[Tensor]  # per level (1, C, h, w): what spatial tokens are sampled from
    multi_scale: List[Tensor]  # per level (1, C, h, w): the encoder's outputs (what an exported decoder takes)


@dataclass
class Decoded:
    logits: Tensor  # (N, h4, w4) each object's selected mask logits on the padded input
    match: Tensor  # (N,) cosine of the selected query to the text (1 for objects without one)
    class_logits: Optional[Tensor] = None  # segment-everything: (Q, K+1) class logits of the object queries
    object_masks: Optional[Tensor] = None  # segment-everything: (Q, h4, w4) mask logits of the object queries


class FrameEngine:
    def __init__(self, model, rng: DecoderRandomness, max_canvases: int = 4):
        self.decoder = model.decoder
        self.rng = rng
        # decode_slots' runner: this engine's torch code, or an exported decoder (runtime backends)
        self.run_slots = self.decode_slots
        self.max_canvases = max_canvases
        self.positions: "OrderedDict[tuple, List[Tensor]]" = OrderedDict()  # per canvas: each level's encodings

    # ---------------------------------------------------------------- per frame
    def prepare(self, mask_features: Tensor, multi_scale: Sequence[Tensor]) -> FrameFeatures:
        dec = self.decoder
        src, pos, sizes = dec.prepare_features(multi_scale, self.level_positions(multi_scale))
        level = [bilinear_downsample(mask_features, size)[0].flatten(1) for size in sizes]
        return FrameFeatures(mask_features, src, [s + p for s, p in zip(src, pos)], sizes, level,
                             project_levels(src, sizes, dec.mask_sptial_embed), list(multi_scale))

    def level_positions(self, multi_scale: Sequence[Tensor]) -> List[Tensor]:
        """Each level's position encodings (HW, B, C), computed once per canvas (a camera has one)."""
        key = tuple((tuple(x.shape), x.dtype, x.device) for x in multi_scale)
        if key not in self.positions:
            self.positions[key] = [self.decoder.pe_layer(x).flatten(2).permute(2, 0, 1) for x in multi_scale]
            while len(self.positions) > self.max_canvases:
                self.positions.popitem(last=False)
        self.positions.move_to_end(key)
        return self.positions[key]

    @torch.no_grad()
    def spatial_prompts(self, frame: FrameFeatures, pos_masks: Sequence[Tensor],
                        neg_masks: Sequence[Tensor]) -> List[SpatialPrompt]:
        """One visual prompt per object: bool (1, Hp, Wp) positive / negative masks on the padded
        input. Each object's points are its own; all are sampled from the frame at once."""
        if not pos_masks:
            return []
        device = frame.mask_features.device
        encoded = encode_spatial_prompt([m.to(device) for m in pos_masks], [m.to(device) for m in neg_masks],
                                        frame.mask_features, frame.spatial_maps, self.decoder.pn_indicator.weight,
                                        self.decoder.cfg.max_spatial_len, self.rng)
        return [encoded.image(i) for i in range(len(pos_masks))]

    # ---------------------------------------------------------------- decode
    def decode(self, frame: FrameFeatures, objects: Sequence[ObjectQuery],
               class_embeddings: Optional[Tensor] = None) -> Decoded:
        """All objects in one decoder pass; with class_embeddings also the object queries
        (segment-everything), in a row of their own. The random draws are made in object order,
        as the official calls make them."""
        dec = self.decoder
        device = frame.mask_features.device
        h4, w4 = frame.mask_features.shape[-2:]
        indices = {i: self.rng.spatial_query_indices(dec.num_queries, dec.cfg.queries_per_prompt, device)
                   for i, obj in enumerate(objects) if obj.spatial is not None}
        # the official decoder draws, at every layer, which previous mask each memory query attends;
        # with one previous mask per object every draw picks it: the draws are made (and replayed
        # in tests) but change nothing
        for _ in range(dec.num_layers * sum(obj.spatial is not None and obj.memory is not None for obj in objects)):
            self.rng.memory_indices(1, dec.cfg.num_spatial_memories)
        text_rows = [i for i, obj in enumerate(objects) if obj.grounded]
        visual_rows = [i for i, obj in enumerate(objects) if obj.spatial is not None]
        text = text_slots([objects[i] for i in text_rows]) if text_rows else None
        visual = visual_slots([objects[i] for i in visual_rows], [indices[i] for i in visual_rows],
                              (h4, w4)) if visual_rows else None
        if text is None and visual is None and class_embeddings is None:
            empty = frame.mask_features.new_zeros((0, h4, w4))
            return Decoded(logits=empty, match=empty.new_zeros((0,)))
        run = self.run_slots if class_embeddings is None else self.decode_slots
        out = run(frame, text, visual, class_embeddings)
        logits = frame.mask_features.new_zeros((len(objects), h4, w4))
        match = frame.mask_features.new_ones((len(objects),))
        if text_rows:
            logits[text_rows] = out.text_logits[:len(text_rows)].to(logits.dtype)
            match[text_rows] = out.text_match[:len(text_rows)].to(match.dtype)
        if visual_rows:
            logits[visual_rows] = out.visual_logits[:len(visual_rows)].to(logits.dtype)
            match[visual_rows] = out.visual_match[:len(visual_rows)].to(match.dtype)
        return Decoded(logits=logits, match=match, class_logits=out.class_logits, object_masks=out.object_masks)

    def decode_slots(self, frame: FrameFeatures, text: Optional[TextSlots], visual: Optional[VisualSlots],
                     class_embeddings: Optional[Tensor] = None) -> SlotOutputs:
        """The decoder over fixed slots: every tensor shape follows from the slot counts alone."""
        dec = self.decoder
        groups: List[_Group] = []
        if class_embeddings is not None:
            groups.append(_ObjectRow(dec))
        if text is not None:
            groups.append(_TextRows(dec, text))
        if visual is not None:
            groups.append(_VisualRows(dec, frame, visual))
        sizes = [g.queries.shape[0] * g.queries.shape[1] for g in groups]
        query_pos = torch.cat([g.query_pos.flatten(0, 1) for g in groups])
        queries = [g.queries for g in groups]
        for i in range(dec.num_layers):
            level = i % dec.num_feature_levels
            # the masks that decide what each query attends in this layer (after the last layer
            # only the chosen queries' full-size masks are needed: select)
            logits = _level_logits(dec, frame, groups, queries, level)
            blocked = torch.cat([g.cross_mask(lg, level).flatten(0, 1) for g, lg in zip(groups, logits)])
            blocked = blocked & ~blocked.all(-1, keepdim=True)  # a query blocked everywhere sees all
            flat = torch.cat([q.flatten(0, 1) for q in queries])
            cross = dec.transformer_cross_attention_layers[i]
            flat = cross.norm(flat + image_attention(cross.multihead_attn, flat, query_pos, frame.src[level],
                                                      frame.keyed[level], blocked))
            queries = [g.self_attend(dec.transformer_self_attention_layers[i], dec.transformer_ffn_layers[i],
                                     q.view_as(g.queries), level)
                       for g, q in zip(groups, flat.split(sizes))]
        mask_features = frame.mask_features[0].flatten(1)  # (D, h4*w4)
        size = tuple(frame.mask_features.shape[-2:])
        empty = mask_features.new_zeros((0, *size))
        out = SlotOutputs(text_logits=empty, text_match=empty.new_zeros((0,)), visual_logits=empty,
                          visual_match=empty.new_zeros((0,)))
        for group, states in zip(groups, queries):
            group.select(dec, dec.decoder_norm(states), mask_features, size, class_embeddings, out)
        return out


def _level_logits(dec, frame: FrameFeatures, groups: Sequence["_Group"], queries: Sequence[Tensor],
                  level: int) -> List[Tensor]:
    """Each group's (B, Q', HW) mask logits at the level's size for the queries whose predicted
    masks are used (one product for all)."""
    predicted = [g.predicted(q) for g, q in zip(groups, queries)]
    flat = torch.cat([q.flatten(0, 1) for q in predicted])
    logits = dec.mask_embed(dec.decoder_norm(flat)) @ frame.level_mask_features[level]
    return [lg.view(*q.shape[:2], -1) for lg, q in zip(logits.split([q.shape[0] * q.shape[1] for q in predicted]),
                                                       predicted)]


def bilinear_downsample(x: Tensor, size: Tuple[int, int]) -> Tensor:
    """F.interpolate(x, size, mode="bilinear", align_corners=False), by strided slices where size
    divides x's by one integer factor f (the attention levels of a canvas padded to a multiple of
    32: f = 2, 4, 8). Output pixel i samples input coordinate f*i + (f - 1)/2: for even f the mean
    of pixels f*i + f/2 - 1 and f*i + f/2 (per axis: a 2x2 block), for odd f pixel f*i + (f - 1)/2."""
    h, w = x.shape[-2:]
    f = h // size[0]
    if f < 1 or size[0] * f != h or size[1] * f != w:
        return F.interpolate(x, size, mode="bilinear", align_corners=False)
    o = (f - 1) // 2
    if f % 2:
        return x[..., o::f, o::f]
    return (x[..., o::f, o::f] + x[..., o::f, o + 1::f] + x[..., o + 1::f, o::f] + x[..., o + 1::f, o + 1::f]) * 0.25


class _Group:
    """Rows of one kind: their query slots (B, Q, C) and positions, which of the image each query
    may attend, how the rows attend themselves, and how each row's mask is selected."""
    queries: Tensor
    query_pos: Tensor

    def predicted(self, queries: Tensor) -> Tensor:
        """The queries whose masks, predicted at every layer, decide what they attend next."""
        return queries

    def cross_mask(self, logits: Tensor, level: int) -> Tensor:
        return logits.sigmoid() < 0.5

    def self_attend(self, layer, ffn, queries: Tensor, level: int) -> Tensor:
        return ffn(layer.norm(queries + self_attention(layer.self_attn, queries, self.query_pos, None)))

    def select(self, dec, decoded: Tensor, mask_features: Tensor, size: Tuple[int, int],
               class_embeddings: Optional[Tensor], out: SlotOutputs) -> None:
        """Writes the rows' outputs into `out`. decoded: (B, Q, C) normed final query states;
        mask_features: (D, h4*w4); size: (h4, w4)."""
        raise NotImplementedError


class _ObjectRow(_Group):
    """Segment-everything: the 101 object queries, attending one another only."""

    def __init__(self, dec):
        self.queries, self.query_pos = dec.query_feat.weight[None], dec.query_embed.weight[None]

    def select(self, dec, decoded, mask_features, size, class_embeddings, out):
        out.class_logits = dec.lang_encoder.similarity(decoded[0] @ dec.class_embed, class_embeddings)
        out.object_masks = (dec.mask_embed(decoded[0]) @ mask_features).view(-1, *size)


class _TextRows(_Group):
    """Grounding queries and text tokens attend one another; padding tokens only each other."""

    def __init__(self, dec, text: TextSlots):
        nt = text.tokens.shape[0]
        self.queries = dec.query_feat.weight[None].expand(nt, -1, -1)
        self.query_pos = dec.query_embed.weight[None].expand(nt, -1, -1)
        self.tokens, self.token_pos, self.sentence = text.tokens, text.tokens, text.sentence
        real = torch.cat([text.valid.new_ones((nt, self.queries.shape[1])), text.valid], 1)
        self.allowed = (real[:, :, None] == real[:, None, :])[:, None]  # (Nt, 1, L, L)

    def self_attend(self, layer, ffn, queries, level):
        nq = queries.shape[1]
        carried = torch.cat([queries, self.tokens], 1)
        pos = torch.cat([self.query_pos, self.token_pos], 1)
        carried = ffn(layer.norm(carried + self_attention(layer.self_attn, carried, pos, self.allowed)))
        self.tokens = carried[:, nq:]  # the text tokens go on to the next layer
        return carried[:, :nq]

    def select(self, dec, decoded, mask_features, size, class_embeddings, out):
        similarity = normalize(decoded @ dec.class_embed) @ normalize(self.sentence)[:, :, None]  # (Nt, Q, 1)
        best = similarity[..., 0].max(1)
        chosen = decoded.gather(1, best.indices[:, None, None].expand(-1, 1, decoded.shape[-1]))[:, 0]
        out.text_logits = (dec.mask_embed(chosen) @ mask_features).view(-1, *size)
        out.text_match = best.values


class _VisualRows(_Group):
    """Spatial queries attend one another, their row's spatial tokens and (where the row has a
    previous mask) its memory queries; memory queries attend one another and, across the image,
    where the previous mask is on."""

    def __init__(self, dec, frame: FrameFeatures, visual: VisualSlots):
        nv, spatial = visual.query_index.shape
        self.spatial = spatial
        self.queries = dec.query_feat.weight[visual.query_index]
        self.query_pos = dec.query_embed.weight[visual.query_index]
        self.pos_query = visual.pos_query
        self.select_text = visual.select_text
        self.level_tokens, self.level_valid = visual.level_tokens, visual.level_valid
        self.memory_blocked = None
        kinds = torch.zeros(spatial, dtype=torch.bool, device=self.queries.device)  # True = memory query
        if visual.memory is not None:
            memories = dec.cfg.num_spatial_memories
            self.queries = torch.cat([self.queries, dec.spatial_featured.weight[None].expand(nv, -1, -1)], 1)
            self.query_pos = torch.cat([self.query_pos, dec.spatial_embed.weight[None].expand(nv, -1, -1)], 1)
            kinds = torch.cat([kinds, torch.ones(memories, dtype=torch.bool, device=kinds.device)])
            memory = visual.memory[:, None].to(frame.mask_features.dtype)
            self.memory_blocked = [F.interpolate(memory, size, mode="bilinear", align_corners=False).flatten(1)
                                   .sigmoid() < 0.5 for size in frame.sizes]  # per level (Nv, HW)
        # spatial -> spatial, spatial -> memory (rows with a previous mask), memory -> memory
        to_memory = (visual.has_memory[:, None, None] if visual.has_memory is not None
                     else torch.zeros((nv, 1, 1), dtype=torch.bool, device=kinds.device))
        attending, attended = kinds[None, :, None], kinds[None, None, :]
        self.allowed = ((attending & attended) | (~attending & (~attended | to_memory)))[:, None]  # (Nv, 1, L, L)

    def predicted(self, queries):
        # memory queries attend where the previous mask is on, whatever they would predict: their
        # masks are never needed (32 of a row's 35 queries)
        return queries[:, :self.spatial]

    def cross_mask(self, logits, level):
        blocked = logits.sigmoid() < 0.5
        if self.memory_blocked is None:
            return blocked
        memory = self.memory_blocked[level][:, None].expand(-1, self.queries.shape[1] - self.spatial, -1)
        return torch.cat([blocked, memory], 1)

    def self_attend(self, layer, ffn, queries, level):
        return ffn(layer.norm(queries + self._attention(layer.self_attn, queries, level)))

    def _attention(self, attn, carried: Tensor, level: int) -> Tensor:
        """Self-attention output (Nv, L, C) of the spatial and memory queries.

        Only the spatial queries attend the spatial tokens (up to 1024 per level and row). Rather
        than projecting every token to a key and a value, the key projection is folded into those
        few queries and the value projection applied after the attention weights
        (q . (W_k x + b_k) = (W_k^T q) . x + q . b_k; sum_t a_t (W_v x_t + b_v) = W_v sum_t a_t x_t
        + b_v sum_t a_t): the same arithmetic, for a fraction of the work. A token's key input is
        token + position = 2 token. The tokens' own outputs are never used, so not computed."""
        nv, length, dim = carried.shape
        heads = attn.num_heads
        head_dim = dim // heads
        s = self.spatial
        w_q, w_k, w_v = attn.in_proj_weight.chunk(3)
        b_q, b_k, b_v = attn.in_proj_bias.chunk(3)
        x = carried + self.query_pos
        q = (F.linear(x, w_q, b_q) * (float(head_dim) ** -0.5)).view(nv, length, heads, head_dim).transpose(1, 2)
        k = F.linear(x, w_k, b_k).view(nv, length, heads, head_dim).transpose(1, 2)
        v = F.linear(carried, w_v, b_v).view(nv, length, heads, head_dim).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=self.allowed, scale=1.0)  # (Nv, h, L, d)
        tokens, real = self.level_tokens[level], self.level_valid[level]  # (Nv, P, C), (Nv, P)
        qs = q[:, :, :s]  # (Nv, h, S, d)
        scores = (qs @ k.transpose(-1, -2)).masked_fill(~self.allowed[:, :, :s], float("-inf"))
        folded = torch.einsum("rhsd,hdc->rhsc", qs, w_k.view(heads, head_dim, dim))
        # (Nv, h*S, C) x (Nv, C, P): batched over rows only, so that the tokens are not copied per head
        token_scores = (2 * folded.reshape(nv, heads * s, dim) @ tokens.transpose(1, 2)).view(nv, heads, s, -1)
        token_scores = token_scores + torch.einsum("rhsd,hd->rhs", qs, b_k.view(heads, head_dim))[..., None]
        token_scores = token_scores.masked_fill(~real[:, None, None], float("-inf"))
        weights = F.softmax(torch.cat([scores, token_scores], -1), dim=-1)
        carried_weights, token_weights = weights.split([length, tokens.shape[1]], -1)
        pooled = (token_weights.reshape(nv, heads * s, -1) @ tokens).view(nv, heads, s, dim)
        attended = (carried_weights @ v
                    + torch.einsum("rhsc,hdc->rhsd", pooled, w_v.view(heads, head_dim, dim))
                    + b_v.view(heads, 1, head_dim) * token_weights.sum(-1, keepdim=True))
        out = torch.cat([attended.to(out.dtype), out[:, :, s:]], 2)
        return attn.out_proj(out.transpose(1, 2).reshape(nv, length, dim))

    def select(self, dec, decoded, mask_features, size, class_embeddings, out):
        spatial = decoded[:, :self.spatial]
        embeds = dec.mask_embed(spatial)  # (Nv, S, D)
        scores = (embeds @ self.pos_query[:, :, None])[..., 0]  # (Nv, S): by the prompt's mean feature
        match = scores.new_ones(scores.shape[0])
        if self.select_text is not None:  # text + visual rows: by the text, as text rows choose
            by_text = (normalize(spatial @ dec.class_embed) @ normalize(self.select_text)[:, :, None])[..., 0]
            texted = self.select_text.abs().sum(-1) > 0
            scores = torch.where(texted[:, None], by_text, scores)
            match = torch.where(texted, by_text.max(1).values, match)
        best = scores.argmax(1)
        chosen = embeds.gather(1, best[:, None, None].expand(-1, 1, embeds.shape[-1]))[:, 0]
        out.visual_logits = (chosen @ mask_features).view(-1, *size)
        out.visual_match = match

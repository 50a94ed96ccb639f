"""The frame engine: SEEM's decoder laid out for a camera stream.

SEEMDecoder.forward reproduces the official call layouts (one decoder call per request, the image
features repeated per prompt, every layer's masks predicted at stride 4 for all 101 object
queries); the parity tests hold it to the official outputs. The frame engine computes the same
outputs for every object of a frame in one call:
- the frame is prepared once (FrameFeatures): decoder inputs and their positional encodings, the
  maps spatial tokens are sampled from, and the mask features at each attention level's size;
- each object is one batch row holding only the queries and tokens its prompt needs, so objects
  never see one another; the image keys and values are projected once and shared by all rows;
- object queries run only when segment-everything is asked: no attention path leads from them to
  the grounding or spatial queries;
- the intermediate attention masks are predicted at their level's size directly: bilinear resizing
  is linear, so resizing the mask features and then projecting equals projecting and then resizing;
- only the spatial queries attend the spatial tokens (up to 512 per level and prompt): the key
  and value projections are folded into those few queries instead of applied to every token, and
  the tokens' own self-attention outputs, never used (each layer takes them anew from the prompt),
  are not computed;
- final masks are computed for each object's selected query only.
"""
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor
from torch.nn import functional as F

from .language_encoder import cosine_similarity
from .visual_sampler import DecoderRandomness, SpatialPrompt, encode_spatial_prompt, project_levels

# slot kinds: object, grounding, spatial and memory queries; text tokens; PAD fills rows to one
# length. Spatial tokens are kept apart (see _Rows.self_attention).
QO, QG, QS, MS, TG, PAD = range(6)
TS = 6  # spatial tokens (kept apart from the rows)
_ALLOWED = torch.zeros(6, 6, dtype=torch.bool)  # [attending kind, attended kind], official v1 layout
for _a, _b in ((QO, QO), (QG, QG), (QG, TG), (QS, QS), (QS, MS), (TG, QG), (TG, TG), (MS, MS),
               (PAD, PAD)):  # PAD <-> PAD: no slot is blocked from everything (fused attention needs a key)
    _ALLOWED[_a, _b] = True


@dataclass
class FrameFeatures:
    """One encoded frame, prepared for any number of decodes."""
    mask_features: Tensor  # (1, D, h4, w4) on the padded input
    src: List[Tensor]  # per level (HW, 1, C): projected decoder inputs + level embedding
    pos: List[Tensor]  # per level (HW, 1, C): positional encodings
    sizes: List[Tuple[int, int]]
    level_mask_features: List[Tensor]  # per level (D, HW): mask features resized to the level
    spatial_maps: List[Tensor]  # per level (1, C, h, w): what spatial tokens are sampled from


@dataclass
class ObjectQuery:
    """What one object asks of a frame. Text objects select their mask by the sentence embedding,
    visual (spatial) objects by their prompt's mean feature; text + visual objects by the text."""
    text_tokens: Optional[Tensor] = None  # (T, C) token embeddings of the text
    sentence: Optional[Tensor] = None  # (C,) sentence embedding
    spatial: Optional[SpatialPrompt] = None  # one visual prompt (n = 1, bs = 1), or an example region's
    memory: Optional[Tensor] = None  # (h4, w4) previous mask logits: memory queries attend where it is on

    @property
    def grounded(self) -> bool:
        return self.text_tokens is not None


@dataclass
class Decoded:
    logits: Tensor  # (N, h4, w4) each object's selected mask logits on the padded input
    match: Tensor  # (N,) cosine of the selected query to the text (1 for visual objects)
    class_logits: Optional[Tensor] = None  # segment-everything: (Q, K+1) class logits of the object queries
    object_masks: Optional[Tensor] = None  # segment-everything: (Q, h4, w4) mask logits of the object queries


class FrameEngine:
    def __init__(self, model, rng: DecoderRandomness):
        self.decoder = model.decoder
        self.rng = rng

    # ---------------------------------------------------------------- per frame
    def prepare(self, mask_features: Tensor, multi_scale: Sequence[Tensor]) -> FrameFeatures:
        dec = self.decoder
        src, pos, sizes = dec.prepare_features(multi_scale)
        level = [F.interpolate(mask_features, size, mode="bilinear", align_corners=False)[0].flatten(1)
                 for size in sizes]
        return FrameFeatures(mask_features, src, pos, sizes, level, project_levels(src, sizes, dec.mask_sptial_embed))

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
        (segment-everything), in a row of their own."""
        dec = self.decoder
        if not objects and class_embeddings is None:
            empty = frame.mask_features.new_zeros((0, *frame.mask_features.shape[-2:]))
            return Decoded(logits=empty, match=empty.new_zeros((0,)))
        rows = _Rows(dec, self.rng, frame, objects, class_embeddings is not None)
        queries = rows.queries
        logits = rows.level_logits(dec, frame, queries, 0)
        for i in range(dec.num_layers):
            level = i % dec.num_feature_levels
            rows.draw_memory_indices(self.rng, dec.cfg.num_spatial_memories)
            cross = dec.transformer_cross_attention_layers[i]
            queries = cross.norm(queries + _image_attention(cross.multihead_attn, queries, rows.query_pos,
                                                            frame.src[level], frame.pos[level],
                                                            rows.cross_mask(logits, level)))
            carried, carried_pos = rows.carried(queries)
            layer = dec.transformer_self_attention_layers[i]
            carried = layer.norm(carried + rows.self_attention(layer.self_attn, carried, carried_pos, level))
            queries = rows.keep_self_outputs(dec.transformer_ffn_layers[i](carried))
            logits = rows.level_logits(dec, frame, queries, (i + 1) % dec.num_feature_levels)
        return rows.select(dec, frame, queries, class_embeddings)


def _image_attention(attn, queries: Tensor, query_pos: Tensor, src: Tensor, pos: Tensor, mask: Tensor) -> Tensor:
    """Cross-attention of (B, Q, C) queries to the image's (HW, 1, C) level features: keys and
    values are projected once, and the rows' queries stacked so that nothing is copied per row.
    mask: (B, 1, Q, HW), True = blocked (no query is blocked everywhere)."""
    bsz, nq, dim = queries.shape
    heads = attn.num_heads
    head_dim = dim // heads
    w_q, w_k, w_v = attn.in_proj_weight.chunk(3)
    b_q, b_k, b_v = attn.in_proj_bias.chunk(3)
    q = F.linear(queries + query_pos, w_q, b_q) * (float(head_dim) ** -0.5)
    k = F.linear((src + pos)[:, 0], w_k, b_k)
    v = F.linear(src[:, 0], w_v, b_v)
    q = q.view(1, bsz * nq, heads, head_dim).transpose(1, 2)  # (1, h, B*Q, d)
    k = k.view(1, -1, heads, head_dim).transpose(1, 2)  # (1, h, HW, d)
    v = v.view(1, -1, heads, head_dim).transpose(1, 2)
    allowed = ~mask.reshape(1, 1, bsz * nq, mask.shape[-1])
    # fused attention (no (queries x pixels) weight tensor in memory); q is already scaled
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=1.0).nan_to_num()
    return attn.out_proj(out.transpose(1, 2).reshape(bsz, nq, dim))


class _Rows:
    """The batch of one decode: per object a row of query slots (object, grounding, spatial,
    memory queries) and text-token slots, padded to common lengths, plus the row's spatial tokens
    per level (new at every layer). Which slot may attend which follows the official v1 layout."""

    def __init__(self, dec, rng: DecoderRandomness, frame: FrameFeatures, objects: Sequence[ObjectQuery],
                 everything: bool):
        cfg = dec.cfg
        device = frame.mask_features.device
        feat, embed = dec.query_feat.weight, dec.query_embed.weight
        self.objects = list(objects)
        self.everything = everything
        self.first_object = int(everything)
        query_rows, token_rows, memories = [], [], []
        if everything:
            query_rows.append([(QO, feat, embed)])
            token_rows.append([])
            memories.append(None)
        for obj in self.objects:
            groups, tokens = [], []
            if obj.grounded:
                groups.append((QG, feat, embed))
                tokens.append((TG, obj.text_tokens, obj.text_tokens))
            if obj.spatial is not None:
                index = rng.spatial_query_indices(dec.num_queries, cfg.queries_per_prompt, device)
                groups.append((QS, feat[index], embed[index]))
                if obj.memory is not None:
                    groups.append((MS, dec.spatial_featured.weight, dec.spatial_embed.weight))
            query_rows.append(groups)
            token_rows.append(tokens)
            memories.append(obj.memory)
        self.queries, self.query_pos, self.query_kind = _pad_rows(query_rows, device)
        self.text, self.text_pos, text_kind = _pad_rows(token_rows, device, dim=feat.shape[1])
        carried_kind = torch.cat([self.query_kind, text_kind], 1)
        self.self_allowed = _ALLOWED.to(device)[carried_kind[:, :, None], carried_kind[:, None, :]][:, None]
        self.memory_masks = [self._memory_mask(memories, size) for size in frame.sizes]
        spatial = [(row, obj.spatial) for row, obj in enumerate(self.objects, start=self.first_object)
                   if obj.spatial is not None]
        self.spatial_rows = torch.tensor([row for row, _ in spatial], dtype=torch.long, device=device)
        if spatial:
            self.spatial_slots = torch.stack([(self.query_kind[row] == QS).nonzero()[:, 0] for row, _ in spatial])
        # per level: (R, T, C) spatial tokens of the rows with a visual prompt, and which are real
        self.spatial_tokens = [self._spatial_tokens([prompt for _, prompt in spatial], level, device, feat.shape[1])
                               for level in range(dec.num_feature_levels)]

    @staticmethod
    def _spatial_tokens(prompts: List[SpatialPrompt], level: int, device, dim: int) -> Tuple[Tensor, Tensor]:
        rows = []
        for prompt in prompts:
            tokens = prompt.level_tokens[level][:, 0]
            valid = ~prompt.level_padding[level][0]
            rows.append([(TS, tokens[valid], tokens[valid])])
        tokens, _, kinds = _pad_rows(rows, device, dim=dim)
        return tokens, kinds == TS

    def _memory_mask(self, memories: List[Optional[Tensor]], size: Tuple[int, int]) -> Optional[Tensor]:
        """(B, 1, HW): where each row's previous mask is off at the level's size (True = blocked)."""
        if all(m is None for m in memories):
            return None
        rows = []
        for memory in memories:
            if memory is None:
                rows.append(torch.zeros(size[0] * size[1], dtype=torch.bool, device=self.queries.device))
            else:
                resized = F.interpolate(memory[None, None], size, mode="bilinear", align_corners=False)
                rows.append(resized.sigmoid().flatten() < 0.5)
        return torch.stack(rows)[:, None]

    def draw_memory_indices(self, rng: DecoderRandomness, count: int) -> None:
        """The official decoder draws which previous mask each memory query sees at every layer;
        with one previous mask per object all see it, but the draws are made (replayed in tests)."""
        for obj in self.objects:
            if obj.spatial is not None and obj.memory is not None:
                rng.memory_indices(1, count)

    def level_logits(self, dec, frame: FrameFeatures, queries: Tensor, level: int) -> Tensor:
        """(B, Q, HW) mask logits of every query at the level's size."""
        return dec.mask_embed(dec.decoder_norm(queries)) @ frame.level_mask_features[level]

    def cross_mask(self, logits: Tensor, level: int) -> Tensor:
        mask = logits.sigmoid() < 0.5
        memory = self.memory_masks[level]
        if memory is not None:
            mask = torch.where((self.query_kind == MS)[..., None], memory, mask)
        mask = mask.masked_fill(mask.all(-1, keepdim=True), False)  # a query blocked everywhere sees all
        return mask[:, None]

    def carried(self, queries: Tensor) -> Tuple[Tensor, Tensor]:
        """The slots whose self-attention outputs are used: queries and text tokens (and positions)."""
        return torch.cat([queries, self.text], 1), torch.cat([self.query_pos, self.text_pos], 1)

    def self_attention(self, attn, carried: Tensor, carried_pos: Tensor, level: int) -> Tensor:
        """Self-attention output (B, L, C) of the carried slots, before the layer's residual and norm.

        Only the spatial queries attend the spatial tokens (up to 512 per level and prompt). Rather
        than projecting every token to a key and a value, the key projection is folded into those
        few queries and the value projection applied after the attention weights
        (q . (W_k x + b_k) = (W_k^T q) . x + q . b_k; sum_t a_t (W_v x_t + b_v) = W_v sum_t a_t x_t
        + b_v sum_t a_t): the same arithmetic, for a fraction of the work. A token's key input is
        token + position = 2 token. The tokens' own outputs are never used, so not computed."""
        bsz, length, dim = carried.shape
        heads = attn.num_heads
        head_dim = dim // heads
        w_q, w_k, w_v = attn.in_proj_weight.chunk(3)
        b_q, b_k, b_v = attn.in_proj_bias.chunk(3)
        q = (F.linear(carried + carried_pos, w_q, b_q) * (float(head_dim) ** -0.5)).view(bsz, length, heads, head_dim)
        k = F.linear(carried + carried_pos, w_k, b_k).view(bsz, length, heads, head_dim).transpose(1, 2)
        v = F.linear(carried, w_v, b_v).view(bsz, length, heads, head_dim).transpose(1, 2)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k, v, attn_mask=self.self_allowed, scale=1.0)
        out = out.nan_to_num().transpose(1, 2)  # (B, L, h, d)
        if len(self.spatial_rows):
            rows, slots = self.spatial_rows, self.spatial_slots  # (R,), (R, S)
            tokens, real = self.spatial_tokens[level]  # (R, T, C), (R, T)
            qs = q[rows[:, None], slots].transpose(1, 2)  # (R, h, S, d)
            allowed = self.self_allowed[rows[:, None], 0, slots][:, None]  # (R, 1, S, L)
            scores = (qs @ k[rows].transpose(-1, -2)).masked_fill(~allowed, float("-inf"))
            nr, ns = qs.shape[0], qs.shape[2]
            folded = torch.einsum("rhsd,hdc->rhsc", qs, w_k.view(heads, head_dim, dim))
            # (R, h*S, C) x (R, C, T): batched over rows only, so that the tokens are not copied per head
            token_scores = (2 * folded.reshape(nr, heads * ns, dim) @ tokens.transpose(1, 2)).view(nr, heads, ns, -1)
            token_scores = token_scores + torch.einsum("rhsd,hd->rhs", qs, b_k.view(heads, head_dim))[..., None]
            token_scores = token_scores.masked_fill(~real[:, None, None], float("-inf"))
            weights = F.softmax(torch.cat([scores, token_scores], -1), dim=-1)
            carried_weights, token_weights = weights.split([length, tokens.shape[1]], -1)
            pooled = (token_weights.reshape(nr, heads * ns, -1) @ tokens).view(nr, heads, ns, dim)
            attended = (carried_weights @ v[rows]
                        + torch.einsum("rhsc,hdc->rhsd", pooled, w_v.view(heads, head_dim, dim))
                        + b_v.view(heads, 1, head_dim) * token_weights.sum(-1, keepdim=True))
            out[rows[:, None], slots] = attended.transpose(1, 2).to(out.dtype)
        return attn.out_proj(out.reshape(bsz, length, dim))

    def keep_self_outputs(self, carried: Tensor) -> Tensor:
        """Splits the carried slots: the text tokens are kept for the next layer; -> the queries."""
        nq = self.queries.shape[1]
        self.text = carried[:, nq:]
        return carried[:, :nq]

    def select(self, dec, frame: FrameFeatures, queries: Tensor, class_embeddings: Optional[Tensor]) -> Decoded:
        decoded = dec.decoder_norm(queries)
        class_embed = decoded @ dec.class_embed
        mask_embed = dec.mask_embed(decoded)
        mask_features = frame.mask_features[0].flatten(1)  # (D, h4*w4)
        h4, w4 = frame.mask_features.shape[-2:]
        selected, matches = [], []
        for row, obj in enumerate(self.objects, start=self.first_object):
            kind = self.query_kind[row]
            if obj.grounded:
                grounding = kind == QG
                best = cosine_similarity(class_embed[row][grounding], obj.sentence[None])[:, 0].max(0)
                selected.append(mask_embed[row][grounding][best.indices])
                matches.append(best.values)
            else:
                spatial_embeds = mask_embed[row][kind == QS]
                best = (spatial_embeds @ obj.spatial.pos_query[0, 0]).argmax()
                selected.append(spatial_embeds[best])
                matches.append(torch.ones((), device=queries.device, dtype=queries.dtype))
        out = Decoded(
            logits=(torch.stack(selected) @ mask_features).view(-1, h4, w4) if selected
            else mask_features.new_zeros((0, h4, w4)),
            match=torch.stack(matches) if matches else mask_features.new_zeros((0,)))
        if self.everything:
            objects = self.query_kind[0] == QO
            out.class_logits = dec.lang_encoder.similarity(class_embed[0][objects], class_embeddings)
            out.object_masks = (mask_embed[0][objects] @ mask_features).view(-1, h4, w4)
        return out


def _pad_rows(rows: List[List[Tuple[int, Tensor, Tensor]]], device, dim: Optional[int] = None
              ) -> Tuple[Tensor, Tensor, Tensor]:
    """Rows of (kind, values (n, C), positions (n, C)) groups -> (B, L, C) values and positions and
    (B, L) kinds, shorter rows filled with PAD slots."""
    if dim is None:
        dim = next(v.shape[1] for groups in rows for _, v, _ in groups)
    dtype = next((v.dtype for groups in rows for _, v, _ in groups), torch.float32)
    empty = torch.zeros((0, dim), device=device, dtype=dtype)
    if not rows:
        return empty[None, :0].expand(0, 0, dim), empty[None, :0].expand(0, 0, dim), torch.zeros(
            (0, 0), dtype=torch.long, device=device)
    values = [torch.cat([v for _, v, _ in groups]) if groups else empty for groups in rows]
    positions = [torch.cat([p for _, _, p in groups]) if groups else empty for groups in rows]
    kinds = [torch.cat([torch.full((len(v),), kind, device=device) for kind, v, _ in groups]) if groups
             else torch.zeros(0, dtype=torch.long, device=device) for groups in rows]
    pad = torch.nn.utils.rnn.pad_sequence
    return (pad(values, batch_first=True), pad(positions, batch_first=True),
            pad(kinds, batch_first=True, padding_value=PAD))

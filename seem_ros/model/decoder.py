"""SEEM v1 decoder: masked-attention transformer over object queries, with optional grounding
queries + text tokens, spatial queries + visual-prompt tokens, and memory queries that carry
the previous round's mask (interactive refinement / tracking).

The query groups and who may attend to whom follow the v1 ATTENTION_ARCH of all released
configs:
- cross-attention (to image features, masked by each query's current mask prediction):
  object, grounding and spatial queries, and memory queries when a previous mask is given;
- self-attention: object<->object; grounding queries<->text tokens; spatial queries <-> their own
  prompt's spatial tokens and memories; text tokens and spatial tokens among themselves.
"""
from dataclasses import dataclass, field
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from seem_ros.model.language_encoder import LanguageEncoder
from seem_ros.model.layers import MLP, ConvNorm, MultiheadAttention, PositionEmbeddingSine
from seem_ros.model.visual_sampler import DecoderRandomness, SpatialPrompt, encode_spatial_prompt, project_levels


@dataclass
class DecoderConfig:
    hidden_dim: int = 512
    dim_proj: int = 512
    num_queries: int = 101
    nheads: int = 8
    dim_feedforward: int = 2048
    num_layers: int = 9  # official DEC_LAYERS - 1
    mask_dim: int = 512
    max_spatial_len: Tuple[int, ...] = (512, 512, 512, 512)
    num_spatial_memories: int = 32
    queries_per_prompt: int = 3  # QUERY_NUMBER
    in_channels: int = 512
    enforce_input_proj: bool = False


@dataclass
class DecoderLayerOutput:
    """One layer's prediction heads, per query group, batch first (the official output key in
    brackets). Masks are logits at stride 4 of the padded input; captions are the queries' class
    embeddings (dim_proj), compared with text by cosine similarity."""
    class_logits: Optional[Tensor]  # (B, Q, K+1) object queries vs the class embeddings [pred_logits]
    masks: Tensor  # (B, Q, h, w) object queries [pred_masks]
    captions: Tensor  # (B, Q, dim_proj) object queries [pred_captions]
    grounding_masks: Optional[Tensor] = None  # (B, Q, h, w) grounding queries [pred_gmasks]
    grounding_captions: Optional[Tensor] = None  # (B, Q, dim_proj) [pred_gtexts]
    spatial_masks: Optional[Tensor] = None  # (B, 3n, h, w) spatial queries, 3 per visual prompt [pred_smasks]
    spatial_captions: Optional[Tensor] = None  # (B, 3n, dim_proj) [pred_stexts]
    spatial_mask_embeddings: Optional[Tensor] = None  # (B, 3n, mask_dim) [pred_smaskembs]
    positive_prompts: Optional[Tensor] = None  # (B, n, mask_dim) each prompt's mean positive feature [pred_pspatials]
    negative_prompts: Optional[Tensor] = None  # (B, n, mask_dim) [pred_nspatials]

    def official(self, key: str) -> Optional[Tensor]:
        """The output the official code returns under `key` (pred_masks, ...): for parity checks."""
        return getattr(self, OFFICIAL_KEYS[key])


@dataclass
class DecoderOutput(DecoderLayerOutput):
    """The last layer's outputs, the earlier layers' and, with visual prompts, each prompt's mask."""
    earlier_layers: List[DecoderLayerOutput] = field(default_factory=list)  # [aux_outputs]
    selected_masks: Optional[Tensor] = None  # (B, n, h, w) each prompt's best spatial query's mask [prev_mask]


OFFICIAL_KEYS = {"pred_logits": "class_logits", "pred_masks": "masks", "pred_captions": "captions",
                 "pred_gmasks": "grounding_masks", "pred_gtexts": "grounding_captions",
                 "pred_smasks": "spatial_masks", "pred_stexts": "spatial_captions",
                 "pred_smaskembs": "spatial_mask_embeddings", "pred_pspatials": "positive_prompts",
                 "pred_nspatials": "negative_prompts", "prev_mask": "selected_masks"}


class _Heads(NamedTuple):
    attn_mask: Tensor
    masks: Tensor
    captions: Tensor
    mask_embeddings: Tensor
    class_logits: Optional[Tensor]


class SelfAttentionLayer(nn.Module):
    def __init__(self, d_model: int, nhead: int):
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, nhead)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: Tensor, attn_mask: Tensor, pos: Tensor) -> Tensor:
        q = k = x + pos
        return self.norm(x + self.self_attn(q, k, x, attn_mask=attn_mask))


class CrossAttentionLayer(nn.Module):
    def __init__(self, d_model: int, nhead: int):
        super().__init__()
        self.multihead_attn = MultiheadAttention(d_model, nhead)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: Tensor, memory: Tensor, attn_mask: Tensor, pos: Tensor, query_pos: Tensor) -> Tensor:
        return self.norm(x + self.multihead_attn(x + query_pos, memory + pos, memory, attn_mask=attn_mask))


class FFNLayer(nn.Module):
    def __init__(self, d_model: int, dim_feedforward: int):
        super().__init__()
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x + self.linear2(F.relu(self.linear1(x))))


class _Group:
    """One query/token group: its current states, fixed positional embedding and mask."""

    def __init__(self, output: Tensor, pos: Tensor):
        self.output = output
        self.pos = pos
        self.attn_mask: Optional[Tensor] = None


def _concat(groups: Sequence[_Group]) -> Tuple[Tensor, Tensor, List[Tuple[int, int]]]:
    spans, start = [], 0
    for g in groups:
        spans.append((start, start + g.output.shape[0]))
        start += g.output.shape[0]
    return (torch.cat([g.output for g in groups]), torch.cat([g.pos for g in groups]), spans)


def _scatter(groups: Sequence[_Group], output: Tensor, spans: Sequence[Tuple[int, int]]) -> None:
    for g, (a, b) in zip(groups, spans):
        g.output = output[a:b]


class SEEMDecoder(nn.Module):
    def __init__(self, cfg: DecoderConfig, lang_encoder: LanguageEncoder):
        super().__init__()
        self.cfg = cfg
        d = cfg.hidden_dim
        self.num_heads = cfg.nheads
        self.num_layers = cfg.num_layers
        self.num_queries = cfg.num_queries
        self.pe_layer = PositionEmbeddingSine(d // 2)
        self.transformer_self_attention_layers = nn.ModuleList(
            SelfAttentionLayer(d, cfg.nheads) for _ in range(cfg.num_layers))
        self.transformer_cross_attention_layers = nn.ModuleList(
            CrossAttentionLayer(d, cfg.nheads) for _ in range(cfg.num_layers))
        self.transformer_ffn_layers = nn.ModuleList(FFNLayer(d, cfg.dim_feedforward) for _ in range(cfg.num_layers))
        self.decoder_norm = nn.LayerNorm(d)
        self.query_feat = nn.Embedding(cfg.num_queries, d)
        self.query_embed = nn.Embedding(cfg.num_queries, d)
        self.num_feature_levels = 3
        self.level_embed = nn.Embedding(self.num_feature_levels, d)
        self.input_proj = nn.ModuleList(
            ConvNorm(cfg.in_channels, d, kernel_size=1) if (cfg.in_channels != d or cfg.enforce_input_proj)
            else nn.Sequential() for _ in range(self.num_feature_levels))
        self.lang_encoder = lang_encoder
        self.mask_embed = MLP(d, d, cfg.mask_dim, 3)
        self.class_embed = nn.Parameter(torch.zeros(d, cfg.dim_proj))
        self.mask_sptial_embed = nn.ParameterList(nn.Parameter(torch.zeros(d, d)) for _ in range(3))
        self.spatial_embed = nn.Embedding(cfg.num_spatial_memories, d)
        self.spatial_featured = nn.Embedding(cfg.num_spatial_memories, d)
        self.pn_indicator = nn.Embedding(2, d)

    # ------------------------------------------------------------------ inputs
    def prepare_features(self, multi_scale: Sequence[Tensor], positions: Optional[Sequence[Tensor]] = None):
        """-> level features (HW, B, C) after projection + level embedding, their pos enc, sizes.
        positions: the levels' position encodings (HW, B, C) where the caller keeps them."""
        src, pos, sizes = [], [], []
        for i in range(self.num_feature_levels):
            x = multi_scale[i]
            sizes.append(tuple(x.shape[-2:]))
            pos.append(positions[i] if positions is not None else self.pe_layer(x).flatten(2).permute(2, 0, 1))
            src.append((self.input_proj[i](x).flatten(2) + self.level_embed.weight[i][None, :, None]).permute(2, 0, 1))
        return src, pos, sizes

    def encode_spatial_prompt(self, multi_scale: Sequence[Tensor], mask_features: Tensor,
                              pos_masks: Sequence[Tensor], neg_masks: Sequence[Tensor],
                              rng: DecoderRandomness) -> SpatialPrompt:
        src, _, sizes = self.prepare_features(multi_scale)
        return encode_spatial_prompt(pos_masks, neg_masks, mask_features,
                                     project_levels(src, sizes, self.mask_sptial_embed), self.pn_indicator.weight,
                                     self.cfg.max_spatial_len, rng)

    # ------------------------------------------------------------------ heads
    def prediction_heads(self, output: Tensor, mask_features: Tensor, text_embeddings: Optional[Tensor],
                         attn_size: Tuple[int, int]) -> _Heads:
        decoded = self.decoder_norm(output).transpose(0, 1)
        class_embed = decoded @ self.class_embed
        mask_embed = self.mask_embed(decoded)
        masks = torch.einsum("bqc,bchw->bqhw", mask_embed, mask_features)
        attn = F.interpolate(masks, size=attn_size, mode="bilinear", align_corners=False)
        attn = (attn.sigmoid().flatten(2).unsqueeze(1).repeat(1, self.num_heads, 1, 1).flatten(0, 1) < 0.5).detach()
        logits = self.lang_encoder.similarity(class_embed, text_embeddings) if text_embeddings is not None else None
        return _Heads(attn, masks, class_embed, mask_embed, logits)

    # ------------------------------------------------------------------ forward
    def forward(self, multi_scale: Sequence[Tensor], mask_features: Tensor, *,
                text_embeddings: Optional[Tensor] = None,
                grounding_tokens: Optional[Tensor] = None, grounding_padding: Optional[Tensor] = None,
                spatial: Optional[SpatialPrompt] = None, prev_mask: Optional[Tensor] = None,
                rng: Optional[DecoderRandomness] = None) -> DecoderOutput:
        """multi_scale: 3 maps (B, C, h, w) coarse to fine; mask_features (B, D, H/4, W/4).
        text_embeddings: (K+1, dim_proj) class embeddings for class logits (None: no logits).
        grounding_tokens: (T, B, dim_proj) text tokens; grounding_padding: (B, T) bool.
        spatial: encoded visual prompts (n prompts per image); prev_mask: (B, n, h, w) logits of the
        previous round for the memory queries.

        Returns the last layer's outputs of every query group, each earlier layer's, and the mask
        each visual prompt selects (DecoderOutput).
        """
        rng = rng or DecoderRandomness()
        src, pos, sizes = self.prepare_features(multi_scale)
        bs = src[0].shape[1]
        objects = _Group(self.query_feat.weight.unsqueeze(1).repeat(1, bs, 1),
                         self.query_embed.weight.unsqueeze(1).repeat(1, bs, 1))
        cross: List[_Group] = [objects]
        names = ["queries_object"]
        grounding_q = spatial_q = memories = text_tokens = None
        if grounding_tokens is not None:
            grounding_q = _Group(objects.output.clone(), objects.pos.clone())
            text_tokens = _Group(grounding_tokens, grounding_tokens.detach().clone())
            cross.append(grounding_q)
            names.append("queries_grounding")
        if spatial is not None:
            count = self.cfg.queries_per_prompt * spatial.num_prompts
            idx = rng.spatial_query_indices(self.num_queries, count, objects.output.device)
            spatial_q = _Group(objects.output[idx], objects.pos[idx])
            cross.append(spatial_q)
            names.append("queries_spatial")
            if prev_mask is not None:
                memories = _Group(self.spatial_featured.weight.unsqueeze(1).repeat(1, bs, 1),
                                  self.spatial_embed.weight.unsqueeze(1).repeat(1, bs, 1))
                cross.append(memories)
                names.append("memories_spatial")

        history: List[DecoderLayerOutput] = []

        def run_heads(level_size):
            output, query_pos, spans = _concat(cross)
            heads = self.prediction_heads(output, mask_features, text_embeddings, level_size)
            for g, (a, b) in zip(cross, spans):
                g.attn_mask = heads.attn_mask[:, a:b]
            history.append(self._split_outputs(heads, dict(zip(names, spans)), spatial))
            return output, query_pos, spans

        output, query_pos, spans = run_heads(sizes[0])
        memory_indices = None
        for i in range(self.num_layers):
            level = i % self.num_feature_levels
            attn_mask = torch.cat([g.attn_mask for g in cross], dim=1)
            if memories is not None:
                attn_mask, memory_indices = self._memory_attention(attn_mask, spans[-1], prev_mask, sizes[level], rng)
            attn_mask = attn_mask.masked_fill(attn_mask.all(-1, keepdim=True), False)
            output = self.transformer_cross_attention_layers[i](output, src[level], attn_mask, pos[level], query_pos)
            _scatter(cross, output, spans)

            spatial_tokens = None
            if spatial is not None:
                tokens = spatial.level_tokens[level]
                spatial_tokens = _Group(tokens, tokens.detach().clone())
            self_groups, self_mask = self._self_attention_layout(
                objects, grounding_q, spatial_q, text_tokens, spatial_tokens, memories,
                grounding_padding, spatial, level, memory_indices, bs)
            output, query_pos, self_spans = _concat(self_groups)
            output = self.transformer_self_attention_layers[i](output, self_mask, query_pos)
            output = self.transformer_ffn_layers[i](output)
            _scatter(self_groups, output, self_spans)
            output, query_pos, spans = run_heads(sizes[(i + 1) % self.num_feature_levels])

        last = history[-1]
        selected = self._select_spatial_masks(last, spatial.num_prompts) if spatial is not None else None
        return DecoderOutput(**vars(last), earlier_layers=history[:-1], selected_masks=selected)

    def _split_outputs(self, heads: _Heads, spans: Dict[str, Tuple[int, int]],
                       spatial: Optional[SpatialPrompt]) -> DecoderLayerOutput:
        a, b = spans["queries_object"]
        out = DecoderLayerOutput(heads.class_logits[:, a:b] if heads.class_logits is not None else None,
                                 heads.masks[:, a:b], heads.captions[:, a:b])
        if "queries_grounding" in spans:
            a, b = spans["queries_grounding"]
            out.grounding_masks, out.grounding_captions = heads.masks[:, a:b], heads.captions[:, a:b]
        if "queries_spatial" in spans:
            a, b = spans["queries_spatial"]
            out.spatial_masks, out.spatial_captions = heads.masks[:, a:b], heads.captions[:, a:b]
            out.spatial_mask_embeddings = heads.mask_embeddings[:, a:b]
            out.positive_prompts = spatial.pos_query.transpose(0, 1)
            out.negative_prompts = spatial.neg_query.transpose(0, 1)
        return out

    def _memory_attention(self, attn_mask: Tensor, span: Tuple[int, int], prev_mask: Tensor,
                          size: Tuple[int, int], rng: DecoderRandomness) -> Tuple[Tensor, Tensor]:
        """Memory queries attend where the previous round's mask of their prompt is on."""
        num_prev = prev_mask.shape[1]
        mem = F.interpolate(prev_mask, size, mode="bilinear", align_corners=False)
        mem = (mem.sigmoid().flatten(2).unsqueeze(1).repeat(1, self.num_heads, 1, 1).flatten(0, 1) < 0.5).detach()
        indices = rng.memory_indices(num_prev, span[1] - span[0]).to(attn_mask.device)
        attn_mask = attn_mask.clone()
        attn_mask[:, span[0]:span[1]] = mem[:, indices]
        return attn_mask, indices

    def _self_attention_layout(self, objects, grounding_q, spatial_q, text_tokens, spatial_tokens, memories,
                               grounding_padding, spatial, level, memory_indices, bs):
        """Self-attention groups in official order and the (B*heads, N, N) mask, True = blocked."""
        order = [("qo", objects), ("qg", grounding_q), ("qs", spatial_q), ("tg", text_tokens),
                 ("ts", spatial_tokens), ("ms", memories)]
        order = [(k, g) for k, g in order if g is not None]
        groups = [g for _, g in order]
        _, _, spans_list = _concat(groups)
        spans = {k: s for (k, _), s in zip(order, spans_list)}
        total = spans_list[-1][1]
        device = objects.output.device
        mask = torch.ones((bs, total, total), dtype=torch.bool, device=device)

        def block(a, b):
            (a0, a1), (b0, b1) = spans[a], spans[b]
            return mask[:, a0:a1, b0:b1]

        allowed = [("qo", "qo"), ("qg", "qg"), ("qg", "tg"), ("qs", "qs"), ("qs", "ts"), ("qs", "ms"),
                   ("tg", "qg"), ("tg", "tg"), ("ts", "ts"), ("ms", "ms")]
        for a, b in allowed:
            if a in spans and b in spans:
                block(a, b)[:] = False
        paddings = {}
        if "tg" in spans:
            paddings["tg"] = grounding_padding
        if "ts" in spans:
            paddings["ts"] = spatial.level_padding[level]
        # padded tokens neither attend nor are attended (within their group, and from queries)
        for key, pad in paddings.items():
            block(key, key)[pad] = True
            block(key, key).transpose(1, 2)[pad] = True
        if "tg" in spans:
            block("qg", "tg").transpose(1, 2)[paddings["tg"]] = True
            block("tg", "qg")[paddings["tg"]] = True
        if "ts" in spans:
            block("qs", "ts").transpose(1, 2)[paddings["ts"]] = True
            # each group of spatial queries sees only its own prompt's queries, tokens and memories
            per_prompt = self.cfg.queries_per_prompt
            n = spatial.num_prompts
            query_prompt = torch.arange(n, device=device).repeat_interleave(per_prompt)
            block("qs", "qs")[:] = (query_prompt[:, None] != query_prompt[None, :])[None]
            token_prompt = spatial.level_prompt_index[level].permute(0, 2, 1)  # (bs, 1, T)
            block("qs", "ts")[:] = token_prompt != query_prompt[None, :, None]
            block("ts", "ts")[:] = token_prompt != token_prompt.transpose(1, 2)
            if "ms" in spans and memory_indices is not None:
                mi = memory_indices[None, None, :]
                block("qs", "ms")[:] = query_prompt[None, :, None] != mi
                block("ms", "ms")[:] = mi != mi.transpose(1, 2)
        return groups, mask.repeat_interleave(self.num_heads, dim=0)

    def _select_spatial_masks(self, out: DecoderLayerOutput, num_prompts: int) -> Tensor:
        """For each prompt, the mask of its best-matching spatial query (by similarity of the query's
        mask embedding to the prompt's mean positive feature) -> (B, n, h, w) logits."""
        per_prompt = self.cfg.queries_per_prompt
        emb = out.spatial_mask_embeddings
        prompt_emb = out.positive_prompts
        device = emb.device
        own = torch.eye(num_prompts, device=device).repeat_interleave(per_prompt, dim=0).bool()
        offset = torch.zeros(own.shape, device=device).masked_fill(~own, float("-inf"))
        logits = emb @ prompt_emb.transpose(1, 2) + offset[None]
        best = logits.max(dim=1)[1]  # (B, n)
        masks = out.spatial_masks
        return torch.stack([masks[b, best[b]] for b in range(masks.shape[0])])

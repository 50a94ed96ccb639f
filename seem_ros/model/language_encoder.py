"""SEEM's language encoder: a CLIP-style causal text transformer (UniCL weights in the released
checkpoints), a projection into the joint space, and the learnable logit scale."""
from collections import OrderedDict
from typing import Sequence, Tuple

import torch
from torch import Tensor, nn

from seem_ros.model.layers import MultiheadAttention
from seem_ros.model.prompt_templates import PROMPT_TEMPLATES
from seem_ros.model.tokenizer import ClipTokenizer


class TFLayerNorm(nn.Module):
    """LayerNorm with eps inside the square root (eps=1e-12), computed in fp32."""

    def __init__(self, hidden: int, eps: float = 1e-12):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden))
        self.bias = nn.Parameter(torch.zeros(hidden))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        dtype = x.dtype
        x = x.float()
        u = x.mean(-1, keepdim=True)
        s = (x - u).pow(2).mean(-1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight * x.to(dtype) + self.bias


class QuickGELU(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.attn = MultiheadAttention(width, heads)
        self.ln_1 = TFLayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(width, width * 4)), ("gelu", QuickGELU()), ("c_proj", nn.Linear(width * 4, width))]))
        self.ln_2 = TFLayerNorm(width)

    def forward(self, x: Tensor, causal_mask: Tensor) -> Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, attn_mask=causal_mask)
        return x + self.mlp(self.ln_2(x))


class TextTransformer(nn.Module):
    def __init__(self, context_length: int, vocab_size: int, width: int, layers: int, heads: int):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.zeros(context_length, width))
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads) for _ in range(layers))
        self.ln_final = TFLayerNorm(width)
        mask = torch.full((context_length, context_length), float("-inf")).triu_(1)
        self.register_buffer("causal_mask", mask, persistent=False)

    def forward(self, input_ids: Tensor) -> Tensor:
        """(N, L) token ids -> (N, L, width) last hidden states. Causal, so padding needs no mask."""
        length = input_ids.shape[1]
        x = self.token_embedding(input_ids) + self.positional_embedding[:length]
        x = x.permute(1, 0, 2)
        mask = self.causal_mask[:length, :length].to(x.dtype)
        for block in self.resblocks:
            x = block(x, mask)
        return self.ln_final(x.permute(1, 0, 2))


class LanguageEncoder(nn.Module):
    """Keys: `lang_encoder.*` (text transformer), `lang_proj`, `logit_scale` (log of the temperature)."""

    def __init__(self, tokenizer: ClipTokenizer, context_length: int, vocab_size: int, width: int,
                 layers: int, heads: int, dim_proj: int):
        super().__init__()
        self.tokenizer = tokenizer
        self.lang_encoder = TextTransformer(context_length, vocab_size, width, layers, heads)
        self.lang_proj = nn.Parameter(torch.zeros(width, dim_proj))
        self.logit_scale = nn.Parameter(torch.ones([]))

    @property
    def device(self) -> torch.device:
        return self.lang_proj.device

    def tokenize(self, texts: Sequence[str]) -> Tuple[Tensor, Tensor]:
        ids, mask = self.tokenizer(texts)
        return ids.to(self.device), mask.to(self.device)

    def encode_tokens(self, input_ids: Tensor, norm: bool = False, full_length: bool = False) -> Tuple[Tensor, Tensor]:
        """Returns (per-token embeddings (N, L, D), sentence embedding at the first end token (N, D)).
        Unless full_length, L stops at the longest text's end token: attention is causal, so the
        padding after it never changes the tokens that are used (7x less work for short prompts)."""
        if not full_length:
            input_ids = input_ids[:, : int(input_ids.argmax(dim=-1).max()) + 1]
        hidden = self.lang_encoder(input_ids)
        sentence = hidden[torch.arange(hidden.shape[0], device=hidden.device), input_ids.argmax(dim=-1)]
        tokens, sentence = hidden @ self.lang_proj, sentence @ self.lang_proj
        if norm:
            tokens = normalize(tokens)
            sentence = normalize(sentence)
        return tokens, sentence

    def sentence_embeddings(self, texts: Sequence[str], norm: bool = True) -> Tensor:
        ids, _ = self.tokenize(texts)
        return self.encode_tokens(ids, norm=norm)[1]

    @torch.no_grad()
    def class_embeddings(self, class_names: Sequence[str]) -> Tensor:
        """Per class, the mean of the L2-normalised embeddings of the 81 prompt templates filled with
        the name, re-normalised (official eval path). SEEM's vocabulary is the class names followed
        by "background", whose row acts as the no-object class."""
        rows = []
        for name in class_names:
            name = name.replace("-other", "").replace("-merged", "").replace("-stuff", "")
            rows.append(self._mean_embedding([t.format(name) for t in PROMPT_TEMPLATES]))
        return torch.stack(rows)

    def _mean_embedding(self, texts: Sequence[str]) -> Tensor:
        emb = self.sentence_embeddings(texts, norm=True).mean(dim=0)
        return emb / emb.norm()

    def similarity(self, visual: Tensor, text_embeddings: Tensor) -> Tensor:
        """Class logits: exp(logit_scale) * cosine(visual, text). Not clamped (official compute_similarity)."""
        return self.logit_scale.exp() * normalize(visual) @ text_embeddings.transpose(-1, -2)


def normalize(x: Tensor) -> Tensor:
    return x / (x.norm(dim=-1, keepdim=True) + 1e-7)


def cosine_similarity(visual: Tensor, text: Tensor) -> Tensor:
    """(Q, D) x (N, D) -> (Q, N) cosine similarities, with the official 1e-7 norm guard."""
    return normalize(visual) @ normalize(text).t()

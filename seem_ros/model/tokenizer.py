"""CLIP byte-pair-encoding tokenizer (SEEM's text tokenizer is CLIP's).

Reads the BPE merges shipped by open_clip (`open_clip/bpe_simple_vocab_16e6.txt.gz`) without
importing open_clip, whose package import pulls torchvision. Output matches the HF
`CLIPTokenizer(padding='max_length', truncation=True, max_length=77)` call of the official code:
`<start> tokens <end>` then padding with the end id; attention mask 1 on start..end.
"""
import gzip
import html
import importlib.util
import os
from functools import lru_cache
from typing import Dict, List, Optional, Sequence, Tuple

import ftfy
import regex
import torch

BPE_FILE_NAME = "bpe_simple_vocab_16e6.txt.gz"
START_TOKEN = "<|startoftext|>"
END_TOKEN = "<|endoftext|>"


def default_bpe_path() -> str:
    """Location of the BPE file inside the installed open_clip_torch distribution."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"CLIP BPE vocabulary not found: install open_clip_torch (pip install --no-deps open_clip_torch) "
            f"or pass bpe_path= pointing to {BPE_FILE_NAME}")
    return os.path.join(list(spec.submodule_search_locations)[0], BPE_FILE_NAME)


@lru_cache()
def _bytes_to_unicode() -> Dict[int, str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(2 ** 8):
        if b not in bs:
            bs.append(b)
            cs.append(2 ** 8 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def _clean(text: str) -> str:
    text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    return regex.sub(r"\s+", " ", text).strip().lower()


class ClipTokenizer:
    def __init__(self, bpe_path: Optional[str] = None, context_length: int = 77):
        self.context_length = context_length
        self.byte_encoder = _bytes_to_unicode()
        with gzip.open(bpe_path or default_bpe_path(), "rt", encoding="utf-8") as f:
            merges = f.read().split("\n")[1:49152 - 256 - 2 + 1]
        merges = [tuple(m.split()) for m in merges]
        vocab = list(self.byte_encoder.values())
        vocab += [v + "</w>" for v in vocab]
        vocab += ["".join(m) for m in merges]
        vocab += [START_TOKEN, END_TOKEN]
        self.encoder = {v: i for i, v in enumerate(vocab)}
        self.bpe_ranks = {m: i for i, m in enumerate(merges)}
        self.start_id = self.encoder[START_TOKEN]
        self.end_id = self.encoder[END_TOKEN]
        self.vocab_size = len(self.encoder)
        self.pattern = regex.compile(
            r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
            regex.IGNORECASE)
        self._cache: Dict[str, str] = {}

    def _bpe(self, token: str) -> str:
        if token in self._cache:
            return self._cache[token]
        word: Tuple[str, ...] = tuple(token[:-1]) + (token[-1] + "</w>",)
        while len(word) > 1:
            pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
            bigram = min(pairs, key=lambda p: self.bpe_ranks.get(p, float("inf")))
            if bigram not in self.bpe_ranks:
                break
            first, second = bigram
            merged: List[str] = []
            i = 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = tuple(merged)
        out = " ".join(word)
        self._cache[token] = out
        return out

    def encode(self, text: str) -> List[int]:
        ids: List[int] = []
        for token in regex.findall(self.pattern, _clean(text)):
            token = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self._bpe(token).split(" "))
        return ids

    def __call__(self, texts: Sequence[str]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Returns (input_ids, attention_mask), both (N, context_length) int64."""
        if isinstance(texts, str):
            texts = [texts]
        input_ids = torch.full((len(texts), self.context_length), self.end_id, dtype=torch.long)
        attention_mask = torch.zeros((len(texts), self.context_length), dtype=torch.long)
        for row, text in enumerate(texts):
            ids = [self.start_id] + self.encode(text)[: self.context_length - 2] + [self.end_id]
            input_ids[row, : len(ids)] = torch.tensor(ids)
            attention_mask[row, : len(ids)] = 1
        return input_ids, attention_mask

"""What each object asks of a frame (ObjectQuery) and the objects packed into the fixed slots of
one decoder pass (TextSlots, VisualSlots) with the pass's outputs (SlotOutputs): the frame engine's
inputs and outputs, and those of the exported decoder graph (runtime)."""
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor
from torch.nn import functional as F
from torch.nn.utils.rnn import pad_sequence

from seem_ros.model.visual_sampler import SpatialPrompt


@dataclass
class ObjectQuery:
    """What one object asks of a frame. Text objects select their mask by the sentence embedding,
    visual (spatial) objects by their prompt's mean feature; text + visual objects are visual
    objects whose candidate masks the text chooses (text_tokens unused)."""
    text_tokens: Optional[Tensor] = None  # (T, C) token embeddings of the text
    sentence: Optional[Tensor] = None  # (C,) sentence embedding
    spatial: Optional[SpatialPrompt] = None  # one visual prompt (n = 1, bs = 1), or an example region's
    memory: Optional[Tensor] = None  # (h4, w4) previous mask logits: memory queries attend where it is on

    @property
    def grounded(self) -> bool:
        """A text-only object: a row of grounding queries."""
        return self.text_tokens is not None and self.spatial is None


@dataclass
class TextSlots:
    """Text objects, a row each: the 101 grounding queries and the text's tokens."""
    tokens: Tensor  # (Nt, T, C) token embeddings, padded
    valid: Tensor  # (Nt, T) bool: real tokens
    sentence: Tensor  # (Nt, C) sentence embeddings: select the row's mask


@dataclass
class VisualSlots:
    """Visual objects, a row each: spatial queries (copies of object queries), memory queries
    (attending where the previous mask is on) and, per level, the prompt's spatial tokens."""
    query_index: Tensor  # (Nv, S) which object queries become the row's spatial queries
    pos_query: Tensor  # (Nv, D) the prompt's mean mask feature: selects the row's mask
    level_tokens: List[Tensor]  # per level (Nv, P, C) spatial tokens, padded
    level_valid: List[Tensor]  # per level (Nv, P) bool: real tokens
    memory: Optional[Tensor] = None  # (Nv, h4, w4) previous mask logits; None: no memory slots at all
    has_memory: Optional[Tensor] = None  # (Nv,) bool: rows whose spatial queries attend their memory
    # (Nv, C) sentence embeddings of text + visual rows, which choose their mask by it; a zero row
    # chooses by the prompt's mean feature. None: no row has a text
    select_text: Optional[Tensor] = None


@dataclass
class SlotOutputs:
    text_logits: Tensor  # (Nt, h4, w4) each text row's selected mask logits
    text_match: Tensor  # (Nt,) cosine of the selected query to the sentence
    visual_logits: Tensor  # (Nv, h4, w4)
    visual_match: Tensor  # (Nv,) cosine of the chosen query to the row's text (1 without one)
    class_logits: Optional[Tensor] = None  # segment-everything: (Q, K+1) class logits of the object queries
    object_masks: Optional[Tensor] = None  # segment-everything: (Q, h4, w4)


def text_slots(objects: Sequence[ObjectQuery]) -> TextSlots:
    """Text objects packed into rows, tokens padded to the longest text's."""
    tokens = pad_sequence([obj.text_tokens for obj in objects], batch_first=True)
    valid = pad_sequence([torch.ones(len(obj.text_tokens), dtype=torch.bool, device=tokens.device)
                          for obj in objects], batch_first=True)
    return TextSlots(tokens, valid, torch.stack([obj.sentence for obj in objects]).to(tokens.dtype))


def visual_slots(objects: Sequence[ObjectQuery], query_indices: Sequence[Tensor], mask_size: Tuple[int, int]
                 ) -> VisualSlots:
    """Visual objects packed into rows, each level's tokens padded to the longest prompt's. Memory
    slots when an object has a previous mask to attend."""
    first = objects[0].spatial
    device = first.pos_query.device
    # a prompt's tokens and padding flags are copied as they are (its padding stays padding): one
    # copy per level for all rows, no boolean indexing (a host sync per object on a GPU)
    tokens = [pad_sequence([obj.spatial.level_tokens[lv][:, 0] for obj in objects], batch_first=True)
              for lv in range(len(first.level_tokens))]
    valid = [~pad_sequence([obj.spatial.level_padding[lv][0] for obj in objects], batch_first=True, padding_value=True)
             for lv in range(len(first.level_tokens))]
    index = torch.stack(list(query_indices)).to(device)
    pos_query = torch.stack([obj.spatial.pos_query[0, 0] for obj in objects]).to(first.pos_query.dtype)
    sentences = [obj.sentence for obj in objects]
    select_text = None
    if any(sentence is not None for sentence in sentences):
        dim = next(sentence for sentence in sentences if sentence is not None).shape[-1]
        select_text = torch.stack([sentence.to(pos_query.dtype) if sentence is not None else pos_query.new_zeros(dim)
                                   for sentence in sentences])
    if all(obj.memory is None for obj in objects):
        return VisualSlots(index, pos_query, tokens, valid, select_text=select_text)
    logits = pos_query.new_zeros((len(objects), *mask_size))
    for i, obj in enumerate(objects):
        if obj.memory is not None:
            previous = obj.memory
            if tuple(previous.shape) != tuple(mask_size):  # a previous frame of another size
                previous = F.interpolate(previous[None, None], mask_size, mode="bilinear", align_corners=False)[0, 0]
            logits[i] = previous
    has_memory = torch.tensor([obj.memory is not None for obj in objects], device=device)
    return VisualSlots(index, pos_query, tokens, valid, logits, has_memory, select_text)

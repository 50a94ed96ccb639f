"""What a robot sends a SEEM frame server and what comes back: one request per camera frame, in
numpy arrays, and nothing kept on the server between requests (any number of servers can sit behind
one address).

The robot keeps everything stateful (prompts, tracks, previous masks, appearances) and draws its
visual prompts' points itself (geometry on its own masks, visual_sampler.draw_prompt_points); the
server runs everything that needs the image's features: the image encoder, the spatial tokens
sampled at those points, and the frame engine's decoder over every object of the frame. An object
found by an appearance or an example region carries its points on its own earlier image, which
travels with the request and is encoded beside the frame.

Every array below is one request's (Triton adds the batch dimension); rows are padded to a
multiple of ROW_SLOTS, text to the tokenizer's context length, so that the requests of robots
following a few objects each have one shape and Triton's dynamic batcher can batch them."""
import dataclasses
import json
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from seem_ros.model.visual_sampler import DrawnPoints

PROTOCOL_VERSION = 1  # the model version the server registers; a client of another version is refused
FRAME_MODEL = "seem_frame"
INFO_MODEL = "seem_frame_info"  # one JSON string: what the server runs (ServerInfo)
ROW_SLOTS = 8
# sent only when not empty (Triton's Python backend cannot pass a tensor with a zero dimension), and
# requests without them batch together
OPTIONAL = ("memory", "reference_images", "reference_sizes", "class_embeddings", "class_logits", "object_masks")
EMPTY, TEXT, VISUAL = 0, 1, 2  # row kinds


def _tensor(dtype, rank: int):
    """A message field: a numpy array of this dtype and number of dimensions (each of any size)."""
    return dataclasses.field(metadata={"dtype": dtype, "rank": rank})


@dataclass
class FrameRequest:
    # the frame resized and placed at the top left of the canvas, zeros around: (Hc, Wc, 3)
    image: np.ndarray = _tensor(np.uint8, 3)
    input_hw: np.ndarray = _tensor(np.int32, 1)  # (2,): the resized frame's size on the canvas
    row_kind: np.ndarray = _tensor(np.int8, 1)  # (N,): EMPTY, TEXT (grounding) or VISUAL
    # (N, T, C): a text row's token embeddings (T: the longest text's, rounded up to 16)
    text_tokens: np.ndarray = _tensor(np.float32, 3)
    text_length: np.ndarray = _tensor(np.int32, 1)  # (N,): its real tokens
    # (N, C): a text row's sentence embedding; a visual row's text choosing its mask (zeros: none)
    sentence: np.ndarray = _tensor(np.float32, 2)
    # (N, levels + 1, P, 3): a visual row's points, per decoder level and then those of its mean
    # query, as (sign, y/H, x/W) on its image's canvas; sign 1 positive, -1 negative, 0 no point
    points: np.ndarray = _tensor(np.float32, 4)
    point_image: np.ndarray = _tensor(np.int32, 1)  # (N,): -1 the frame, r >= 0 reference image r
    # (N, h4, w4): a visual row's previous mask logits (not sent when no row has one)
    memory: np.ndarray = _tensor(np.float32, 3)
    has_memory: np.ndarray = _tensor(np.int8, 1)  # (N,)
    # (R, H, W, 3): earlier frames or example images, as image, each at the top left (their canvases
    # may differ from the frame's and from one another's: an input_canvas off)
    reference_images: np.ndarray = _tensor(np.uint8, 4)
    # (R, 4): each one's input height, width and canvas height, width
    reference_sizes: np.ndarray = _tensor(np.int32, 2)
    # (K, C): the vocabulary's embeddings; K > 0 also runs the object queries (segment-everything, categories)
    class_embeddings: np.ndarray = _tensor(np.float32, 2)


@dataclass
class FrameResponse:
    logits: np.ndarray = _tensor(np.float32, 3)  # (M, h4, w4): each row's mask logits, up to the last object
    match: np.ndarray = _tensor(np.float32, 1)  # (M,): cosine of the selected query to the row's text (1: none)
    class_logits: np.ndarray = _tensor(np.float32, 2)  # (Q, K): the object queries' (Q = 0 when K = 0)
    object_masks: np.ndarray = _tensor(np.float32, 3)  # (Q, h4, w4)


def _dims(cls) -> List[Tuple[str, type, Tuple[int, ...]]]:
    """(name, dtype, dims) of each field, every dimension variable (-1) for Triton's model config."""
    return [(f.name, f.metadata["dtype"], (-1,) * f.metadata["rank"]) for f in dataclasses.fields(cls)]


REQUEST_TENSORS = _dims(FrameRequest)
RESPONSE_TENSORS = _dims(FrameResponse)
_SPEC = {FrameRequest: REQUEST_TENSORS, FrameResponse: RESPONSE_TENSORS}


def to_arrays(message) -> Dict[str, np.ndarray]:
    """A request or response as {name: array} in the protocol's dtypes (no batch dimension), the
    OPTIONAL ones left out when empty."""
    arrays = {name: np.ascontiguousarray(getattr(message, name), dtype=dtype) for name, dtype, _ in _SPEC[type(message)]}
    return {name: array for name, array in arrays.items() if array.size or name not in OPTIONAL}


def from_arrays(cls, arrays: Dict[str, np.ndarray]):
    """The message of class cls from {name: array} (an OPTIONAL one missing: empty); another
    missing array is a ValueError naming it."""
    missing = [name for name, _, _ in _SPEC[cls] if name not in arrays and name not in OPTIONAL]
    if missing:
        raise ValueError(f"{cls.__name__} lacks {', '.join(missing)}")
    return cls(**{name: arrays[name] if name in arrays else np.zeros((0,) * len(dims), dtype)
                  for name, dtype, dims in _SPEC[cls]})


@dataclass
class ServerInfo:
    """What a server runs: a client refuses a server whose protocol or checkpoint is not its own."""
    protocol_version: int
    variant: str  # the model configuration (a released variant's name or custom-<hash>)
    checkpoint_sha256: str
    backend: str  # what runs the model on the server (describe_backend)
    max_batch_size: int

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ServerInfo":
        values = json.loads(text)
        return cls(**{f.name: values.get(f.name) for f in dataclasses.fields(cls)})

    def mismatch(self, other: "ServerInfo") -> str:
        """Why a client of `other` cannot use this server ("" when it can), naming both sides."""
        for name in ("protocol_version", "variant", "checkpoint_sha256"):
            ours, theirs = getattr(self, name), getattr(other, name)
            if ours != theirs:
                return f"the server's {name} is {ours!r}, this client's {theirs!r}"
        return ""


def mask_size(request: FrameRequest) -> Tuple[int, int]:
    """The size of a request's mask logits and memory: a quarter of its canvas."""
    return request.image.shape[0] // 4, request.image.shape[1] // 4


def points_length(max_spatial_len: Sequence[int]) -> int:
    """FrameRequest.points' P: a prompt is drawn up to max_len positive and max_len negative points."""
    return 2 * max(max_spatial_len)


def points_table(drawn: DrawnPoints, i: int, max_spatial_len: Sequence[int]) -> np.ndarray:
    """Prompt i of draw_prompt_points (one prompt per image) as FrameRequest.points rows: (levels + 1,
    points_length, 3) (sign, y, x), the inverse of drawn_points."""
    table = np.zeros((len(drawn.level_pos) + 1, points_length(max_spatial_len), 3), np.float32)
    for row, (pos, neg) in enumerate(list(zip(drawn.level_pos, drawn.level_neg)) + [(drawn.mean_pos, drawn.mean_neg)]):
        points = torch.cat([pos[i][:, 1:], neg[i][:, 1:]]).float().numpy()
        table[row, :len(points), 1:] = points
        table[row, :len(pos[i]), 0] = 1
        table[row, len(pos[i]):len(points), 0] = -1
    return table


def drawn_points(rows: Sequence[np.ndarray], device) -> DrawnPoints:
    """Visual rows' points from the wire ((levels + 1, P, 3): (sign, y, x) per level, then the mean
    query's) as draw_prompt_points gives them for one prompt per image."""
    def points(table: np.ndarray, sign: int) -> Tensor:
        chosen = torch.from_numpy(table[table[:, 0] == sign]).to(device)
        chosen[:, 0] = 0  # the row's one prompt
        return chosen
    levels = rows[0].shape[0] - 1
    return DrawnPoints(1, [points(r[-1], 1) for r in rows], [points(r[-1], -1) for r in rows],
                       [[points(r[level], 1) for r in rows] for level in range(levels)],
                       [[points(r[level], -1) for r in rows] for level in range(levels)])

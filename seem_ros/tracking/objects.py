"""A tracked object's state, what it asks of a frame (object_query), and what a frame reports
about it (FrameObject)."""
import itertools
import threading
from dataclasses import dataclass
from typing import NamedTuple, Optional, Tuple

import numpy as np

from seem_ros.inference.frame_slots import ObjectQuery
from seem_ros.inference.predictor import MaskResult, SeemPredictor
from seem_ros.inference.visual_prompt import VisualPrompt
from seem_ros.model.visual_sampler import SpatialPrompt

TRACKED, LOST, REMOVED = "tracked", "lost", "removed"

_object_ids = itertools.count(1)
_object_ids_lock = threading.Lock()


def new_object_id() -> int:
    """A process-wide unique object id: downstream id -> label maps never mix two objects."""
    with _object_ids_lock:
        return next(_object_ids)


@dataclass
class TrackedObject:
    id: int
    label: str
    text: str = ""
    visual: Optional[VisualPrompt] = None  # the visual prompt of the first frame
    reference: Optional[SpatialPrompt] = None
    refinement: Optional[VisualPrompt] = None  # user clicks for the next frame, with memory of `last`
    track: bool = True
    last: Optional[MaskResult] = None
    following: bool = False  # a visual object found in a frame: its last mask prompts the next one
    revision: int = 0  # bumped by every edit; a frame's write-back skips objects edited meanwhile
    category: str = ""  # an instance of this category: matched to its detections every frame
    status: str = "tracked"  # TRACKED or LOST
    age: int = 0  # frames segmented since it was added
    hits: int = 0  # frames with a confident mask
    misses: int = 0  # consecutive frames without one
    since_grounding: int = 0  # text objects: frames since their text last chose their mask
    appearance: Optional[SpatialPrompt] = None  # its mask's reference tokens on a confident frame of its own


@dataclass
class FrameObject:
    id: int
    label: str
    mask: np.ndarray  # bool (H, W) at the camera image size; empty when the object was not found
    score: float  # confidence: mean mask probability inside the mask (times the text match)
    status: str = TRACKED  # TRACKED, LOST, or REMOVED (its last report)
    mode: str = ""  # what found the mask: prompt, grounding, reference, propagation or refinement


class Added(NamedTuple):
    id: int
    existing: bool  # the text already names a tracked object: its id is returned, nothing is added


def object_query(predictor: SeemPredictor, obj: TrackedObject, ground_now: bool, search_now: bool
           ) -> Tuple[Optional[ObjectQuery], str]:
    """What the object asks of this frame (None: it follows its last mask, prompted all together),
    and the mode that names it. ground_now: whether a text object is grounded by its text;
    search_now: whether a lost object is searched by its appearance."""
    if obj.reference is not None:
        return predictor.reference_query(obj.reference), "reference"
    if obj.refinement is not None:
        return predictor.visual_query(obj.refinement, memory=obj.last, text=obj.text), "refinement"
    if search_now:
        return predictor.reference_query(obj.appearance), "reidentification"
    if obj.following:
        return None, "propagation"
    if obj.visual is not None:
        return predictor.visual_query(obj.visual, text=obj.text), "prompt"
    if not ground_now and obj.last is not None:
        return None, "propagation"
    return predictor.text_query(obj.text), "grounding"

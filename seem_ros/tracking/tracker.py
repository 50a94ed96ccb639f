"""Tracked objects and how each is found again in a new frame.

First frame of an object: its own prompt (text, visual, text + visual, or reference region).
Following frames, as the official SEEM video demos do:
- text objects are grounded by their text again (all texts in one decoder call);
- visual objects use their previous mask as the spatial prompt (mask propagation);
- reference objects re-use the example region's tokens;
- text + visual objects combine the text with the previous mask.
A refinement (clicks on a tracked object) uses the object's previous mask as memory.
"""
import threading
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np

from ..model.predictor import MaskResult, SeemPredictor, VisualPrompt
from ..model.visual_sampler import SpatialPrompt
from ..prompts.text_commands import same_object


@dataclass
class TrackedObject:
    id: int
    label: str
    text: str = ""
    visual: Optional[VisualPrompt] = None  # prompt for the next frame (then the previous mask)
    reference: Optional[SpatialPrompt] = None
    refine: bool = False  # next visual prompt refines the previous result (memory)
    track: bool = True
    last: Optional[MaskResult] = None


@dataclass
class FrameObject:
    id: int
    label: str
    mask: np.ndarray  # bool (H, W) at the camera image size
    score: float


class ObjectTracker:
    def __init__(self, max_objects: int = 16):
        self.max_objects = max_objects
        self._objects: Dict[int, TrackedObject] = {}
        self._next_id = 1
        self._lock = threading.Lock()

    # ------------------------------------------------------------ editing (any thread)
    def add(self, label: str, text: str = "", visual: Optional[VisualPrompt] = None,
            reference: Optional[SpatialPrompt] = None, track: bool = True) -> int:
        with self._lock:
            if len(self._objects) >= self.max_objects:
                raise ValueError(f"already {len(self._objects)} objects (max_objects = {self.max_objects})")
            obj = TrackedObject(self._next_id, label, text=text, visual=visual, reference=reference, track=track)
            self._objects[obj.id] = obj
            self._next_id += 1
            return obj.id

    def refine(self, object_id: int, visual: VisualPrompt) -> None:
        with self._lock:
            obj = self._objects.get(object_id)
            if obj is None:
                raise KeyError(f"no tracked object with id {object_id} (tracked: {sorted(self._objects) or 'none'})")
            obj.visual, obj.refine = visual, obj.last is not None

    def remove_label(self, phrase: str) -> List[int]:
        with self._lock:
            ids = [i for i, o in self._objects.items() if same_object(o.label, phrase)]
            for i in ids:
                del self._objects[i]
            return ids

    def clear(self) -> None:
        with self._lock:
            self._objects.clear()

    def reset(self) -> None:
        """Forget what was seen: objects found by text or by a reference region are searched afresh;
        objects known only from their previous masks are dropped."""
        with self._lock:
            for obj in list(self._objects.values()):
                if not obj.text and obj.reference is None:
                    del self._objects[obj.id]
                else:
                    obj.last, obj.visual, obj.refine = None, None, False

    def labels(self) -> Dict[int, str]:
        with self._lock:
            return {i: o.label for i, o in self._objects.items()}

    # ------------------------------------------------------------ per frame (worker thread)
    def step(self, predictor: SeemPredictor) -> List[FrameObject]:
        """Segment every tracked object in the image last given to predictor.set_image()."""
        with self._lock:
            objects = list(self._objects.values())
        references = [o for o in objects if o.reference is not None]
        composed = [o for o in objects if o.reference is None and o.text and o.visual is not None]
        texts = [o for o in objects if o.reference is None and o.text and o.visual is None]
        visual = [o for o in objects if o.reference is None and not o.text and o.visual is not None]
        results: Dict[int, MaskResult] = {}
        if texts:
            results.update(zip((o.id for o in texts), predictor.predict_text([o.text for o in texts])))
        plain = [o for o in visual if not o.refine]
        if plain:  # one batched decoder call, one prompt per row
            results.update(zip((o.id for o in plain), predictor.predict_visual([o.visual for o in plain])))
        for obj in (o for o in visual if o.refine):  # each refinement carries its own memory
            results[obj.id] = predictor.predict_visual([obj.visual], memory=[obj.last])[0]
        if composed:
            results.update(zip((o.id for o in composed), predictor.predict_text_with_prompts(
                [o.text for o in composed], [o.visual for o in composed])))
        for obj in references:
            results[obj.id] = predictor.predict_reference(obj.reference)[0]

        frame_objects = []
        with self._lock:
            for obj in objects:
                res = results.get(obj.id)
                if res is None or obj.id not in self._objects:
                    continue
                if res.mask.any():
                    obj.last = res
                    if obj.visual is not None:  # follow the object: its mask prompts the next frame
                        obj.visual, obj.refine = VisualPrompt(mask=res.mask), False
                if not obj.track:
                    del self._objects[obj.id]
                frame_objects.append(FrameObject(obj.id, obj.label, res.mask, res.score))
        return frame_objects

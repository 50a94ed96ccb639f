"""Tracked objects and how each is found again in a new frame.

First frame of an object: its own prompt (text, visual, text + visual, or reference region).
Following frames, as the official SEEM video demos do:
- text objects are grounded by their text again;
- visual objects use their previous mask as the spatial prompt (mask propagation, from the mask
  logits on the device);
- reference objects re-use the example region's tokens;
- text + visual objects follow their previous mask, the text choosing among its candidate masks
  (frame_engine.py: how SEEM v1 composes a text with a visual prompt).
A refinement (clicks on a tracked object) uses the object's previous mask as memory; refining an
example-region object turns it into a visual object that follows its own mask from then on, and
refining a text object turns it into a text + visual object: the correction holds in the frames
after it (it is no longer grounded by its text alone, which would undo it).
All objects of a frame are decoded in one frame-engine pass, each in its own row: adding or
removing one object does not change the others' masks.

Each object has a status: `tracked`, or `lost` after `lost_after` consecutive frames without a
confident mask (empty, or scoring below `min_score`); it is removed after `remove_after` such
frames (0: never). A lost object keeps being searched where it was last seen (its last confident
mask prompts the frame) and is tracked again, with its id, when found. Frames without a confident
mask publish an empty mask rather than whatever the prompt selected.

Re-identification: an object that follows its mask keeps an appearance memory, the reference
tokens of its mask on one of its own confident frames (SEEM's referring-region path: the tokens
an example region gives), taken on its first confident frame, after a refinement and every
`reidentify_every` confident frames. Once lost, every `reidentify_every`-th frame it is searched by that
appearance anywhere in the image instead of where it was last seen (mode `reidentification`),
and a mask scoring at least `reidentify_min_score` brings it back with its id, from wherever it
re-entered the view.
With `follow_memory`, following objects also attend their previous mask through SEEM's memory
queries: 32 more queries per object (on a 2-core CPU, 16 followed objects cost 2.9x one object
with it, 1.7-2.3x without). The official mask propagation prompts with the previous mask alone, as
the default does.

Text objects are grounded by their text every `ground_every` frames (1: every frame) and follow
their last mask in between (a visual row: 3 queries instead of 101, without the text), and are
grounded again at once when their last score fell below `reground_below`.

Categories ("track the cups"): every frame, the object queries look for the category in the same
decoder pass (the category as their vocabulary). Instances scoring at least `detection_threshold`
are matched to the category's tracks by mask IoU (optimal assignment, at least `match_iou`); a
matched track takes the instance's mask (mode `detection`), an unmatched instance starts a new
track with its own id, an unmatched track follows its last mask (and may become lost). Two tracks
of a category whose masks overlap by more than `merge_iou` are one object: the newer is merged
into the older id.

Edits (add, refine, remove, clear, reset) may come from any thread at any time. `step` works on a
snapshot of the objects and writes its results back only where no edit arrived meanwhile, so an
edit made while a frame is being segmented takes effect from the next frame and is never lost.
Object ids are unique for the lifetime of the process, across trackers and reconfigurations.
"""
import dataclasses
import threading
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from seem_ros.inference.predictor import MaskResult, SeemPredictor
from seem_ros.inference.visual_prompt import VisualPrompt, merge_prompts
from seem_ros.model.visual_sampler import SpatialPrompt
from seem_ros.tracking.association import mask_iou, match_by_iou
from seem_ros.tracking.naming import same_object
from seem_ros.tracking.objects import (LOST, REMOVED, TRACKED, Added, FrameObject, TrackedObject, new_object_id,
                                      object_query)
from seem_ros.tracking.places import Place

MAX_CATEGORIES = 16  # category commands tracked at once: each is a row of every frame's vocabulary


class ObjectTracker:
    def __init__(self, max_objects: int = 16, lost_after: int = 3, remove_after: int = 150, min_score: float = 0.0,
                 detection_threshold: float = 0.5, match_iou: float = 0.3, merge_iou: float = 0.8,
                 ground_every: int = 1, reground_below: float = 0.0, follow_memory: bool = False,
                 reidentify_every: int = 10, reidentify_min_score: float = 0.8):
        if ground_every < 1:
            raise ValueError(f"ground_every must be at least 1, not {ground_every}")
        if reidentify_every < 0:
            raise ValueError(f"reidentify_every must be at least 0 (0 = never), not {reidentify_every}")
        if lost_after < 1 or remove_after < 0:
            raise ValueError(f"lost_after must be at least 1 and remove_after at least 0 (0 = never), "
                             f"not {lost_after} and {remove_after}")
        self.max_objects = max_objects
        self.lost_after = lost_after
        self.remove_after = remove_after
        self.min_score = min_score
        self.detection_threshold = detection_threshold
        self.match_iou = match_iou
        self.merge_iou = merge_iou
        self.ground_every = ground_every
        self.reground_below = reground_below
        self.follow_memory = follow_memory
        self.reidentify_every = reidentify_every
        self.reidentify_min_score = reidentify_min_score
        self._categories: Dict[str, str] = {}  # category noun -> label of its tracks
        self._objects: Dict[int, TrackedObject] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------ editing (any thread)
    def add(self, label: str, text: str = "", visual: Optional[VisualPrompt] = None,
            reference: Optional[SpatialPrompt] = None, track: bool = True) -> Added:
        """A text-only object whose text names a tracked text-only object is not added twice."""
        with self._lock:
            existing = self._find_text(text) if visual is None and reference is None else None
            if existing is not None:
                return Added(existing, True)
            self._check_room(1)
            return Added(self._insert(TrackedObject(0, label, text=text, visual=visual, reference=reference,
                                                    track=track)), False)

    def add_texts(self, texts: Sequence[str]) -> List[Tuple[str, Added]]:
        """Text objects labelled by their text, all or none (when they would exceed max_objects).
        -> (text, Added) per distinct object named; a text naming a tracked object gets its id."""
        with self._lock:
            distinct: List[str] = []
            for text in texts:
                if not any(same_object(text, seen) for seen in distinct):
                    distinct.append(text)
            existing = [self._find_text(text) for text in distinct]
            self._check_room(sum(1 for object_id in existing if object_id is None))
            return [(text, Added(object_id, True) if object_id is not None
                     else Added(self._insert(TrackedObject(0, text, text=text)), False))
                    for text, object_id in zip(distinct, existing)]

    def add_category(self, noun: str, label: str) -> bool:
        """Tracks every instance of `noun` from the next frame on. -> False when it already was."""
        with self._lock:
            if noun.lower() in (n.lower() for n in self._categories):
                return False
            self._check_category_room([noun])
            self._categories[noun] = label
            return True

    def check_category_room(self, nouns: Sequence[str]) -> None:
        """Raises ValueError when tracking these nouns too would exceed MAX_CATEGORIES."""
        with self._lock:
            self._check_category_room(nouns)

    def _check_category_room(self, nouns: Sequence[str]) -> None:
        new = {n.lower() for n in nouns} - {n.lower() for n in self._categories}
        if len(self._categories) + len(new) > MAX_CATEGORIES:
            raise ValueError(f"{len(self._categories)} categories are tracked, {len(new)} more would exceed "
                             f"{MAX_CATEGORIES} (each is searched in every frame): stop tracking one first")

    def categories(self) -> Dict[str, str]:
        with self._lock:
            return dict(self._categories)

    def _find_text(self, text: str) -> Optional[int]:
        for obj in self._objects.values():
            if text and obj.text and obj.visual is None and obj.reference is None and same_object(obj.text, text):
                return obj.id
        return None

    def _check_room(self, count: int) -> None:
        if len(self._objects) + count > self.max_objects:
            raise ValueError(f"{len(self._objects)} objects tracked, {count} more would exceed "
                             f"max_objects = {self.max_objects}")

    def _insert(self, obj: TrackedObject) -> int:
        obj.id = new_object_id()
        self._objects[obj.id] = obj
        return obj.id

    def refine(self, object_id: int, visual: VisualPrompt) -> None:
        """Clicks (or strokes) on a tracked object, applied to its next frame with memory of its last
        mask. As in SEEM's interactive refinement, corrections accumulate: the object is prompted by
        its own prompt plus every correction so far (a negative click inside it cuts that part off,
        a positive one next to it extends it); an object with no visual prompt of its own (found by
        an example region) is prompted by its last mask. A lost object refined is searched anew."""
        with self._lock:
            obj = self._get(object_id)
            base = obj.visual
            if base is None and not visual.has_positive() and obj.last is not None and obj.last.mask.any():
                base = VisualPrompt(mask=obj.last.mask)
            merged = merge_prompts(base, visual)
            if not merged.has_positive():
                raise ValueError(f"object {object_id} has no mask yet: negative clicks alone cannot prompt it")
            obj.visual, obj.refinement, obj.reference = merged, merged, None
            obj.revision += 1

    def add_boxes(self, boxes: Sequence[Tuple[str, VisualPrompt]]) -> List[int]:
        """Objects for (label, visual prompt) pairs, all or none (when they would exceed max_objects)."""
        with self._lock:
            self._check_room(len(boxes))
            return [self._insert(TrackedObject(0, label, visual=visual)) for label, visual in boxes]

    def places(self) -> Dict[int, Place]:
        """Where each object is: its last confident mask and its box prompt (tracking/places.py)."""
        with self._lock:
            return {o.id: Place(o.label, o.status, o.last.mask if o.last is not None else None,
                                o.visual.box if o.visual is not None else None,
                                o.visual.image_hw if o.visual is not None else None) for o in self._objects.values()}

    def _get(self, object_id: int) -> TrackedObject:
        obj = self._objects.get(object_id)
        if obj is None:
            raise KeyError(f"no tracked object with id {object_id} (tracked: {sorted(self._objects) or 'none'})")
        return obj

    def remove_label(self, phrase: str) -> List[int]:
        """Removes the objects labelled `phrase`, and the category it names (its instances with it)."""
        with self._lock:
            for noun, label in list(self._categories.items()):
                if same_object(label, phrase) or same_object(noun, phrase):
                    del self._categories[noun]
            ids = [i for i, o in self._objects.items() if same_object(o.label, phrase)]
            for i in ids:
                del self._objects[i]
            return ids

    def clear(self) -> None:
        with self._lock:
            self._objects.clear()
            self._categories.clear()

    def reset(self) -> None:
        """Forget what was seen: objects found by text or by a reference region are searched afresh;
        objects known only from their previous masks are dropped."""
        with self._lock:
            for obj in list(self._objects.values()):
                if not obj.text and obj.reference is None:
                    del self._objects[obj.id]
                else:
                    obj.last, obj.visual, obj.refinement, obj.following = None, None, None, False
                    obj.appearance = None
                    obj.revision += 1

    def to(self, device) -> None:
        """Moves the objects' tensors (previous mask logits and input-size mask, example-region and
        appearance tokens) to `device`."""
        with self._lock:
            for obj in self._objects.values():
                if obj.last is not None:
                    input_mask = obj.last.input_mask
                    obj.last = dataclasses.replace(obj.last, low_res_logits=obj.last.low_res_logits.to(device),
                                                   input_mask=None if input_mask is None else input_mask.to(device))
                if obj.reference is not None:
                    obj.reference = obj.reference.to(device)
                if obj.appearance is not None:
                    obj.appearance = obj.appearance.to(device)

    def labels(self) -> Dict[int, str]:
        with self._lock:
            return {i: o.label for i, o in self._objects.items()}

    def __len__(self) -> int:
        with self._lock:
            return len(self._objects)

    # ------------------------------------------------------------ per frame (one worker thread)
    def step(self, predictor: SeemPredictor) -> List[FrameObject]:
        """Segment every tracked object in the image last given to predictor.set_image()."""
        with self._lock:
            objects = [dataclasses.replace(o) for o in self._objects.values()]
            categories = dict(self._categories)
        results, detections = self._segment(predictor, objects, list(categories))
        new_tracks = self._associate(objects, results, detections, list(categories))
        appearances = self._appearances(predictor, objects, results)
        frame_objects = []
        with self._lock:
            merged = self._merge_duplicates(objects, results)
            for snapshot in objects:
                res = results.get(snapshot.id)
                obj = self._objects.get(snapshot.id)
                if res is None or obj is None:  # removed while the frame was segmented
                    continue
                if obj.id in merged:  # the same instance as an older track: one object, the older id
                    del self._objects[obj.id]
                    frame_objects.append(FrameObject(obj.id, obj.label, np.zeros_like(res[0].mask), 0.0, REMOVED,
                                                     "merged"))
                    continue
                res, mode = res
                obj.since_grounding = 0 if mode == "grounding" else obj.since_grounding + 1
                found = self._found(res, reidentifying=mode == "reidentification")
                status = self._count(obj, found)
                if obj.revision == snapshot.revision:
                    if obj.id in appearances:  # not after an edit meanwhile (a reset forgets it)
                        obj.appearance = appearances[obj.id]
                    if found:
                        obj.last = res
                        if obj.visual is not None or obj.refinement is not None:
                            obj.following, obj.refinement = True, None  # its mask prompts the next frame
                    if not obj.track or status == REMOVED:
                        del self._objects[obj.id]
                elif found and obj.refinement is not None:  # refined meanwhile: the edit stands, the newest
                    obj.last = res  # mask is its memory (a reset, which forgot what was seen, stays forgotten)
                mask = res.mask if found else np.zeros_like(res.mask)
                frame_objects.append(FrameObject(obj.id, obj.label, mask, res.score, status, mode))
            for noun, detection in new_tracks:
                if noun not in self._categories or len(self._objects) >= self.max_objects:
                    continue  # the category was removed meanwhile, or no room: found again next frame
                obj = TrackedObject(0, self._categories[noun], category=noun, last=detection, following=True)
                self._count(obj, True)
                self._insert(obj)
                frame_objects.append(FrameObject(obj.id, obj.label, detection.mask, detection.score, TRACKED,
                                                 "detection"))
        return frame_objects

    def _associate(self, objects: List[TrackedObject], results: Dict[int, Tuple[MaskResult, str]],
                   detections: List[Tuple[int, MaskResult]], nouns: List[str]) -> List[Tuple[str, MaskResult]]:
        """Matches each category's detections to its tracks (their masks this frame, or where they
        were last seen when not found now: an instance back in view gets its old id): a matched
        track takes the detection (in `results`). -> the unmatched detections, new tracks to start."""
        new_tracks = []
        for index, noun in enumerate(nouns):
            found = [result for category, result in detections if category == index]
            tracks = [o for o in objects if o.category == noun and o.id in results]
            masks = []
            for o in tracks:
                mask = results[o.id][0].mask
                if not mask.any() and o.last is not None and o.last.mask.shape == mask.shape:
                    mask = o.last.mask
                masks.append(mask)
            pairs, unmatched, _ = match_by_iou([r.mask for r in found], masks, self.match_iou)
            for d, t in pairs:
                results[tracks[t].id] = (found[d], "detection")
            new_tracks += [(noun, found[d]) for d in unmatched]
        return new_tracks

    def _merge_duplicates(self, objects: List[TrackedObject], results: Dict[int, Tuple[MaskResult, str]]) -> set:
        """Ids of category tracks whose mask this frame overlaps an older track's of the same category
        by more than merge_iou."""
        merged = set()
        tracks = sorted((o for o in objects if o.category and o.id in results), key=lambda o: o.id)
        for i, newer in enumerate(tracks):
            for older in tracks[:i]:
                if older.category == newer.category and older.id not in merged and mask_iou(
                        [results[older.id][0].mask], [results[newer.id][0].mask])[0, 0] > self.merge_iou:
                    merged.add(newer.id)
                    break
        return merged

    def _count(self, obj: TrackedObject, found: bool) -> str:
        """Updates the object's counters with this frame's outcome; -> its status."""
        obj.age += 1
        if found:
            obj.hits += 1
            obj.misses = 0
            obj.status = TRACKED
        else:
            obj.misses += 1
            if obj.misses >= self.lost_after:
                obj.status = LOST
            if self.remove_after and obj.misses >= self.remove_after:
                return REMOVED
        return obj.status

    def _appearances(self, predictor: SeemPredictor, objects: List[TrackedObject],
                     results: Dict[int, Tuple[MaskResult, str]]) -> Dict[int, SpatialPrompt]:
        """New appearance memories of objects that follow their mask (not category tracks: their
        detections find them), found confidently in this frame: on their first confident frame,
        after a refinement, and every reidentify_every confident frames."""
        if not self.reidentify_every:
            return {}
        due = []
        for o in objects:
            result, mode = results.get(o.id, (None, ""))
            follows = (o.visual is not None or o.refinement is not None or o.following) and not o.category
            if (follows and result is not None and self._found(result, reidentifying=True)  # good enough to find it by
                    and (o.appearance is None or mode == "refinement" or o.hits % self.reidentify_every == 0)):
                due.append(o.id)
        return dict(zip(due, predictor.appearance([results[i][0] for i in due]))) if due else {}

    def _found(self, result: MaskResult, reidentifying: bool) -> bool:
        """A confident mask: not empty and scoring at least min_score (and reidentify_min_score for a
        mask found by appearance)."""
        least = max(self.min_score, self.reidentify_min_score) if reidentifying else self.min_score
        return bool(result.mask.any()) and result.score >= least

    def _searches_now(self, obj: TrackedObject) -> bool:
        """Whether a lost object is searched by its appearance this frame (else where it was last seen)."""
        return (obj.status == LOST and obj.appearance is not None and obj.following and self.reidentify_every > 0
                and (obj.misses - self.lost_after) % self.reidentify_every == 0)

    def _grounds_now(self, obj: TrackedObject) -> bool:
        """Whether a text object's text chooses its mask this frame (else it follows its last mask)."""
        return (obj.last is None or obj.since_grounding + 1 >= self.ground_every
                or obj.last.score < self.reground_below)

    def _segment(self, predictor: SeemPredictor, objects: List[TrackedObject], categories: List[str]
                 ) -> Tuple[Dict[int, Tuple[MaskResult, str]], List[Tuple[int, MaskResult]]]:
        """Every object, and the categories' instances, in one frame-engine pass.
        -> (id: (result, what found it), [(category index, instance)])."""
        if not objects and not categories:
            return {}, []
        asked = [object_query(predictor, obj, self._grounds_now(obj), self._searches_now(obj)) for obj in objects]
        queries = [query for query, _ in asked]
        following = [i for i, query in enumerate(queries) if query is None]
        previous = [objects[i].last for i in following]
        # text + visual objects follow with their text; text objects between groundings without it
        texts = [objects[i].text if objects[i].visual is not None else "" for i in following]
        for i, query in zip(following, predictor.follow_queries(previous, texts,
                                                                memories=previous if self.follow_memory else None)):
            queries[i] = query
        if categories:
            results, detections = predictor.decode_and_detect(queries, categories, self.detection_threshold)
        else:
            results, detections = predictor.decode(queries), []
        return {obj.id: (result, mode) for obj, result, (_, mode) in zip(objects, results, asked)}, detections

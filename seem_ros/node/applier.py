"""Applies the prompt queue to the tracker: one thread, requests in arrival order.

Each request is applied whole or refused whole (a refused request changes nothing), and ends with
a logged outcome and a count. Prompts with pixel coordinates are checked against the size of the
newest camera frame, so they wait (in order) until the first frame has arrived. The frame in
flight is not affected: edits take effect from the next frame (see tracking.tracker).
"""
from dataclasses import dataclass, field
from typing import Callable, List, Tuple

import numpy as np

from seem_ros.inference.visual_prompt import VisualPrompt
from seem_ros.model.visual_sampler import SpatialPrompt
from seem_ros.node.loop_thread import LoopThread
from seem_ros.prompts.queue import PromptQueue, PromptRequest
from seem_ros.prompts.text_commands import CommandError, parse_command, read_phrase
from seem_ros.ros_in.detections import detection_boxes
from seem_ros.ros_in.image_conversion import ImageLimits
from seem_ros.ros_in.latest_frame import ImageSize
from seem_ros.ros_in.prompt_messages import PromptError, check_pixel, parse_prompt
from seem_ros.throttled_log import ThrottledLog
from seem_ros.tracking.objects import Added
from seem_ros.tracking.places import lost_object_at, objects_holding
from seem_ros.tracking.tracker import ObjectTracker


DETECTION_MATCH_IOU = 0.5  # a detector's box overlapping a tracked object of its label this much is that object


@dataclass
class Outcome:
    applied: bool
    message: str
    ids: List[int] = field(default_factory=list)
    changed: bool = True  # False: applied, nothing changed (logged at debug: a detector repeats itself every frame)


class PromptApplier:
    def __init__(self, queue: PromptQueue, tracker: ObjectTracker, image_size: ImageSize,
                 encode_reference: Callable[[np.ndarray, np.ndarray], SpatialPrompt], log: ThrottledLog,
                 image_limits: ImageLimits = ImageLimits()):
        self.queue = queue
        self.tracker = tracker
        self.image_size = image_size
        self.encode_reference = encode_reference
        self.log = log
        self.image_limits = image_limits
        self._loop = LoopThread("seem_prompts", self._apply_settled,
                                lambda exc: self.log.exception("prompt applier", exc, first_traceback_as_error=True))
        self._handlers = {"command": self._command, "click": self._click, "prompt": self._prompt,
                          "detections": self._detections, "clear": self._clear, "reset": self._reset}

    # ------------------------------------------------------------ thread
    def start(self) -> None:
        self._loop.start()

    def stop(self, timeout: float) -> bool:
        """Stops the thread; requests still queued are refused. False if it did not stop in time."""
        if not self._loop.stop(timeout):
            return False
        for request in self.queue.clear():
            if _claim(request):
                self._finish(request, Outcome(False, "the node is shutting down or being reconfigured"))
        return True

    def _apply_settled(self) -> None:
        batch = self.queue.take_settled(timeout=0.1)
        for i, request in enumerate(batch):
            if request.needs_image_size and self.image_size.get() is None:
                # in order: this and everything after it wait for the first camera frame
                self.queue.put_back(batch[i:])
                self.image_size.wait(0.1)
                return
            self.apply(request)

    # ------------------------------------------------------------ requests
    def apply(self, request: PromptRequest) -> Outcome:
        if not _claim(request):
            return Outcome(False, "cancelled: the caller stopped waiting")  # counted when it was cancelled
        try:
            outcome = self._handlers[request.kind](request.payload)
        except (PromptError, CommandError, ValueError) as exc:
            outcome = Outcome(False, str(exc))
        except KeyError as exc:
            outcome = Outcome(False, str(exc.args[0]))
        except Exception as exc:  # noqa: BLE001 - an unexpected failure refuses this request, not the node
            self.log.exception(f"{request.kind} prompt failed", exc)
            outcome = Outcome(False, f"internal error: {type(exc).__name__}: {exc}")
        self._finish(request, outcome)
        return outcome

    def _finish(self, request: PromptRequest, outcome: Outcome) -> None:
        self.queue.finished(outcome.applied)
        if outcome.applied:
            (self.log.logger.info if outcome.changed else self.log.logger.debug)(
                f"{request.kind} applied: {outcome.message}")
        else:
            self.log.warning(f"{request.kind} refused: {outcome.message}")
        if request.reply is not None:
            request.reply.set_result(outcome)

    def _objects_now(self) -> str:
        return f"objects now {self.tracker.labels() or 'none'}"

    def _command(self, text: str) -> Outcome:
        command = parse_command(text)
        if command.action == "clear":
            self.tracker.clear()
            return Outcome(True, f"{text!r}: all objects removed")
        if command.action == "remove":
            removed = {phrase: self.tracker.remove_label(phrase) for phrase in command.phrases}
            missing = [phrase for phrase, ids in removed.items() if not ids]
            if len(missing) == len(removed):
                raise CommandError(f"{text!r}: no such object (tracked: "
                                   f"{list(self.tracker.labels().values()) or 'none'})")
            note = f"; not tracked: {missing}" if missing else ""
            return Outcome(True, f"{text!r}: removed {sorted(i for ids in removed.values() for i in ids)}{note}; "
                                 f"{self._objects_now()}", [i for ids in removed.values() for i in ids])
        readings = [(phrase, read_phrase(phrase)) for phrase in command.phrases]
        self.tracker.check_category_room([reading.noun for _, reading in readings if reading.category])  # all or none
        singles = [phrase for phrase, reading in readings if not reading.category]
        added = self.tracker.add_texts(singles) if singles else []
        categories = [(phrase, self.tracker.add_category(reading.noun, phrase))
                      for phrase, reading in readings if reading.category]
        described = "; ".join(filter(None, [_describe(added), ", ".join(
            f"every {phrase!r} tracked" + ("" if new else " (already)") for phrase, new in categories)]))
        return Outcome(True, f"{text!r}: {described}; {self._objects_now()}", [a.id for _, a in added])

    def _click(self, payload: Tuple[float, float, str]) -> Outcome:
        x, y, source = payload
        size = self.image_size.get()
        x, y = check_pixel(x, y, size, source)
        click = VisualPrompt(points=[(x, y, 1)], image_hw=size)
        lost = lost_object_at(self.tracker.places(), x, y, size)
        if lost is not None:  # where a lost object was last seen: it is searched there with this click
            self.tracker.refine(lost, click)
            return Outcome(True, f"{source} at ({x:.1f}, {y:.1f}) -> lost object {lost} searched there", [lost])
        added = self.tracker.add("object", visual=click)
        return Outcome(True, f"{source} at ({x:.1f}, {y:.1f}) -> object {added.id}", [added.id])

    def _prompt(self, payload: Tuple[object, bool]) -> Outcome:
        msg, replace = payload
        if replace and msg.object_id:
            raise PromptError("replace=true cannot refine object_id: replacing would remove the object first")
        parsed = parse_prompt(msg, self.image_size.get(), self.image_limits)
        if parsed.object_id:
            if parsed.visual is None:
                raise PromptError("refining an object needs clicks, a box, scribbles or a mask")
            self.tracker.refine(parsed.object_id, parsed.visual)
            return Outcome(True, f"object {parsed.object_id} refined", [parsed.object_id])
        reference = self.encode_reference(*parsed.reference) if parsed.reference is not None else None
        if replace:  # only once the new prompt is known to be usable
            self.tracker.clear()
        added = self.tracker.add(parsed.label, text=parsed.text, visual=parsed.visual, reference=reference,
                                 track=parsed.track)
        return Outcome(True, f"{_describe([(parsed.label, added)])}; {self._objects_now()}", [added.id])

    def _detections(self, msg) -> Outcome:
        """A detector's boxes (vision_msgs/Detection2DArray): each becomes a tracked object labelled
        by its class id, unless an object of that label already holds the box."""
        size = self.image_size.get()
        boxes = detection_boxes(msg, size)
        held = objects_holding(self.tracker.places(), boxes, size, DETECTION_MATCH_IOU)
        new = [(label, VisualPrompt(box=box, image_hw=size)) for (label, box), holder in zip(boxes, held)
               if holder is None]
        ids = self.tracker.add_boxes(new) if new else []
        known = sorted({object_id for object_id in held if object_id is not None})
        message = (f"{len(boxes)} detections: " + (f"new objects {ids}" if ids else "no new object")
                   + (f", already tracked {known}" if known else "") + f"; {self._objects_now()}")
        return Outcome(True, message, ids + known, changed=bool(ids))

    def _clear(self, _payload) -> Outcome:
        self.tracker.clear()
        return Outcome(True, "all prompts cleared")

    def _reset(self, _payload) -> Outcome:
        self.tracker.reset()
        return Outcome(True, f"tracking reset; {self._objects_now()}")


def _claim(request: PromptRequest) -> bool:
    """False when a service caller cancelled the request (it timed out waiting)."""
    return request.reply is None or request.reply.set_running_or_notify_cancel()


def _describe(added: List[Tuple[str, Added]]) -> str:
    return ", ".join(f"{label!r} is already tracked as object {a.id}" if a.existing else f"{label!r} -> object {a.id}"
                     for label, a in added)

"""~/segment_image: one image segmented on demand, beside the camera stream (segment_once); no
tracking state is touched."""
import contextlib
import time
from typing import Iterator

import torch
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup

from seem_ros.srv import SegmentImage

from seem_ros.inference.predictor import SeemPredictor
from seem_ros.node.one_shot import segment_once
from seem_ros.node.shared_model import SharedModel
from seem_ros.ros_in.image_conversion import ImageConversionError, ImageLimits, image_to_rgb
from seem_ros.ros_in.prompt_messages import PromptError, parse_prompt
from seem_ros.ros_out.publishers import result_message
from seem_ros.throttled_log import ThrottledLog, failed_response, guarded


class SegmentImageService:
    """The service; `calls` counts the calls running (they would outlive a shutdown unnoticed)."""

    def __init__(self, node, model: SharedModel, image_limits: ImageLimits, log: ThrottledLog, rle: bool):
        self.node = node
        self.model = model
        self.image_limits = image_limits
        self.log = log
        self.rle = rle
        self.calls = 0
        self._service = node.create_service(
            SegmentImage, "~/segment_image", guarded(log, "segment_image", self._on_request, failed_response),
            callback_group=MutuallyExclusiveCallbackGroup())

    def destroy(self) -> None:
        self.node.destroy_service(self._service)

    def _on_request(self, request, response):
        self.calls += 1
        try:
            self.model.check_engines_on_the_gpu()
            rgb = image_to_rgb(request.image, self.image_limits)
            prompt = request.prompt
            parsed = parse_prompt(prompt, rgb.shape[:2], self.image_limits) if _has_prompt(prompt) else None
            start = time.perf_counter()
            objects = self.model.run(_segment_on_demand, rgb, parsed)
            response.result = result_message(request.image.header, rgb.shape[0], rgb.shape[1], objects,
                                             time.perf_counter() - start, self.rle)
            response.success, response.message = True, f"{len(objects)} objects"
        except (ImageConversionError, PromptError, ValueError) as exc:
            response.success, response.message = False, str(exc)
            self.log.warning(f"segment_image refused: {exc}")
        except torch.cuda.OutOfMemoryError as exc:
            torch.cuda.empty_cache()
            response.success, response.message = False, f"out of GPU memory: {exc}"
            self.log.exception("segment_image", exc)
        finally:
            self.calls -= 1
        return response


def _segment_on_demand(predictor: SeemPredictor, rgb, parsed):
    with _one_shot_path(predictor):
        return segment_once(predictor, rgb, parsed)


@contextlib.contextmanager
def _one_shot_path(predictor: SeemPredictor) -> Iterator[None]:
    """An image on demand never exports, builds or captures a graph inside the service callback
    (camera frames and prompt services would wait minutes on a Jetson, and every new size would stay
    cached): with the stream's canvas set, it is letterboxed into it and the stream's graphs or
    engines serve it; before one is set, it runs on the torch path, padded on its own."""
    if predictor.canvas is not None:
        yield
        return
    saved = predictor.image_encoder, predictor.engine.run_slots
    predictor.image_encoder, predictor.engine.run_slots = predictor.model.encode_image, predictor.engine.decode_slots
    try:
        yield
    finally:
        predictor.image_encoder, predictor.engine.run_slots = saved


def _has_prompt(msg) -> bool:
    return bool(msg.text.strip() or msg.positive_points or msg.negative_points or len(msg.boxes) or msg.scribbles
                or msg.mask.width or msg.reference_image.width)

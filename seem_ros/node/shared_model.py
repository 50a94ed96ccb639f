"""The configured predictor, shared by the frame worker, the prompt applier (example regions) and
the segment_image service: every use runs on the node's torch thread (runtime.torch_thread: one
OpenMP team in the process, and one user at a time), inside the backend's inference context, and
on the GPU only while the node is active (yolo_ros: nothing stays on the GPU when deactivated)."""
from typing import Callable, Optional, TypeVar

from seem_ros.inference.predictor import SeemPredictor
from seem_ros.model.visual_sampler import SpatialPrompt
from seem_ros.ros_in.prompt_messages import PromptError
from seem_ros.runtime.backends import BackendConfig, inference_context, move_predictor
from seem_ros.runtime.torch_thread import TorchThread
from seem_ros.tracking.tracker import ObjectTracker

T = TypeVar("T")


class SharedModel:
    def __init__(self, predictor: SeemPredictor, cfg: BackendConfig, torch_thread: TorchThread):
        """torch_thread: the thread that loaded the predictor, which runs it from now on."""
        self.predictor = predictor
        self.cfg = cfg
        self.torch_thread = torch_thread
        self.active = False  # set by the node between activate and deactivate

    def run(self, job: Callable[..., T], *args) -> T:
        """job(predictor, *args) on the torch thread, inside the backend's inference context, after
        the jobs handed over before it; returns its result or raises its exception."""
        return self.torch_thread.call(self._in_context, job, args)

    def _in_context(self, job: Callable[..., T], args: tuple) -> T:
        with inference_context(self.cfg):
            return job(self.predictor, *args)

    def place(self, active: bool, tracker: Optional[ObjectTracker] = None) -> None:
        """The model (and the tracker's tensors) on the configured CUDA device while active, on the
        host otherwise; waits for a frame still running to finish."""
        if self.cfg.device.startswith("cuda"):
            self.torch_thread.call(self._move, self.cfg.device if active else "cpu", tracker)

    def _move(self, device: str, tracker: Optional[ObjectTracker]) -> None:
        move_predictor(self.predictor, device)
        if tracker is not None:
            tracker.to(device)

    def check_engines_on_the_gpu(self) -> None:
        """TensorRT engines run on the GPU only, where the model is only while the node is active."""
        if not self.active and self.cfg.backend == "tensorrt":
            raise PromptError("the node is inactive: its TensorRT engines run only while it is active (the model "
                              "is off the GPU); activate it first")

    def encode_reference(self, rgb, mask) -> SpatialPrompt:
        """An example region's reference tokens (the prompt applier's SegmentationPrompt.reference)."""
        self.check_engines_on_the_gpu()
        return self.run(lambda predictor: predictor.encode_reference(rgb, mask))

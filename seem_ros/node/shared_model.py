"""The configured predictor, shared by the frame worker, the prompt applier (example regions) and
the segment_image service: one user at a time, always inside the backend's inference context, and
on the GPU only while the node is active (yolo_ros: nothing stays on the GPU when deactivated)."""
import contextlib
import threading
from typing import Iterator, Optional

from seem_ros.inference.predictor import SeemPredictor
from seem_ros.model.visual_sampler import SpatialPrompt
from seem_ros.ros_in.prompt_messages import PromptError
from seem_ros.runtime.backends import BackendConfig, inference_context, move_predictor
from seem_ros.tracking.tracker import ObjectTracker


class SharedModel:
    def __init__(self, predictor: SeemPredictor, cfg: BackendConfig):
        self.predictor = predictor
        self.cfg = cfg
        self.lock = threading.Lock()
        self.active = False  # set by the node between activate and deactivate

    @contextlib.contextmanager
    def use(self) -> Iterator[SeemPredictor]:
        with self.lock, inference_context(self.cfg):
            yield self.predictor

    def place(self, active: bool, tracker: Optional[ObjectTracker] = None) -> None:
        """The model (and the tracker's tensors) on the configured CUDA device while active, on the
        host otherwise; waits for a user of the model to finish."""
        if self.cfg.device.startswith("cuda"):
            device = self.cfg.device if active else "cpu"
            with self.lock:
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
        with self.use() as predictor:
            return predictor.encode_reference(rgb, mask)

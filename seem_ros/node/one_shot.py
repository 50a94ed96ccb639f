"""One image segmented on demand, for the segment_image service (no ROS here: the GPU checks run it
where ROS is not installed)."""
from typing import List, Optional

import cv2
import numpy as np

from seem_ros.inference.predictor import SeemPredictor
from seem_ros.ros_in.prompt_messages import ParsedPrompt
from seem_ros.tracking.objects import FrameObject
from seem_ros.tracking.tracker import ObjectTracker


def segment_once(predictor: SeemPredictor, rgb: np.ndarray, prompt: Optional[ParsedPrompt]) -> List[FrameObject]:
    """The prompt's object in `rgb`, or, without a prompt, everything (panoptic segments, whose ids
    are segment numbers of this image)."""
    reference = predictor.encode_reference(*prompt.reference) if prompt and prompt.reference is not None else None
    predictor.set_image(rgb)
    if prompt is None:
        panoptic, _ = predictor.segment_everything()
        ids = panoptic.id_map.cpu().numpy()
        if ids.shape != rgb.shape[:2]:
            ids = cv2.resize(ids.astype(np.int32), (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_NEAREST)
        names = predictor.class_names
        return [FrameObject(s.id, names[s.category_id], ids == s.id, s.score) for s in panoptic.segments]
    tracker = ObjectTracker(max_objects=1)
    tracker.add(prompt.label, text=prompt.text, visual=prompt.visual, reference=reference)
    return tracker.step(predictor)

"""No autograd on a frame (issue 15, item 9): the loaded model's parameters need no gradient and the
frame path (the node's frame worker and `seem-ros track` run under backends.inference_context)
produces no tensor with an autograd graph, whatever kinds of objects are tracked."""
import numpy as np
from PIL import Image

from conftest import held_tensors, reference_path, tiny_backend_config
from seem_ros.inference.visual_prompt import VisualPrompt
from seem_ros.runtime.backends import create_predictor, inference_context
from seem_ros.tracking.tracker import ObjectTracker
from seem_ros.weights import load_seem


def _rgb(name):
    return np.asarray(Image.open(reference_path("images", name)).convert("RGB"))


def test_a_loaded_model_needs_no_gradient(tiny_config):
    model = load_seem(str(reference_path("tiny", "tiny_seem.pt")), tiny_config)
    assert not [name for name, p in model.named_parameters() if p.requires_grad]


def test_no_tensor_a_frame_produces_carries_an_autograd_graph():
    cfg = tiny_backend_config(vocabulary=("zebra", "grass"))
    predictor = create_predictor(cfg)
    tracker = ObjectTracker()
    example = _rgb("zebras1.jpg")
    region = np.zeros(example.shape[:2], bool)
    region[60:200, 80:300] = True
    with inference_context(cfg):
        tracker.add("zebra", text="the zebra")
        tracker.add("clicked", visual=VisualPrompt(points=[(120, 90, 1)]))
        tracker.add("example", reference=predictor.encode_reference(example, region))
        tracker.add_category("zebra", "zebras")
        for name in ("zebras1.jpg", "zebras2.jpg"):
            predictor.set_image(_rgb(name))
            objects = tracker.step(predictor)
    produced = held_tensors([predictor.frame, list(tracker._objects.values()), objects])
    assert len(produced) > 20
    assert [t.shape for t in produced if t.requires_grad or t.grad_fn is not None] == []

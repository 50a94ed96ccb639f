"""The visual prompts of the single-prompt parity cases, shared by the engine tests."""
import numpy as np
from PIL import Image

from conftest import reference_path
from seem_ros.inference.visual_prompt import VisualPrompt

# official demo cases: the prompt as the demo draws it
DEMO_PROMPTS = {
    "c_demo_point": lambda case: VisualPrompt(points=[(300, 300, 1)]),
    "c_demo_scribble": lambda case: VisualPrompt(scribbles=[[(250, 250), (400, 330)]]),
    "c_demo_box_filled": lambda case: VisualPrompt(box=(200, 150, 450, 420)),
    "c_demo_mask_river": lambda case: VisualPrompt(
        mask=np.asarray(Image.open(reference_path("images", "river1_mask.png")))[:, :, 0]),
    "g_video_maskprop_f0_to_f1": lambda case: VisualPrompt(mask=case["input/rand_shape"][0, 0] > 0),
}
# official interactive evaluation (DAVIS dog frame): the sampler's first-round mask
EVAL_CASES = ("c_eval_point", "c_eval_box", "c_eval_scribble", "c_eval_circle", "c_eval_polygon")
DOG = "davis/JPEGImages/480p/dog/00000.jpg"


def eval_prompt(case) -> VisualPrompt:
    return VisualPrompt(mask=case["input/rand_shape"][0, 0])


def every_kind_of_object(predictor):
    """On zebras2: a text, clicks with memory, text + box, a followed mask, an example region (from
    zebras1) and a second text, with the predictor's own draws."""
    reference_rgb = np.asarray(Image.open(reference_path("images", "zebras1.jpg")).convert("RGB"))
    region = np.zeros(reference_rgb.shape[:2], bool)
    region[60:200, 80:300] = True
    predictor.set_image(np.asarray(Image.open(reference_path("images", "zebras2.jpg")).convert("RGB")))
    reference = predictor.encode_reference(reference_rgb, region)
    clicked = predictor.decode([predictor.visual_query(VisualPrompt(points=[(120, 90, 1)]))])[0]
    return [predictor.text_query("the zebra"),
            predictor.visual_query(VisualPrompt(points=[(120, 90, 1), (20, 20, 0)]), memory=clicked),
            predictor.visual_query(VisualPrompt(box=(30, 20, 200, 150)), text="striped animal"),
            predictor.follow_query(clicked),
            predictor.reference_query(reference),
            predictor.text_query("the grass and the sky")]

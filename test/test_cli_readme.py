"""The README's model API example, run as written (the tiny reference checkpoint and images of the
fixtures in place of the released checkpoint and the user's pictures)."""
import re

import numpy as np
from PIL import Image

from conftest import REPO, reference_path


def test_the_readme_model_api_example_runs():
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## The model API"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    tiny = reference_path("tiny")
    replaced = {'load_seem("seem_focalt_v1.pt", "focalt_v1"': f'load_seem({str(tiny / "tiny_seem.pt")!r}, '
                                                              f'{str(tiny / "tiny_config.yaml")!r}',
                '"kitchen.jpg"': repr(str(reference_path("images", "zebras1.jpg")))}
    for old, new in replaced.items():
        assert old in code, f"the README example no longer has {old}"
        code = code.replace(old, new)
    example_rgb = np.asarray(Image.open(reference_path("images", "zebras2.jpg")).convert("RGB"))
    example_mask = np.zeros(example_rgb.shape[:2], bool)
    example_mask[100:200, 150:300] = True
    namespace = {"example_rgb": example_rgb, "example_mask": example_mask, "next_frame": example_rgb}
    exec(compile(code, "README.md (The model API)", "exec"), namespace)
    assert namespace["cup"].mask.shape == (535, 1024) and 0.0 <= namespace["cup"].score <= 1.0
    assert namespace["refined"].mask.shape == namespace["clicked"].mask.shape
    assert namespace["same_object"].mask.shape == example_rgb.shape[:2]

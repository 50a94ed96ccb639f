"""Makes demo/zebras_pan/: a simulated camera panning across the official SEEM demo photo
demo/seem/examples/zebras1.jpg (UX-Decoder/Segment-Everything-Everywhere-All-At-Once, Apache-2.0),
so that the demo has a short real-image camera sequence that may be redistributed.

    python scripts/make_demo_sequence.py zebras1.jpg demo/zebras_pan
"""
import os
import sys

import cv2
import numpy as np

FRAMES = 12
WINDOW = (640, 360)  # width, height: a 16:9 camera


def main(source: str, out_dir: str) -> None:
    photo = cv2.imread(source)
    height, width = photo.shape[:2]
    os.makedirs(out_dir, exist_ok=True)
    for i, t in enumerate(np.linspace(0.0, 1.0, FRAMES)):
        x = int(round(t * (width - WINDOW[0])))  # left to right
        y = int(round((height - WINDOW[1]) * (0.3 + 0.4 * t)))  # and slightly down
        crop = photo[y:y + WINDOW[1], x:x + WINDOW[0]]
        cv2.imwrite(os.path.join(out_dir, f"{i:04d}.jpg"), crop, [cv2.IMWRITE_JPEG_QUALITY, 90])


if __name__ == "__main__":
    main(*sys.argv[1:3])

"""Camera message conversion against hand-made sensor_msgs messages."""
import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image

from seem_ros.ros_in import image_conversion
from seem_ros.ros_in.image_conversion import ImageConversionError, compressed_to_rgb, convert_image, image_to_rgb

RNG = np.random.default_rng(7)


def make_image(pixels: np.ndarray, encoding: str, pad: int = 0, bigendian: bool = False) -> Image:
    """Builds a message like a camera driver would, with `pad` junk bytes at the end of each row."""
    h, w = pixels.shape[:2]
    arr = pixels.astype(pixels.dtype.newbyteorder(">" if bigendian else "<"))
    rows = arr.reshape(h, -1).view(np.uint8).reshape(h, -1)
    padded = np.concatenate([rows, np.full((h, pad), 0xAB, np.uint8)], axis=1)
    msg = Image(height=h, width=w, encoding=encoding, is_bigendian=int(bigendian), step=padded.shape[1])
    msg.data = padded.tobytes()
    return msg


@pytest.mark.parametrize("pad", [0, 3])
def test_rgb8_with_row_padding(pad):
    rgb = RNG.integers(0, 255, (5, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(image_to_rgb(make_image(rgb, "rgb8", pad)), rgb)


def test_bgr_and_alpha_orders():
    rgb = RNG.integers(0, 255, (4, 6, 3), dtype=np.uint8)
    alpha = np.full((4, 6, 1), 9, np.uint8)
    np.testing.assert_array_equal(image_to_rgb(make_image(rgb[..., ::-1].copy(), "bgr8")), rgb)
    np.testing.assert_array_equal(image_to_rgb(make_image(np.concatenate([rgb, alpha], 2), "rgba8")), rgb)
    bgra = np.concatenate([rgb[..., ::-1], alpha], 2)
    np.testing.assert_array_equal(image_to_rgb(make_image(bgra, "bgra8", pad=4)), rgb)


def test_mono8_is_replicated():
    gray = RNG.integers(0, 255, (3, 5), dtype=np.uint8)
    out = image_to_rgb(make_image(gray[..., None], "mono8", pad=1))
    assert out.shape == (3, 5, 3) and (out == gray[..., None]).all()


@pytest.mark.parametrize("encoding", ["mono16", "16UC1"])
@pytest.mark.parametrize("bigendian", [False, True])
def test_16bit_scaled_and_endianness(encoding, bigendian):
    depth = np.array([[0, 1000], [2000, 4000]], np.uint16)
    out = image_to_rgb(make_image(depth, encoding, pad=2, bigendian=bigendian))
    np.testing.assert_array_equal(out[..., 0], [[0, 63], [127, 255]])


def test_32fc1_with_nan():
    depth = np.array([[0.5, np.nan], [1.5, 2.5]], np.float32)
    out = image_to_rgb(make_image(depth, "32FC1"))
    np.testing.assert_array_equal(out[..., 0], [[0, 0], [127, 255]])


def test_yuv422_variants():
    # uniform gray: Y=100, U=V=128 -> R=G=B close to 100 (BT.601 video range as cv2 decodes it)
    uyvy = np.tile(np.array([128, 100], np.uint8), (2, 4, 1))
    yuyv = np.tile(np.array([100, 128], np.uint8), (2, 4, 1))
    expected = cv2.cvtColor(np.full((2, 4, 2), [128, 100], np.uint8), cv2.COLOR_YUV2RGB_UYVY)
    for msg in (make_image(uyvy, "yuv422"), make_image(uyvy, "uyvy", pad=2)):
        np.testing.assert_array_equal(image_to_rgb(msg), expected)
    np.testing.assert_array_equal(image_to_rgb(make_image(yuyv, "yuv422_yuy2")), expected)
    assert abs(int(expected[0, 0, 0]) - 100) <= 20 and (expected == expected[0, 0]).all()


@pytest.mark.parametrize("change, message", [
    (dict(encoding="bayer_rggb8"), "unsupported image encoding 'bayer_rggb8'"),
    (dict(step=5), "step 5 is smaller than width\\*pixel size 21"),
    (dict(height=0), "empty image"),
    (dict(height=50), "expected step\\*height"),
])
def test_bad_messages_are_explained(change, message):
    msg = make_image(RNG.integers(0, 255, (4, 7, 3), dtype=np.uint8), "rgb8")
    for key, value in change.items():
        setattr(msg, key, value)
    with pytest.raises(ImageConversionError, match=message):
        image_to_rgb(msg)


def test_odd_width_yuv_rejected():
    with pytest.raises(ImageConversionError, match="even width"):
        image_to_rgb(make_image(np.zeros((2, 3, 2), np.uint8), "uyvy"))


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_compressed(ext):
    rgb = np.zeros((16, 24, 3), np.uint8)
    rgb[:, :12] = (200, 30, 10)
    ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    msg = CompressedImage(format=ext[1:])
    msg.data = buf.tobytes()
    out = compressed_to_rgb(msg).astype(int)
    if ext == ".png":
        np.testing.assert_array_equal(out, rgb)
    else:  # lossy: compare away from the colour edge, where chroma subsampling blurs
        assert np.abs(out[:, :8] - rgb[:, :8]).max() <= 12 and np.abs(out[:, 16:]).max() <= 12


def test_corrupt_compressed():
    msg = CompressedImage(format="jpeg")
    msg.data = b"\xff\xd8 definitely not a jpeg"
    with pytest.raises(ImageConversionError, match="cannot decode"):
        compressed_to_rgb(msg)


@pytest.mark.skipif(image_conversion._CV_BRIDGE is None, reason="cv_bridge is not installed (no ROS install)")
@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"])
def test_cv_bridge_and_fallback_agree(encoding):
    channels = {"mono8": 1, "rgb8": 3, "bgr8": 3}.get(encoding, 4)
    msg = make_image(RNG.integers(0, 255, (5, 6, channels), dtype=np.uint8), encoding, pad=2)
    np.testing.assert_array_equal(image_to_rgb(msg), convert_image(msg))

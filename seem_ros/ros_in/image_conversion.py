"""sensor_msgs/Image and CompressedImage -> RGB uint8 arrays, for the encodings cameras send.

cv_bridge is used where installed (it is not on PyPI); the fallback converter follows its rules:
rows may be padded (`step` > width * pixel size), multi-byte pixels honour `is_bigendian`, and
depth / 16-bit images are scaled to 0..255 for display-like input.
Images larger than ImageLimits are refused from their header, before anything is allocated.
Works on any object with the Image fields, so it needs no ROS import.
"""
import io
from dataclasses import dataclass
from typing import Optional, Tuple

import cv2
import numpy as np


class ImageConversionError(ValueError):
    """The message cannot be read as an image; the text says why."""


@dataclass(frozen=True)
class ImageLimits:
    """Largest image accepted: the model resizes the short side to ~512 px, so an extreme aspect
    ratio (1 x 20000) would ask for a 512 x 10,240,000 input."""
    max_pixels: int = 7680 * 4320  # 8K
    max_aspect_ratio: float = 8.0

    def check(self, width: int, height: int) -> None:
        if width <= 0 or height <= 0:
            raise ImageConversionError(f"empty image: {width}x{height}")
        if width * height > self.max_pixels:
            raise ImageConversionError(f"image {width}x{height} has {width * height} pixels, more than "
                                       f"max_image_pixels = {self.max_pixels}")
        ratio = max(width, height) / min(width, height)
        if ratio > self.max_aspect_ratio:
            raise ImageConversionError(f"image {width}x{height} has aspect ratio {ratio:.1f}, more than "
                                       f"max_image_aspect_ratio = {self.max_aspect_ratio:g}")


# encoding -> (channels, numpy dtype)
_LAYOUTS = {
    "rgb8": (3, np.uint8), "bgr8": (3, np.uint8), "rgba8": (4, np.uint8), "bgra8": (4, np.uint8),
    "mono8": (1, np.uint8), "8UC1": (1, np.uint8), "8UC3": (3, np.uint8),
    "mono16": (1, np.uint16), "16UC1": (1, np.uint16), "32FC1": (1, np.float32),
    "yuv422": (2, np.uint8), "uyvy": (2, np.uint8), "yuv422_yuy2": (2, np.uint8), "yuyv": (2, np.uint8),
}
SUPPORTED_ENCODINGS = tuple(_LAYOUTS)
_CV_BRIDGE_RGB_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8")

try:  # cv_bridge is part of a ROS install, not of PyPI
    from cv_bridge import CvBridge
    _CV_BRIDGE = CvBridge()
except ImportError:
    _CV_BRIDGE = None


def _pixels(msg, limits: ImageLimits) -> Tuple[np.ndarray, str]:
    encoding = msg.encoding
    if encoding not in _LAYOUTS:
        raise ImageConversionError(f"unsupported image encoding {encoding!r} (supported: {', '.join(_LAYOUTS)})")
    channels, dtype = _LAYOUTS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    limits.check(width, height)
    if encoding in ("yuv422", "uyvy", "yuv422_yuy2", "yuyv") and width % 2:
        raise ImageConversionError(f"{encoding} needs an even width, got {width}")
    itemsize = np.dtype(dtype).itemsize
    row_bytes = width * channels * itemsize
    if step < row_bytes:
        raise ImageConversionError(f"step {step} is smaller than width*pixel size {row_bytes} for {encoding}")
    data = np.frombuffer(bytes(msg.data) if not isinstance(msg.data, (bytes, bytearray)) else msg.data, np.uint8)
    if data.size < step * height:
        raise ImageConversionError(f"data has {data.size} bytes, expected step*height = {step * height}")
    rows = data[: step * height].reshape(height, step)[:, :row_bytes]
    order = ">" if msg.is_bigendian else "<"
    pixels = np.ascontiguousarray(rows).view(np.dtype(dtype).newbyteorder(order) if itemsize > 1 else dtype)
    return pixels.reshape(height, width, channels).astype(dtype, copy=False), encoding


def _scale_to_uint8(gray: np.ndarray) -> np.ndarray:
    values = gray.astype(np.float32)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(gray.shape, np.uint8)
    low, high = float(values[finite].min()), float(values[finite].max())
    scaled = (values - low) / (high - low) * 255.0 if high > low else np.zeros_like(values)
    return np.where(finite, scaled, 0).astype(np.uint8)


def image_to_rgb(msg, limits: ImageLimits = ImageLimits()) -> np.ndarray:
    """sensor_msgs/Image -> (H, W, 3) uint8 RGB: cv_bridge for colour images where it is installed
    (a ROS install), this module's converter otherwise and for what cv_bridge cannot turn into rgb8."""
    if _CV_BRIDGE is not None and msg.encoding in _CV_BRIDGE_RGB_ENCODINGS:
        limits.check(int(msg.width), int(msg.height))
        try:
            return _CV_BRIDGE.imgmsg_to_cv2(msg, desired_encoding="rgb8")
        except Exception:  # noqa: BLE001 - fall through to our converter, whose error says what is wrong
            pass
    return convert_image(msg, limits)


def convert_image(msg, limits: ImageLimits = ImageLimits()) -> np.ndarray:
    """This module's converter (no cv_bridge)."""
    pixels, encoding = _pixels(msg, limits)
    if encoding in ("rgb8", "8UC3"):
        return pixels
    if encoding == "bgr8":
        return pixels[..., ::-1].copy()
    if encoding == "rgba8":
        return pixels[..., :3].copy()
    if encoding == "bgra8":
        return pixels[..., 2::-1].copy()
    if encoding in ("yuv422", "uyvy"):
        return cv2.cvtColor(pixels, cv2.COLOR_YUV2RGB_UYVY)
    if encoding in ("yuv422_yuy2", "yuyv"):
        return cv2.cvtColor(pixels, cv2.COLOR_YUV2RGB_YUYV)
    gray = pixels[..., 0]
    if gray.dtype != np.uint8:
        gray = _scale_to_uint8(gray)
    return np.repeat(gray[..., None], 3, axis=2)


def _compressed_size(data: bytes) -> Optional[Tuple[int, int]]:
    """(width, height) from the image header, without decoding the pixels; None if unreadable."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(io.BytesIO(data)) as header:
            return header.size
    except Image.DecompressionBombError as exc:  # PIL's own limit, above ours
        raise ImageConversionError(f"compressed image is too large: {exc}") from exc
    except (UnidentifiedImageError, OSError, ValueError):
        return None


def compressed_to_rgb(msg, limits: ImageLimits = ImageLimits()) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg/png) -> (H, W, 3) uint8 RGB."""
    raw = bytes(msg.data)
    if not raw:
        raise ImageConversionError("compressed image has no data")
    size = _compressed_size(raw)
    if size is None:
        raise ImageConversionError(f"cannot decode compressed image (format {msg.format!r}, {len(raw)} bytes)")
    limits.check(*size)
    data = np.frombuffer(raw, np.uint8)
    decoded = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if decoded is None:
        raise ImageConversionError(f"cannot decode compressed image (format {msg.format!r}, {data.size} bytes)")
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


def message_to_rgb(msg, limits: ImageLimits = ImageLimits()) -> np.ndarray:
    """A camera frame, sensor_msgs/Image or CompressedImage -> (H, W, 3) uint8 RGB."""
    if hasattr(msg, "format"):  # CompressedImage
        return compressed_to_rgb(msg, limits)
    return image_to_rgb(msg, limits)

"""Image decoding: any file PIL can read -> upright 8-bit RGB, or one clear error naming the file.

Decoding is the one place where arbitrary user files meet the pipeline, so every failure mode (missing,
zero-byte, truncated, not an image, decompression bomb) becomes :class:`ImageLoadError` with a one-line
message instead of a PIL traceback from inside a DataLoader worker. The only decoder of the package: training,
evaluation, PyTorch prediction and the torch-free ONNX path (``onnx_predict``) all read images here, so they
see the same pixels for the same file (16-bit and float images, EXIF orientation, transparency). No torch.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

# The image files a folder input or a YOLO / VOC dataset is read for (Ultralytics' IMG_FORMATS that PIL reads).
IMAGE_SUFFIXES = frozenset({".bmp", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp"})

# EXIF tag 0x0112 value -> the PIL transpose that makes the image upright (same table as ImageOps.exif_transpose).
_EXIF_ORIENTATION = 0x0112
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# Transparent pixels are composited over white: that is how viewers show such images on a page, and the RGB
# values stored under alpha 0 are arbitrary (often black), so dropping alpha would feed the model junk.
_BACKGROUND = (255, 255, 255)


class ImageLoadError(ValueError):
    """An image file could not be decoded; the message is one line naming the file and the reason."""


class ImageWarning(UserWarning):
    """A decodable image with a problem worth knowing about (for example an unreadable EXIF block)."""


@dataclass
class DecodedImage:
    """An upright RGB image and how it was stored.

    image: 8-bit RGB, EXIF orientation applied.
    raw_size: ``(w, h)`` of the pixels as stored in the file, before the EXIF orientation.
    orientation: the EXIF orientation tag (1 = upright, 2..8 see ``_TRANSPOSE``).
    """

    image: Image.Image
    raw_size: tuple[int, int]
    orientation: int


def decode_image(path: str | Path) -> DecodedImage:
    """Decode ``path`` fully (so truncation is caught here, not later) and return it upright and RGB."""
    path = Path(path)
    if not os.path.exists(path):
        raise ImageLoadError(f"{path}: image file not found")
    if os.path.getsize(path) == 0:
        raise ImageLoadError(f"{path}: image file is empty (0 bytes)")
    try:
        with Image.open(path) as img:
            img.load()  # PIL is lazy: force the full decode so truncated data fails now
            raw_size = img.size
            orientation = _orientation(img, path)
            upright = img.transpose(_TRANSPOSE[orientation]) if orientation in _TRANSPOSE else img
            rgb = to_rgb(upright)
    except ImageLoadError:
        raise
    except UnidentifiedImageError:
        raise ImageLoadError(f"{path}: not an image in a format PIL can read") from None
    except Exception as err:  # decoders raise many types on bad bytes (OSError, SyntaxError, struct.error...)
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ImageLoadError(f"{path}: cannot decode image ({reason})") from None
    return DecodedImage(rgb, raw_size, orientation)


def load_rgb(path: str | Path) -> Image.Image:
    """Load ``path`` as upright 8-bit RGB; raises :class:`ImageLoadError` naming the file on failure."""
    return decode_image(path).image


def _orientation(img: Image.Image, path: Path) -> int:
    try:
        value = img.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception as err:  # a malformed EXIF block must not make a good image unusable
        warnings.warn(f"{path}: unreadable EXIF data ({err}); orientation ignored", ImageWarning, stacklevel=3)
        return 1
    if value == 0:  # "undefined", written by some cameras: means upright
        return 1
    if value not in (1, *_TRANSPOSE):
        warnings.warn(f"{path}: invalid EXIF orientation {value!r}; ignored", ImageWarning, stacklevel=3)
        return 1
    return int(value)


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB without losing range or mis-reading transparency.

    - ``I;16*``: divided by 65535 (scaled, never clipped to 255 as ``convert("L")`` would).
    - ``I`` (32-bit int): 16-bit range when values fit in [0, 65535] (how 16-bit PNG/TIFF often arrive),
      otherwise min-max scaled. ``F``: taken as [0, 1] when it fits, otherwise min-max scaled.
    - ``RGBA`` / ``LA`` / ``PA`` / ``P`` with transparency: composited over white.
    - ``CMYK`` (PIL already un-inverts Adobe JPEGs), ``L``, ``1``, ``YCbCr``, ...: ``convert("RGB")``.
    """
    mode = img.mode
    if mode == "RGB":
        return img.copy()
    if mode.startswith("I;16") or mode in ("I", "F"):
        return Image.fromarray(_high_depth_to_uint8(np.asarray(img), mode), mode="L").convert("RGB")
    if (mode == "P" and "transparency" in img.info) or mode == "PA":
        img, mode = img.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "LA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*_BACKGROUND, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return img.convert("RGB")


def _high_depth_to_uint8(array: np.ndarray, mode: str) -> np.ndarray:
    """``[H, W]`` 16/32-bit int or float grey values -> ``[H, W]`` uint8 by scaling the value range."""
    x = array.astype(np.float64)
    if mode.startswith("I;16"):
        lo, hi = 0.0, 65535.0
    elif mode == "I" and x.size and x.min() >= 0 and x.max() <= 65535:
        lo, hi = 0.0, 65535.0
    elif mode == "F" and x.size and np.isfinite(x).all() and x.min() >= 0 and x.max() <= 1:
        lo, hi = 0.0, 1.0
    else:
        finite = x[np.isfinite(x)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    x = np.nan_to_num(x, nan=lo, posinf=hi, neginf=lo)
    scaled = (x - lo) / max(hi - lo, 1e-12) * 255.0
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------ in-memory images
_CHANNELS = (1, 3, 4)  # grey, RGB, RGBA


def as_rgb(item: Any) -> Image.Image:
    """An image given in memory or by path as 8-bit RGB, by the one rule of both predict paths:

    - a path: :func:`load_rgb`; a PIL image: :func:`to_rgb` (any mode);
    - an array (numpy, or a torch tensor, read on the CPU): ``H x W`` is grey; a 3-d array is channels last
      when its last axis has 1, 3 or 4 entries, else channels first (``C x H x W``, a torch image tensor);
      1 channel is grey, 3 RGB, 4 RGBA, composited over white as an RGBA file is;
    - values: uint8 as they are; bool as 0 / 255; floats must lie in [0, 1] and are scaled by 255 (rounded);
      other integers must lie in 0..255. A normalised tensor (mean/std) is refused: pass the image itself.
    """
    if isinstance(item, (str, os.PathLike)):
        return load_rgb(item)
    if isinstance(item, Image.Image):
        return to_rgb(item)
    if hasattr(item, "detach") and hasattr(item, "numpy"):  # a torch tensor, without importing torch
        item = item.detach().cpu().numpy()
    if not isinstance(item, np.ndarray):
        raise TypeError(f"cannot read an image from {type(item).__name__}; pass a path, a PIL image, or an array "
                        "(HxW, HxWxC or CxHxW, C = 1, 3 or 4)")
    return to_rgb(Image.fromarray(_hwc_uint8(item), {1: "L", 3: "RGB", 4: "RGBA"}[_channels(item)]))


def _channels(array: np.ndarray) -> int:
    if array.ndim == 2:
        return 1
    if array.ndim == 3 and (array.shape[2] in _CHANNELS or array.shape[0] in _CHANNELS):
        return array.shape[2] if array.shape[2] in _CHANNELS else array.shape[0]
    raise ValueError(f"an array image must be HxW, HxWxC or CxHxW with C = 1, 3 or 4 channels, got shape "
                     f"{tuple(array.shape)}")


def _hwc_uint8(array: np.ndarray) -> np.ndarray:
    """``array`` as uint8, channels last (``[H, W]`` for one channel)."""
    channels = _channels(array)
    if array.ndim == 3 and array.shape[2] != channels:  # channels first
        array = np.moveaxis(array, 0, 2)
    if array.ndim == 3 and channels == 1:
        array = array[..., 0]
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.floating):
        finite = np.isfinite(array).all()
        lo, hi = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
        if not finite or lo < 0 or hi > 1:
            raise ValueError(f"float images must lie in [0, 1] (scaled by 255), got values in [{lo:g}, {hi:g}]; "
                             "pass uint8 for 0..255, or the image before mean/std normalisation")
        return np.round(array.astype(np.float64) * 255).astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        if array.size and (int(array.min()) < 0 or int(array.max()) > 255):
            raise ValueError(f"integer images must lie in 0..255, got values in [{array.min()}, {array.max()}] "
                             f"({array.dtype}); scale them to uint8 first")
        return array.astype(np.uint8)
    raise ValueError(f"cannot read an image of dtype {array.dtype}; pass uint8, bool, float in [0, 1] or integers")

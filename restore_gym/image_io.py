"""Photos read from and written to files: what the whole-image restoration takes in and gives back.

Reading (:func:`read_photo`) accepts what Pillow opens (PNG, JPEG, BMP, TIFF, ...) and returns a
:class:`Photo`: RGB as H x W x 3 float32 in [0, 1] in display orientation, and what the output must
restore of the file's form.

- EXIF orientation is applied (``ImageOps.exif_transpose``), so the image is restored as it is shown.
- Grayscale (1-bit, 8-bit, 16-bit) is replicated to three channels; ``grayscale`` is set so that the
  output is written as grayscale again (ITU-R 601 luma of the restored channels).
- Alpha (RGBA, LA, palettes with transparency) is kept aside as H x W float32 and re-attached on output.
- 16-bit samples are scaled by 1/65535, not cut to their high byte: 16-bit grayscale is read as Pillow reads
  it; 16-bit RGB(A) (PNG, TIFF), which Pillow decodes to 8 bits, is decoded twice through Pillow's own
  decoders, once for the high and once for the low byte of every sample; 16-bit gray + alpha PNG is
  decoded as raw bytes.
- Other modes (CMYK, YCbCr, LAB, HSV, palettes) are converted to RGB by Pillow; 32-bit float images are
  refused.

A file that cannot be read (missing, not an image, truncated, over Pillow's decompression-bomb limit)
raises :class:`ImageReadError` naming it.

Writing (:func:`write_photo`) clips to [0, 1] and quantizes to 8 bits, only then (16-bit inputs come out as
8-bit PNGs), and writes a PNG atomically (:func:`restore_gym.records.write_atomic`): an interrupted write
leaves any previous file whole.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from restore_gym.degrade import to_uint8
from restore_gym.records import write_atomic

ORIENTATION_TAG = 0x0112
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N"})
_SIXTEEN_BIT_GRAY = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})
_SIXTEEN_BIT_COLOR = re.compile(r"(RGBA?|LA);16([BLN])")
_OTHER_BYTE = {"B": "L", "L": "B", "N": "B" if sys.byteorder == "little" else "L"}
_READ_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError, UnidentifiedImageError)


class ImageReadError(ValueError):
    """A file that could not be read as an image; the message names it and says why."""


@dataclass(frozen=True)
class Photo:
    """An image as read from a file: ``rgb`` H x W x 3 float32 in [0, 1] (display orientation), ``alpha``
    H x W float32 in [0, 1] or None, whether it was ``grayscale``, its ``bit_depth`` (8 or 16) and the EXIF
    ``orientation`` that was applied (1: none)."""

    rgb: np.ndarray
    alpha: np.ndarray | None = None
    grayscale: bool = False
    bit_depth: int = 8
    orientation: int = 1

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        return self.rgb.shape[0], self.rgb.shape[1]


def _tile_rawmode(tile: object) -> str:
    args = tile.args
    return args if isinstance(args, str) else args[0]


def _with_rawmode(tile: object, rawmode: str) -> object:
    args = tile.args
    return tile._replace(args=rawmode if isinstance(args, str) else (rawmode, *args[1:]))


def _decode_as(path: Path, rawmode_of: dict[str, str]) -> np.ndarray:
    """The pixels of ``path`` (orientation applied) decoded with each tile's raw mode replaced by
    ``rawmode_of[raw mode]``: the same compressed data, unpacked differently."""
    with Image.open(path) as image:
        image.tile = [_with_rawmode(tile, rawmode_of[_tile_rawmode(tile)]) for tile in image.tile]
        image.load()
        return np.asarray(ImageOps.exif_transpose(image))


def _sixteen_bit_samples(path: Path, mode: str, rawmodes: set[str]) -> np.ndarray | None:
    """H x W x C uint16 samples (orientation applied) of a 16-bit RGB, RGBA or gray + alpha file, which Pillow
    would decode to 8 bits (gray + alpha comes back as 2 channels), or None for any other file; ``mode`` and
    ``rawmodes`` are the Pillow mode and the raw modes of its tiles."""
    matches = [_SIXTEEN_BIT_COLOR.fullmatch(raw) for raw in rawmodes]
    if not matches or not all(matches) or mode not in ("RGB", "RGBA"):
        return None
    if any(m.group(1) == "LA" for m in matches):
        if rawmodes != {"LA;16B"}:
            return None
        raw = _decode_as(path, {"LA;16B": "RGBA"}).astype(np.uint16)  # the bytes L_hi, L_lo, A_hi, A_lo
        return np.stack([raw[..., 0] << 8 | raw[..., 1], raw[..., 2] << 8 | raw[..., 3]], axis=-1)
    high = _decode_as(path, {raw: raw for raw in rawmodes}).astype(np.uint16)
    low = _decode_as(path, {raw: raw[:-1] + _OTHER_BYTE[raw[-1]] for raw in rawmodes}).astype(np.uint16)
    return high << 8 | low


def _scaled(image: Image.Image) -> np.ndarray:
    """A Pillow image's samples as float32 divided by 255, without a second full-size temporary."""
    array = np.asarray(image, dtype=np.float32)
    array /= np.float32(255.0)
    return array


def _from_pillow(image: Image.Image) -> tuple[np.ndarray, np.ndarray | None, bool, int]:
    """(rgb float32, alpha float32 or None, grayscale, bit depth) of a loaded, transposed Pillow image."""
    mode = image.mode
    if mode == "F":
        raise ValueError("32-bit floating-point images are not supported; save it as an 8- or 16-bit PNG or TIFF")
    if mode in _SIXTEEN_BIT_GRAY:
        gray = np.clip(np.asarray(image, dtype=np.float32) / np.float32(65535.0), 0.0, 1.0)
        return np.repeat(gray[..., None], 3, axis=2), None, True, 16
    has_alpha = "A" in mode or "a" in mode or (mode == "P" and "transparency" in image.info)
    if mode in _GRAY_MODES:
        array = _scaled(image.convert("LA" if has_alpha else "L"))
        gray = array[..., 0] if has_alpha else array
        return np.repeat(gray[..., None], 3, axis=2), (array[..., 1] if has_alpha else None), True, 8
    array = _scaled(image if image.mode == "RGB" else image.convert("RGBA" if has_alpha else "RGB"))
    return np.ascontiguousarray(array[..., :3]), (array[..., 3].copy() if has_alpha else None), False, 8


def read_photo(path: str | os.PathLike) -> Photo:
    """The image in ``path`` as a :class:`Photo` (see the module docstring); :class:`ImageReadError` naming the
    file if it cannot be read."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            rawmodes = {_tile_rawmode(tile) for tile in image.tile}  # first: reading a PNG's EXIF decodes it
            orientation = int(image.getexif().get(ORIENTATION_TAG, 1))
            samples = _sixteen_bit_samples(path, image.mode, rawmodes)
            if samples is None:
                image.load()
                rgb, alpha, grayscale, bits = _from_pillow(ImageOps.exif_transpose(image))
                return Photo(rgb, alpha, grayscale, bits, orientation)
    except FileNotFoundError as error:
        raise ImageReadError(f"{path} does not exist") from error
    except _READ_ERRORS as error:
        raise ImageReadError(f"{path} cannot be read as an image ({type(error).__name__}: {error}); it is not an "
                             "image Pillow knows, or it is truncated or damaged") from error
    scaled = samples.astype(np.float32)
    scaled /= np.float32(65535.0)
    if samples.shape[-1] == 2:  # gray + alpha
        return Photo(np.repeat(scaled[..., :1], 3, axis=2), scaled[..., 1].copy(), True, 16, orientation)
    alpha = scaled[..., 3].copy() if samples.shape[-1] == 4 else None
    return Photo(np.ascontiguousarray(scaled[..., :3]), alpha, False, 16, orientation)


def quantize(image: np.ndarray, rows: int = 256) -> np.ndarray:
    """A float image clipped to [0, 1] and rounded to uint8 (:func:`restore_gym.degrade.to_uint8`), ``rows`` rows
    at a time, so that no full-size float temporary is made."""
    out = np.empty(np.shape(image), dtype=np.uint8)
    for top in range(0, out.shape[0], rows):
        out[top:top + rows] = to_uint8(image[top:top + rows])
    return out


def photo_size(path: str | os.PathLike) -> tuple[int, int]:
    """(height, width) of the image in ``path`` as :func:`read_photo` returns it (EXIF orientation applied), without
    converting its pixels; :class:`ImageReadError` as :func:`read_photo`."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            turned = int(image.getexif().get(ORIENTATION_TAG, 1)) in (5, 6, 7, 8)
    except _READ_ERRORS as error:
        raise ImageReadError(f"{path} cannot be read as an image ({type(error).__name__}: {error})") from error
    return (width, height) if turned else (height, width)


def to_pillow(rgb: np.ndarray, alpha: np.ndarray | None = None, grayscale: bool = False) -> Image.Image:
    """An 8-bit Pillow image of an H x W x 3 float image (clipped to [0, 1], then rounded): mode L or LA for
    ``grayscale`` (ITU-R 601 luma), RGB or RGBA otherwise; ``alpha`` (H x W in [0, 1]) is attached."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"expected an H x W x 3 image, got shape {rgb.shape}")
    if alpha is not None and np.shape(alpha) != rgb.shape[:2]:
        raise ValueError(f"alpha must be H x W = {rgb.shape[:2]}, got shape {np.shape(alpha)}")
    if grayscale:
        luma = rgb[..., 0] * np.float32(0.299) + rgb[..., 1] * np.float32(0.587) + rgb[..., 2] * np.float32(0.114)
        channels = [quantize(luma)[..., None]]
    else:
        channels = [quantize(rgb)]
    if alpha is not None:
        channels.append(quantize(alpha)[..., None])
    array = channels[0] if len(channels) == 1 else np.concatenate(channels, axis=2)
    return Image.fromarray(array.squeeze(2) if array.shape[2] == 1 else array)


def write_png(path: str | os.PathLike, image: Image.Image) -> None:
    """Write a Pillow image as PNG to ``path`` atomically."""
    write_atomic(path, lambda handle: image.save(handle, format="PNG", compress_level=3))


def write_photo(path: str | os.PathLike, rgb: np.ndarray, alpha: np.ndarray | None = None,
                grayscale: bool = False) -> None:
    """Write an H x W x 3 float image as an 8-bit PNG atomically (see :func:`to_pillow`)."""
    write_png(path, to_pillow(rgb, alpha, grayscale))


def side_by_side(panels: Sequence[np.ndarray], gap: int = 8) -> np.ndarray:
    """H x W x 3 float images of one height in a row, as one uint8 image (each clipped to [0, 1] and rounded),
    ``gap`` white pixels between them."""
    heights = {np.shape(panel)[0] for panel in panels}
    if len(heights) != 1:
        raise ValueError(f"side-by-side panels need one height, got heights {sorted(heights)}")
    white = np.full((heights.pop(), gap, 3), 255, dtype=np.uint8)
    row: list[np.ndarray] = []
    for panel in panels:
        row += [white, quantize(panel)] if row else [quantize(panel)]
    return np.concatenate(row, axis=1)

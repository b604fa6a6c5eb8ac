"""Reading and writing photos: orientation, grayscale, alpha, 16-bit samples, bad files (restore_gym.image_io)."""

import struct
import zlib

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageOps

from restore_gym.degrade import to_uint8
from restore_gym.image_io import ImageReadError, photo_size, quantize, read_photo, side_by_side, write_photo
from tests.conftest import write_decompression_bomb

RNG = np.random.default_rng(0)
PIXELS = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)  # asymmetric, so every orientation differs


def png16(samples: np.ndarray) -> bytes:
    """A 16-bit PNG of H x W x C uint16 ``samples`` (C = 2: gray + alpha, 3: RGB, 4: RGBA), rows filtered with Sub
    and Up in turn, so that the decoder's bytes per pixel matter."""
    height, width, channels = samples.shape
    raw = samples.astype(">u2").reshape(height, -1).view(np.uint8).astype(np.int16)
    bpp = 2 * channels
    rows = []
    for y in range(height):
        if y % 2 == 0:  # Sub: each byte minus the byte one pixel to the left
            left = np.concatenate([np.zeros(bpp, np.int16), raw[y, :-bpp]])
            rows.append(b"\x01" + ((raw[y] - left) % 256).astype(np.uint8).tobytes())
        else:  # Up: each byte minus the byte above
            rows.append(b"\x02" + ((raw[y] - raw[y - 1]) % 256).astype(np.uint8).tobytes())

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    color = {2: 4, 3: 2, 4: 6}[channels]
    header = struct.pack(">IIBBBBB", width, height, 16, color, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"".join(rows)))
            + chunk(b"IEND", b""))


def test_an_rgb_png_round_trips(tmp_path):
    write_photo(tmp_path / "a.png", PIXELS / 255.0)
    photo = read_photo(tmp_path / "a.png")
    assert photo.rgb.dtype == np.float32 and photo.size == (5, 7)
    assert photo.alpha is None and not photo.grayscale and photo.bit_depth == 8
    np.testing.assert_array_equal(to_uint8(photo.rgb), PIXELS)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(tmp_path, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(PIXELS).save(tmp_path / "o.png", exif=exif)
    photo = read_photo(tmp_path / "o.png")
    expected = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "o.png")))
    assert photo.orientation == orientation and photo.size == expected.shape[:2]
    assert photo.size == ((7, 5) if orientation >= 5 else (5, 7)) == photo_size(tmp_path / "o.png")
    np.testing.assert_array_equal(to_uint8(photo.rgb), expected)


def test_grayscale_is_replicated_and_written_back_as_grayscale(tmp_path):
    gray = PIXELS[..., 0]
    Image.fromarray(gray).save(tmp_path / "g.png")
    photo = read_photo(tmp_path / "g.png")
    assert photo.grayscale and photo.rgb.shape == (5, 7, 3)
    np.testing.assert_array_equal(to_uint8(photo.rgb), np.repeat(gray[..., None], 3, axis=2))
    write_photo(tmp_path / "out.png", photo.rgb, grayscale=True)
    with Image.open(tmp_path / "out.png") as written:
        assert written.mode == "L"
        np.testing.assert_array_equal(np.asarray(written), gray)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_alpha_is_kept_and_put_back(tmp_path, mode):
    alpha = RNG.integers(0, 256, (5, 7), dtype=np.uint8)
    image = Image.fromarray(np.dstack([PIXELS, alpha]))
    if mode == "LA":
        image = image.convert("LA")
    elif mode == "P":
        image = Image.fromarray(PIXELS).convert("P")
        image.info["transparency"] = int(np.asarray(image)[0, 0])
        alpha = np.where(np.asarray(image) == image.info["transparency"], 0, 255).astype(np.uint8)
    image.save(tmp_path / "a.png")
    photo = read_photo(tmp_path / "a.png")
    assert photo.alpha is not None and photo.grayscale == (mode == "LA")
    np.testing.assert_array_equal(to_uint8(photo.alpha), alpha)
    write_photo(tmp_path / "out.png", photo.rgb, photo.alpha, photo.grayscale)
    with Image.open(tmp_path / "out.png") as written:
        assert written.mode == ("LA" if mode == "LA" else "RGBA")
        np.testing.assert_array_equal(np.asarray(written)[..., -1], alpha)


def test_sixteen_bit_grayscale_is_scaled_by_65535(tmp_path):
    samples = RNG.integers(0, 65536, (6, 9), dtype=np.uint16)
    Image.fromarray(samples).save(tmp_path / "g16.png")
    photo = read_photo(tmp_path / "g16.png")
    assert photo.bit_depth == 16 and photo.grayscale
    np.testing.assert_allclose(photo.rgb[..., 1], samples / 65535.0, atol=1e-7)


@pytest.mark.parametrize("channels", [2, 3, 4])
def test_sixteen_bit_png_keeps_both_bytes(tmp_path, channels):
    samples = RNG.integers(0, 65536, (6, 9, channels), dtype=np.uint16)
    (tmp_path / "c16.png").write_bytes(png16(samples))
    photo = read_photo(tmp_path / "c16.png")
    assert photo.bit_depth == 16 and photo.grayscale == (channels == 2)
    color = np.repeat(samples[..., :1], 3, axis=2) if channels == 2 else samples[..., :3]
    np.testing.assert_allclose(photo.rgb, color / 65535.0, atol=1e-7)
    if channels in (2, 4):
        np.testing.assert_allclose(photo.alpha, samples[..., -1] / 65535.0, atol=1e-7)


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_sixteen_bit_tiff_keeps_both_bytes_and_its_orientation(tmp_path, compression):
    samples = RNG.integers(0, 65536, (6, 9, 3), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "c16.tif", samples, photometric="rgb", compression=compression,
                     extratags=[(0x0112, "H", 1, 6, True)])
    photo = read_photo(tmp_path / "c16.tif")
    assert photo.bit_depth == 16 and photo.orientation == 6
    np.testing.assert_allclose(photo.rgb, np.rot90(samples, -1) / 65535.0, atol=1e-7)  # 6: turned clockwise


def test_bad_files_are_named(tmp_path):
    Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "whole.png")
    data = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(data[: len(data) // 2])
    Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "whole.jpg")
    (tmp_path / "truncated.jpg").write_bytes((tmp_path / "whole.jpg").read_bytes()[:300])
    (tmp_path / "notes.png").write_text("not an image")
    write_decompression_bomb(tmp_path / "bomb.png")
    for name in ("truncated.png", "truncated.jpg", "notes.png", "bomb.png", "missing.png"):
        with pytest.raises(ImageReadError, match=name):
            read_photo(tmp_path / name)


def test_quantize_and_side_by_side():
    image = RNG.normal(0.5, 0.5, (40, 30, 3)).astype(np.float32)  # outside [0, 1] too: clipped
    np.testing.assert_array_equal(quantize(image, rows=7), to_uint8(image))
    row = side_by_side([image, image[:, :10]], gap=4)
    assert row.shape == (40, 44, 3) and row.dtype == np.uint8 and (row[:, 30:34] == 255).all()
    with pytest.raises(ValueError, match="one height"):
        side_by_side([image, image[:20]])

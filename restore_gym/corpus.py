"""The clean-photo training corpus of the restoration tools: ``python -m restore_gym.corpus [--out DIR]``.

The corpus is a folder of 8-bit RGB PNG files plus ``MANIFEST.json``; pass the folder to the tool training
(``python -m restore_gym.train_tools --source DIR``). Without apt (or without network access to Debian's
archive) the built-in train split alone can be used: ``--source builtin``.

Sources
-------
- ``scikit-image``: the built-in train split (``restore_gym.data.BUILTIN_SPLITS["train"]``), natural RGB
  photos inside scikit-image's wheel, copied at their own size (downscale 1). Their terms, from
  ``skimage.data``'s documentation, are in the manifest (astronaut and rocket: public domain; the
  motorcycle pair: the Middlebury 2014 stereo dataset).
- ``mate-backgrounds`` (Debian bookworm 1.26.0-1, GPL-2+): the 12 photographs of its ``nature/`` folder
  (``/usr/share/backgrounds/mate/nature``). Its ``abstract/`` and ``desktop/`` folders hold renders, digital
  paintings and logos and are not used.
- ``opencv-doc`` (Debian bookworm 4.6.0+dfsg-12, "Apache-2.0 AND BSD-3-Clause" for the samples): the
  colour photographs among its sample images (``/usr/share/doc/opencv-doc/examples``), listed one by one in
  :data:`OPENCV_PHOTOS`. Not listed: drawings, renders, logos, charts, chessboards, masks, text pages,
  screenshots, a painting (starry_night), images blurred or edited on purpose (text_defocus, text_motion,
  licenseplate_motion, ela_modified), grayscale images, and the second view of a multi-view set (aloeR,
  graf3, leuvenB, right, rubberwhale2: the same scene again). The HTML manual's figures are not used. Debian's
  package has no lena (its repack of the source excludes it).

The packages are fetched with ``apt-get download`` into a temporary folder and unpacked with ``dpkg-deb -x``;
nothing is installed. When a download fails, ``--apt-update`` runs ``apt-get update`` (which refreshes the
system's package lists) once and tries again; without it the error says so. Their version comes from
``dpkg-deb -f``; each package's Debian copyright file is copied to ``licenses/<package>.copyright`` and
the licence of each image is read from its machine-readable stanza (``license`` and ``copyright``).

Rules (applied in this order to every listed image; the built-in images skip the JPEG steps)
------------------------------------------------------------------------------------------------
1. Test images are never in the corpus. Every candidate is compared with every image of the built-in test
   split (``BUILTIN_SPLITS["test"]``: chelsea.png, coffee.png, ...) through a fingerprint: luminance
   squeezed to 64x64 by area averaging, zero mean, unit norm. A correlation of at least 0.9 with a test
   image or its mirror image excludes the candidate, whatever its size, aspect, compression or colour
   (a warning is logged). Measured on these packages: distinct photographs correlate at most 0.68 (stereo
   pairs), resized or recompressed copies 0.96 or more. Crops of a test image are not detected.
2. Transparent images (more than 1% of pixels with alpha < 255) are skipped: they are composited graphics.
3. JPEGs saved below quality 50 (estimated from the luminance quantisation table, IJG scale) are skipped:
   their detail is gone, not just blocked.
4. Downscaling by an integer factor of at least ``--min-downscale`` (2, 4 or 8) with area averaging
   (Pillow's ``Image.reduce`` after cropping to a multiple of the factor). For a JPEG, the factor doubles
   (up to 8) while the JPEG grid still shows: mean luminance steps across the (shrunk) 8x8 block boundaries
   more than 1.05 times those inside blocks (clean photos measure 0.96 to 1.04).
5. Too small: a short side under 256 pixels after downscaling.
6. Grayscale: mean distance of the channels from their mean under 3 (of 255). Grayscale photos are skipped,
   not converted: the tools restore colour images, and a replicated gray image has no colour to learn from.
7. Flat: luminance standard deviation under 8, or more than 60% of 8x8 blocks with a standard deviation
   under 1 (backgrounds, renders).
8. Synthetic: fewer than 4096 distinct colours (drawings, charts, logos, palette images).
9. Duplicates: identical downscaled pixels (SHA-256) or the same picture as an image already kept
   (fingerprint correlation of at least 0.9, as in rule 1), which also drops frames of one sequence. The
   first in the order scikit-image, mate-backgrounds, opencv-doc, then path, is kept.

Output
------
``<source>__<original-stem>.png`` per image (the parent folders are added to the stem when two stems
collide), ``licenses/<package>.copyright``, and ``MANIFEST.json``: the rules, the sources, and for every
image its source and version, path in the package, original size, estimated JPEG quality, downscale
factor, final size (sizes are ``[width, height]``), SHA-256 of the PNG, licence and copyright; also every
listed image that was skipped and why. The same packages give the same files and manifest. The corpus is
written in a folder next to its destination and renamed into place (into an existing folder file by file,
its manifest last), so an interrupted run leaves no half corpus. An existing complete corpus is only
reported; any other non-empty destination is refused unless ``--force``, and even then only the corpus's
own files there (``MANIFEST.json``, ``licenses/`` and the images the manifest lists) are replaced: the
builder never deletes a file it did not write. The default destination is ``$RESTORE_GYM_CACHE/corpus``,
else ``$XDG_CACHE_HOME/restore-gym/corpus`` (``~/.cache/restore-gym/corpus``).
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL
from PIL import Image, UnidentifiedImageError

from restore_gym.data import BUILTIN_SPLITS, IMAGE_SUFFIXES, cache_dir, to_rgb

log = logging.getLogger(__name__)

MANIFEST = "MANIFEST.json"
MANIFEST_FORMAT = 1
DOWNSCALES = (2, 4, 8)
MAX_DOWNSCALE = 8
MIN_SIDE = 256
MIN_JPEG_QUALITY = 50
BLOCKINESS_LIMIT = 1.05
MAX_TRANSPARENT = 0.01
GRAY_CHROMA = 3.0
FLAT_STD = 8.0
FLAT_BLOCK_STD = 1.0
FLAT_BLOCK_FRACTION = 0.6
MIN_COLOURS = 4096
SAME_PICTURE = 0.9
FINGERPRINT_SIDE = 64
BUILTIN_SOURCE = "scikit-image"
FALLBACK_HINT = (
    "the built-in train split alone can be used: pass --source builtin to the training command "
    "(python -m restore_gym.train_tools)"
)
# Luminance quantisation table of the JPEG standard (Annex K), which the IJG quality setting scales.
_IJG_LUMINANCE_SUM = 3688
_BUILTIN_TERMS: dict[str, tuple[str, str]] = {
    "astronaut.png": ("public domain", "NASA (skimage.data.astronaut)"),
    "motorcycle_left.png": ("Middlebury 2014 stereo dataset", "Scharstein et al. (skimage.data.stereo_motorcycle)"),
    "motorcycle_right.png": ("Middlebury 2014 stereo dataset", "Scharstein et al. (skimage.data.stereo_motorcycle)"),
    "rocket.jpg": ("public domain", "SpaceX (skimage.data.rocket)"),
    "chelsea.png": ("CC0", "Stefan van der Walt (skimage.data.chelsea)"),
    "coffee.png": ("CC0", "Rachel Michetti (skimage.data.coffee)"),
}


class CorpusError(RuntimeError):
    """The corpus cannot be built (missing tool, refused download, unusable destination)."""


@dataclass(frozen=True)
class PackageSource:
    """A Debian package of photographs.

    ``root`` is the folder of its images inside the package, ``photos`` the fnmatch patterns (relative to
    ``root``) of those that are photographs, and ``upstream_prefix`` turns such a relative path into the
    upstream path that the stanzas of the package's copyright file name.
    """

    package: str
    root: str
    photos: tuple[str, ...]
    upstream_prefix: str = ""

    def is_photo(self, relative: str) -> bool:
        """Whether ``relative`` (a path under :attr:`root`) is listed as a photograph (fnmatch patterns)."""
        return any(fnmatch.fnmatchcase(relative, pattern) for pattern in self.photos)


OPENCV_PHOTOS: tuple[str, ...] = (
    "alphamat/input_images/plant.jpg",
    "data/aero1.jpg",
    "data/aero3.jpg",
    "data/aloeL.jpg",
    "data/apple.jpg",
    "data/baboon.jpg",
    "data/board.jpg",
    "data/building.jpg",
    "data/butterfly.jpg",
    "data/chicky_512.png",
    "data/ela_original.jpg",
    "data/fruits.jpg",
    "data/graf1.png",
    "data/home.jpg",
    "data/left.jpg",
    "data/leuvenA.jpg",
    "data/messi5.jpg",
    "data/orange.jpg",
    "data/rubberwhale1.png",
    "data/squirrel_cls.jpg",
    "data/stuff.jpg",
    "dnn_superres/butterfly.png",
    "hfs/data/000.jpg",
    "hfs/data/001.jpg",
    "hfs/data/002.jpg",
    "reg/home.png",
    "text/scenetext0[1-6].jpg",
    "text/scenetext_segmented_word0[1-5].jpg",
)
PACKAGE_SOURCES: tuple[PackageSource, ...] = (
    PackageSource("mate-backgrounds", "usr/share/backgrounds/mate", ("nature/*",)),
    PackageSource("opencv-doc", "usr/share/doc/opencv-doc/examples", OPENCV_PHOTOS, upstream_prefix="samples/"),
)


@dataclass(frozen=True)
class ExtractedPackage:
    """A package unpacked into ``tree`` (the layout of ``dpkg-deb -x``)."""

    source: PackageSource
    tree: Path
    version: str

    @property
    def copyright_path(self) -> str:
        """The Debian copyright file's path inside the package."""
        return f"usr/share/doc/{self.source.package}/copyright"


@dataclass(frozen=True)
class Candidate:
    """A listed image file, before the rules."""

    source: str
    version: str
    path: str
    file: Path
    min_downscale: int
    license: str
    copyright: str
    copyright_file: str | None


@dataclass(frozen=True)
class Kept:
    """An image that passed the rules: its final pixels and its manifest fields."""

    candidate: Candidate
    pixels: np.ndarray
    fingerprint: np.ndarray
    digest: str
    original_size: tuple[int, int]
    jpeg_quality: int | None
    downscale: int


# ----------------------------------------------------------------------------------------------- measures


def fingerprint(image: Image.Image) -> np.ndarray:
    """Luminance squeezed to 64x64 by area averaging, zero mean, unit norm (flattened; zeros if flat)."""
    side = (FINGERPRINT_SIDE, FINGERPRINT_SIDE)
    values = np.asarray(image.convert("L").resize(side, Image.Resampling.BOX), dtype=np.float64).ravel()
    values = values - values.mean()
    norm = np.linalg.norm(values)
    return values / norm if norm > 0 else values


def picture_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation of two fingerprints, the larger of as-is and with ``b`` mirrored left-right."""
    mirrored = b.reshape(FINGERPRINT_SIDE, FINGERPRINT_SIDE)[:, ::-1].ravel()
    return float(max(a @ b, a @ mirrored))


def jpeg_quality(image: Image.Image) -> int | None:
    """The IJG quality (1..100) a JPEG was saved with, estimated from its luminance table; None if not JPEG."""
    tables = getattr(image, "quantization", None)
    if image.format != "JPEG" or not tables:
        return None
    scale = 100.0 * sum(tables[0]) / _IJG_LUMINANCE_SUM
    quality = (200.0 - scale) / 2.0 if scale <= 100.0 else 5000.0 / scale
    return int(np.clip(round(quality), 1, 100))


def blockiness(gray: np.ndarray, period: int) -> float:
    """Mean absolute step across the boundaries of a ``period``-pixel grid over the mean step elsewhere."""
    steps_x = np.abs(np.diff(gray, axis=1))
    steps_y = np.abs(np.diff(gray, axis=0))
    on_x = np.arange(steps_x.shape[1]) % period == period - 1
    on_y = np.arange(steps_y.shape[0]) % period == period - 1
    on = np.concatenate([steps_x[:, on_x].ravel(), steps_y[on_y].ravel()])
    off = np.concatenate([steps_x[:, ~on_x].ravel(), steps_y[~on_y].ravel()])
    return float(on.mean() / max(off.mean(), 1e-6))


def area_reduce(image: Image.Image, factor: int) -> Image.Image:
    """Area-average ``image`` by an integer factor after cropping it to a multiple of the factor."""
    if factor == 1:
        return image
    width, height = image.size
    return image.crop((0, 0, width - width % factor, height - height % factor)).reduce(factor)


def downscale(image: Image.Image, min_factor: int, is_jpeg: bool) -> tuple[Image.Image, int]:
    """Reduce by ``min_factor``; for a JPEG, double the factor (up to 8) while its 8x8 grid still shows."""
    factor = min_factor
    reduced = area_reduce(image, factor)
    while is_jpeg and factor < MAX_DOWNSCALE and min(reduced.size) >= MIN_SIDE:
        luminance = np.asarray(reduced.convert("L"), dtype=np.float64)
        if blockiness(luminance, 8 // factor) <= BLOCKINESS_LIMIT:
            break
        factor *= 2
        reduced = area_reduce(image, factor)
    return reduced, factor


def content_problem(pixels: np.ndarray) -> str | None:
    """Why an H x W x 3 uint8 image is no clean photograph for the corpus (rules 5 to 8), or None."""
    height, width = pixels.shape[:2]
    if min(height, width) < MIN_SIDE:
        return f"too small: {width}x{height} after downscaling, short side under {MIN_SIDE}"
    values = pixels.astype(np.float64)
    chroma = float(np.abs(values - values.mean(axis=2, keepdims=True)).mean())
    if chroma < GRAY_CHROMA:
        return f"grayscale: mean chroma {chroma:.2f} < {GRAY_CHROMA}"
    luminance = values @ np.array([0.299, 0.587, 0.114])
    if luminance.std() < FLAT_STD:
        return f"flat: luminance std {luminance.std():.1f} < {FLAT_STD}"
    blocks = luminance[: height // 8 * 8, : width // 8 * 8].reshape(height // 8, 8, width // 8, 8)
    flat_fraction = float((blocks.std(axis=(1, 3)) < FLAT_BLOCK_STD).mean())
    if flat_fraction > FLAT_BLOCK_FRACTION:
        return f"flat: {flat_fraction:.0%} of 8x8 blocks have std < {FLAT_BLOCK_STD}"
    colours = len(np.unique(pixels.reshape(-1, 3).view(np.dtype((np.void, 3)))))
    if colours < MIN_COLOURS:
        return f"synthetic: {colours} distinct colours < {MIN_COLOURS}"
    return None


# --------------------------------------------------------------------------------------- finding images


def parse_copyright(text: str) -> list[tuple[tuple[str, ...], str, str]]:
    """``(patterns, licence, copyright)`` of each ``Files`` stanza of a machine-readable copyright file."""
    stanzas = []
    for block in re.split(r"\n[ \t]*\n", text):
        fields: dict[str, list[str]] = {}
        key = None
        for line in block.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key].append(line.strip())
            elif ":" in line and not line.startswith("#"):
                key, value = line.split(":", 1)
                key = key.strip().lower()
                fields[key] = [value.strip()]
        if "files" in fields:
            patterns = tuple(" ".join(fields["files"]).split())
            licence = fields.get("license", [""])[0]
            holders = "; ".join(line for line in fields.get("copyright", []) if line)
            stanzas.append((patterns, licence, holders))
    return stanzas


def licence_of(stanzas: list[tuple[tuple[str, ...], str, str]], path: str) -> tuple[str, str] | None:
    """``(licence, copyright)`` of the last stanza whose patterns match ``path``, as DEP-5 says; None if none."""
    found = None
    for patterns, licence, holders in stanzas:
        if any(fnmatch.fnmatchcase(path, pattern) for pattern in patterns):
            found = (licence, holders)
    return found


def package_candidates(package: ExtractedPackage, min_downscale: int) -> tuple[list[Candidate], int]:
    """The listed photographs of an unpacked package in path order, and how many other images it holds."""
    source = package.source
    root = package.tree / source.root
    if not root.is_dir():
        raise CorpusError(f"{source.package} {package.version} has no folder /{source.root}")
    copyright_file = package.tree / package.copyright_path
    stanzas = parse_copyright(copyright_file.read_text(errors="replace")) if copyright_file.is_file() else []
    images = sorted(
        p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    candidates = []
    for relative in filter(source.is_photo, images):
        terms = licence_of(stanzas, source.upstream_prefix + relative)
        licence, holders = terms or (f"see {package.copyright_path}", "")
        candidates.append(
            Candidate(
                source=source.package,
                version=package.version,
                path=f"{source.root}/{relative}",
                file=root / relative,
                min_downscale=min_downscale,
                license=licence,
                copyright=holders,
                copyright_file=package.copyright_path if copyright_file.is_file() else None,
            )
        )
    return candidates, len(images) - len(candidates)


def skimage_data_dir() -> Path:
    """The folder of the images scikit-image ships inside its wheel."""
    import skimage

    return Path(skimage.__file__).parent / "data"


def builtin_candidates(split: str) -> list[Candidate]:
    """The built-in images of ``split`` as candidates (downscale 1)."""
    import skimage

    candidates = []
    for name in BUILTIN_SPLITS[split]:
        path = skimage_data_dir() / name
        if not path.is_file():
            raise CorpusError(f"scikit-image's bundled image {name} is missing from {path.parent}")
        licence, holders = _BUILTIN_TERMS.get(name, ("see scikit-image's skimage.data documentation", ""))
        candidates.append(
            Candidate(BUILTIN_SOURCE, skimage.__version__, f"skimage/data/{name}", path, 1, licence, holders, None)
        )
    return candidates


def held_out_fingerprints() -> dict[str, np.ndarray]:
    """Fingerprints of the built-in test images, by file name."""
    prints = {}
    for candidate in builtin_candidates("test"):
        with Image.open(candidate.file) as image:
            prints[Path(candidate.path).name] = fingerprint(image.convert("RGB"))
    return prints


# ------------------------------------------------------------------------------------------------ rules


def _examine(candidate: Candidate, tests: dict[str, np.ndarray]) -> Kept | str:
    """Apply rules 1 to 8 to one candidate: the image to keep, or why it is skipped."""
    try:
        with Image.open(candidate.file) as image:
            image.load()
            quality = jpeg_quality(image)
            alpha = np.asarray(image.convert("RGBA"))[..., 3] if image.mode in ("RGBA", "LA", "PA", "P") else None
            rgb = Image.fromarray(to_rgb(image))
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as error:
        return f"unreadable: {error}"
    own = fingerprint(rgb)
    for name, test_print in tests.items():
        similarity = picture_similarity(own, test_print)
        if similarity >= SAME_PICTURE:
            log.warning(
                "EXCLUDED %s:%s: it is the built-in test image %s (fingerprint correlation %.3f)",
                candidate.source,
                candidate.path,
                name,
                similarity,
            )
            return f"test image: {name} (fingerprint correlation {similarity:.3f})"
    if alpha is not None and (transparent := float((alpha < 255).mean())) > MAX_TRANSPARENT:
        return f"transparent: {transparent:.0%} of pixels"
    if candidate.min_downscale == 1:
        reduced, factor = rgb, 1
    elif quality is not None and quality < MIN_JPEG_QUALITY:
        return f"JPEG quality about {quality} < {MIN_JPEG_QUALITY}"
    else:
        reduced, factor = downscale(rgb, candidate.min_downscale, is_jpeg=quality is not None)
    pixels = np.asarray(reduced, dtype=np.uint8)
    problem = content_problem(pixels)
    if problem:
        return problem if factor == 1 else f"{problem} (downscale {factor})"
    digest = hashlib.sha256(f"{pixels.shape}".encode() + pixels.tobytes()).hexdigest()
    return Kept(candidate, pixels, own, digest, rgb.size, quality, factor)


def _duplicate(image: Kept, kept: Sequence[Kept]) -> str | None:
    """Rule 9: why ``image`` duplicates an image already kept, or None."""
    for other in kept:
        if image.digest == other.digest:
            return f"duplicate: identical pixels to {other.candidate.path}"
        similarity = picture_similarity(image.fingerprint, other.fingerprint)
        if similarity >= SAME_PICTURE:
            return f"duplicate: same picture as {other.candidate.path} (correlation {similarity:.3f})"
    return None


def select(candidates: Sequence[Candidate], tests: dict[str, np.ndarray]) -> tuple[list[Kept], list[dict]]:
    """Apply every rule to the candidates in order: the kept images, and ``{source, path, reason}`` per skip."""
    kept: list[Kept] = []
    skipped: list[dict] = []
    for candidate in candidates:
        result = _examine(candidate, tests)
        if isinstance(result, Kept):
            result = _duplicate(result, kept) or result
        if isinstance(result, Kept):
            kept.append(result)
            log.debug("keep %s:%s (downscale %d)", candidate.source, candidate.path, result.downscale)
        else:
            skipped.append({"source": candidate.source, "path": candidate.path, "reason": result})
            log.debug("skip %s:%s: %s", candidate.source, candidate.path, result)
    return kept, skipped


# ---------------------------------------------------------------------------------------------- output


def _listed_files(out_dir: Path) -> list[str]:
    """The image files that the manifest in ``out_dir`` lists; ValueError naming it if it cannot be read."""
    path = out_dir / MANIFEST
    try:
        files = [entry["file"] for entry in json.loads(path.read_text())["images"]]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path} is not a readable corpus manifest ({type(error).__name__}: {error})") from None
    if not all(isinstance(name, str) for name in files):
        raise ValueError(f"{path} is not a readable corpus manifest (a file name is not a string)")
    return files


def corpus_problem(out_dir: Path) -> str | None:
    """Why ``out_dir`` holds no complete corpus (no manifest, an unreadable one, a listed image missing), or
    None if it does."""
    if not (out_dir / MANIFEST).is_file():
        return f"{out_dir / MANIFEST} does not exist"
    try:
        files = _listed_files(out_dir)
    except (OSError, ValueError) as error:
        return str(error)
    missing = [name for name in files if not (out_dir / name).is_file()]
    if missing:
        return f"{len(missing)} image(s) that {out_dir / MANIFEST} lists are missing, e.g. {missing[0]}"
    return None


def corpus_is_complete(out_dir: Path) -> bool:
    """Whether ``out_dir`` holds a manifest and every file it lists."""
    return corpus_problem(out_dir) is None


def _own_files(out_dir: Path) -> list[str]:
    """The names in ``out_dir`` that a corpus wrote: its manifest, ``licenses/`` and the plain file names the
    manifest lists (all of them that exist; only the first two if the manifest cannot be read)."""
    try:
        listed = [name for name in _listed_files(out_dir) if name == Path(name).name and name not in ("", ".", "..")]
    except (OSError, ValueError):
        listed = []
    own = [name for name in listed if (out_dir / name).is_file() and not (out_dir / name).is_symlink()]
    return [name for name in (MANIFEST, "licenses") if (out_dir / name).exists()] + sorted(set(own) - {MANIFEST})


def _file_names(kept: Sequence[Kept]) -> list[str]:
    """``<source>__<stem>.png`` per image; parent folders join the stem while two names collide."""
    names: list[str] = []
    for item in kept:
        parts = Path(item.candidate.path).with_suffix("").parts
        for depth in range(1, len(parts) + 1):
            stem = re.sub(r"[^A-Za-z0-9._-]", "_", "-".join(parts[-depth:]))
            name = f"{item.candidate.source}__{stem}.png"
            if name not in names:
                break
        names.append(name)
    return names


def _manifest(
    kept: Sequence[Kept],
    names: Sequence[str],
    digests: dict[str, str],
    skipped: list[dict],
    sources: dict,
    min_downscale: int,
) -> dict:
    """The content of ``MANIFEST.json`` (see the module documentation), every list in a fixed order."""
    images = []
    for item, name in zip(kept, names):
        candidate = item.candidate
        images.append(
            {
                "file": name,
                "source": candidate.source,
                "version": candidate.version,
                "path": candidate.path,
                "original_size": list(item.original_size),
                "jpeg_quality": item.jpeg_quality,
                "downscale": item.downscale,
                "size": [int(item.pixels.shape[1]), int(item.pixels.shape[0])],
                "sha256": digests[name],
                "license": candidate.license,
                "copyright": candidate.copyright,
                "copyright_file": candidate.copyright_file,
                "license_file": f"licenses/{candidate.source}.copyright" if candidate.copyright_file else None,
            }
        )
    images.sort(key=lambda entry: entry["file"])
    return {
        "format": MANIFEST_FORMAT,
        "description": "clean-photo training corpus of restore-gym's restoration tools (restore_gym.corpus)",
        "software": {"pillow": PIL.__version__, "numpy": np.__version__},
        "rules": {
            "min_downscale": min_downscale,
            "max_downscale": MAX_DOWNSCALE,
            "min_side": MIN_SIDE,
            "min_jpeg_quality": MIN_JPEG_QUALITY,
            "blockiness_limit": BLOCKINESS_LIMIT,
            "max_transparent_fraction": MAX_TRANSPARENT,
            "gray_chroma": GRAY_CHROMA,
            "flat_std": FLAT_STD,
            "flat_block_fraction": FLAT_BLOCK_FRACTION,
            "min_colours": MIN_COLOURS,
            "same_picture_correlation": SAME_PICTURE,
            "test_images": sorted(BUILTIN_SPLITS["test"]),
        },
        "sources": sources,
        "images": images,
        "skipped": sorted(skipped, key=lambda entry: (entry["source"], entry["path"])),
        "totals": {
            "images": len(images),
            "megapixels": round(sum(e["size"][0] * e["size"][1] for e in images) / 1e6, 3),
        },
    }


def write_corpus(out_dir: Path, packages: Sequence[ExtractedPackage], min_downscale: int) -> Path:
    """Select the images of the built-in train split and of ``packages`` and publish them in ``out_dir``.

    Everything is written into a temporary sibling folder that then replaces the corpus files of ``out_dir``
    (:func:`_publish`; files the corpus did not write stay), so ``out_dir`` never holds a half corpus.
    """
    candidates = builtin_candidates("train")
    builtin = {"version": candidates[0].version, "root": "skimage/data", "photos": list(BUILTIN_SPLITS["train"])}
    sources: dict[str, dict] = {BUILTIN_SOURCE: builtin}
    for package in packages:
        found, others = package_candidates(package, min_downscale)
        candidates += found
        sources[package.source.package] = {
            "version": package.version,
            "root": package.source.root,
            "photos": list(package.source.photos),
            "listed": len(found),
            "other_images": others,
            "copyright_file": package.copyright_path,
        }
        log.info(
            "%s %s: %d listed photographs, %d other images not used",
            package.source.package,
            package.version,
            len(found),
            others,
        )
    kept, skipped = select(candidates, held_out_fingerprints())
    for name, source in sources.items():
        source["kept"] = sum(item.candidate.source == name for item in kept)
    names = _file_names(kept)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        staging.chmod(0o755)
        digests = {}
        for item, name in zip(kept, names):
            Image.fromarray(item.pixels, "RGB").save(staging / name, format="PNG")
            digests[name] = hashlib.sha256((staging / name).read_bytes()).hexdigest()
        (staging / "licenses").mkdir()
        for package in packages:
            copyright_file = package.tree / package.copyright_path
            if copyright_file.is_file():
                shutil.copyfile(copyright_file, staging / "licenses" / f"{package.source.package}.copyright")
        manifest = _manifest(kept, names, digests, skipped, sources, min_downscale)
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
        _publish(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def _publish(staging: Path, out_dir: Path) -> None:
    """Move the corpus in ``staging`` into ``out_dir``: a rename if ``out_dir`` does not exist, else file by
    file, the old manifest out first and the new one in last, after the old corpus's own files
    (:func:`_own_files`) went aside; those are put back if a move fails. Files the corpus did not write are
    never touched: CorpusError, before anything moves, if one is in the way of a new file."""
    if not out_dir.exists():
        os.replace(staging, out_dir)
        return
    own = _own_files(out_dir)
    new = sorted(p.name for p in staging.iterdir() if p.name != MANIFEST) + [MANIFEST]
    blocking = [name for name in new if os.path.lexists(out_dir / name) and name not in own]
    if blocking:
        raise CorpusError(f"{len(blocking)} file(s) in {out_dir} that the corpus would replace were not written by it "
                          f"(as far as its manifest says), e.g. {blocking[0]}; move them elsewhere (or delete the "
                          "folder if it only holds an old corpus) or choose another --out")
    retired = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
    moves = [(out_dir / name, retired / name) for name in own] + [(staging / name, out_dir / name) for name in new]
    done: list[tuple[Path, Path]] = []
    try:
        for source, target in moves:
            os.replace(source, target)
            done.append((source, target))
    except BaseException:
        for source, target in reversed(done):
            os.replace(target, source)
        retired.rmdir()
        raise
    shutil.rmtree(retired)
    staging.rmdir()


# -------------------------------------------------------------------------------------------- fetching


def _run(command: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)


def fetch_package(source: PackageSource, workdir: Path, apt_update: bool = False) -> ExtractedPackage:
    """``apt-get download`` the package into ``workdir`` and unpack it; if the download fails and ``apt_update``,
    ``apt-get update`` and one more try."""
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise CorpusError(
                f"{tool} is not available, so Debian package {source.package} cannot be fetched "
                f"(the corpus needs a Debian-based system); {FALLBACK_HINT}"
            )
    download = workdir / source.package
    download.mkdir(parents=True)
    result = _run(["apt-get", "download", source.package], cwd=download)
    update = None
    if result.returncode != 0 and apt_update:
        log.info("apt-get download %s failed; running apt-get update and trying again", source.package)
        update = _run(["apt-get", "update"])
        result = _run(["apt-get", "download", source.package], cwd=download)
    if result.returncode != 0:
        details = (result.stderr or result.stdout).strip().splitlines()[-3:]
        if update is None:
            details.append("if apt's package lists are out of date, run again with --apt-update (runs apt-get "
                           "update, which refreshes the system's package lists)")
        elif update.returncode != 0:
            details += (update.stderr or update.stdout).strip().splitlines()[-2:]
        raise CorpusError(
            f"could not download Debian package {source.package}: {' | '.join(details)}; {FALLBACK_HINT}"
        )
    debs = sorted(download.glob(f"{source.package}_*.deb"))
    if len(debs) != 1:
        raise CorpusError(f"apt-get download {source.package} left {len(debs)} .deb files in {download}")
    version = _run(["dpkg-deb", "-f", str(debs[0]), "Version"])
    tree = workdir / f"{source.package}-tree"
    unpack = _run(["dpkg-deb", "-x", str(debs[0]), str(tree)])
    if version.returncode != 0 or unpack.returncode != 0:
        raise CorpusError(f"dpkg-deb could not read {debs[0].name}: {(version.stderr + unpack.stderr).strip()}")
    return ExtractedPackage(source, tree, version.stdout.strip())


def default_out_dir() -> Path:
    """Where the corpus goes by default: ``corpus`` in restore-gym's user cache folder."""
    return cache_dir() / "corpus"


def build_corpus(out_dir: Path | None = None, *, min_downscale: int = 2, force: bool = False,
                 apt_update: bool = False) -> Path:
    """Build the corpus (see the module documentation) in ``out_dir``; returns the folder.

    An existing complete corpus is kept (and reported); any other non-empty ``out_dir`` is a CorpusError
    naming it unless ``force``, which replaces the corpus's own files there and nothing else. ``apt_update``
    allows ``apt-get update`` when a download fails.
    """
    if min_downscale not in DOWNSCALES:
        raise ValueError(f"min_downscale must be one of {DOWNSCALES}, got {min_downscale}")
    out_dir = Path(out_dir).expanduser().absolute() if out_dir is not None else default_out_dir()
    if out_dir.resolve().is_relative_to(Path(__file__).resolve().parent):
        raise CorpusError(f"{out_dir} is inside the restore_gym package; choose a folder outside it")
    problem = corpus_problem(out_dir)
    if problem is None and not force:
        log.info("a complete corpus is already in %s (pass --force to rebuild it)", out_dir)
        return out_dir
    if out_dir.exists() and not out_dir.is_dir():
        raise CorpusError(f"{out_dir} is not a folder; choose another --out")
    if out_dir.exists() and any(out_dir.iterdir()) and not force:
        raise CorpusError(f"{out_dir} is not empty and holds no complete corpus ({problem}); choose another --out, "
                          "or pass --force to replace the corpus files there (files the corpus did not write stay)")
    with tempfile.TemporaryDirectory(prefix="restore-gym-debs-") as workdir:
        packages = [fetch_package(source, Path(workdir), apt_update) for source in PACKAGE_SOURCES]
        return write_corpus(out_dir, packages, min_downscale)


def summary(out_dir: Path) -> str:
    """Images and megapixels per source of the corpus in ``out_dir``."""
    images = json.loads((out_dir / MANIFEST).read_text())["images"]
    lines = [f"corpus in {out_dir}"]
    sources = sorted({entry["source"] for entry in images}, key=lambda s: (s != BUILTIN_SOURCE, s))
    for source in [*sources, None]:
        chosen = [entry for entry in images if source is None or entry["source"] == source]
        megapixels = sum(entry["size"][0] * entry["size"][1] for entry in chosen) / 1e6
        lines.append(f"  {source or 'total':<18} {len(chosen):>4} images {megapixels:>8.2f} MP")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: build the corpus and print a summary; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m restore_gym.corpus",
        description=__doc__.split("\n\n")[0],
        epilog="The module documentation (python -m pydoc restore_gym.corpus) lists the sources and rules.",
    )
    parser.add_argument("--out", type=Path, help=f"output folder (default {default_out_dir()})")
    parser.add_argument(
        "--min-downscale",
        type=int,
        choices=DOWNSCALES,
        default=2,
        help="smallest area-averaging factor for the package photos (default 2)",
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if a complete corpus exists, or "
                        "replace the corpus files of a damaged one (other files in the folder stay)")
    parser.add_argument("--apt-update", action="store_true",
                        help="if a download fails, run apt-get update (refreshes the system's package lists) and retry")
    parser.add_argument("--verbose", action="store_true", help="log every kept and skipped image")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.verbose:
        log.setLevel(logging.DEBUG)
    start = time.perf_counter()
    try:
        out_dir = build_corpus(args.out, min_downscale=args.min_downscale, force=args.force,
                               apt_update=args.apt_update)
    except CorpusError as error:
        print(f"error: {error}")
        return 1
    print(summary(out_dir))
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Clean-image sources, patch sampling and the frozen test sets.

Two kinds of clean-image source share one interface (:class:`ImageSource`):

- :class:`BuiltinImages`, the natural RGB photos that scikit-image ships inside its wheel (no
  network): ``train`` = motorcycle_left.png, motorcycle_right.png (one stereo pair, so one split),
  rocket.jpg; ``test`` = astronaut.png, chelsea.png, coffee.png.
- :class:`FolderImages`, any folder of PNG/JPEG/BMP/TIFF images searched recursively (a DIV2K
  download, say), split by a hash of each file's relative path, so the split is deterministic and
  stays put when files are added.

Every image is used at the scales 1, 2/3 and 1/3 (Pillow's antialiased bicubic resize). Patches are
63x63 and are degraded inside a region with a 16-pixel margin (see :mod:`restore_gym.degrade`).

The frozen test sets (:func:`load_test_set`) cover the built-in test split at stride 63 over the three
scales, each patch with its own degradation draw from a fixed seed. Their SHA-256 digests are recorded
in ``testsets.json``; a set whose bytes differ (another JPEG library, say) loads with a loud warning and
carries the digest it was built with, for every result to record. A cached set that cannot be read or
whose patches no longer match the digest it was cached with is rebuilt, with a warning naming the file.

Images that cannot be read (truncated, unidentified, or over Pillow's decompression-bomb limit) are
skipped with a warning naming them.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from restore_gym.degrade import (
    DIFFICULTIES,
    MARGIN,
    PATCH_SIZE,
    DegradationParams,
    check_difficulty,
    check_generator,
    degrade_batch,
    degrade_patch,
    sample_params,
    uint8_to_float,
)
from restore_gym.metrics import psnr
from restore_gym.records import read_npz_cache, write_npz_atomic

SCALES: tuple[float, ...] = (1.0, 2.0 / 3.0, 1.0 / 3.0)
SPLITS: tuple[str, ...] = ("train", "test")
BUILTIN_SPLITS: dict[str, tuple[str, ...]] = {
    "train": ("motorcycle_left.png", "motorcycle_right.png", "rocket.jpg"),
    "test": ("astronaut.png", "chelsea.png", "coffee.png"),
}
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
MIN_SIDE = PATCH_SIZE + 2 * MARGIN
TEST_SET_SEEDS: dict[str, int] = {"mild": 20180601, "moderate": 20180602, "severe": 20180603}
TEST_SET_FORMAT = 1
_DIGESTS_FILE = Path(__file__).with_name("testsets.json")


class TestSetDigestWarning(UserWarning):
    """A generated test set's bytes differ from the digest recorded in the repository."""

    __test__ = False


def cache_dir() -> Path:
    """The user cache directory of restore-gym: ``$RESTORE_GYM_CACHE``, else ``$XDG_CACHE_HOME/restore-gym``."""
    if os.environ.get("RESTORE_GYM_CACHE"):
        return Path(os.environ["RESTORE_GYM_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "restore-gym"


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    return split


def to_rgb(image: Image.Image) -> np.ndarray:
    """A Pillow image as an H x W x 3 uint8 RGB array: grayscale is replicated, alpha dropped."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        image = Image.fromarray(np.clip(array / 257.0, 0, 255).astype(np.uint8))
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def rescale(image: np.ndarray, scale: float) -> np.ndarray:
    """Resize an H x W x 3 uint8 image by ``scale`` with Pillow's antialiased bicubic filter."""
    if scale == 1.0:
        return image
    height, width = image.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BICUBIC), dtype=np.uint8)


def to_nchw(patches: list[np.ndarray] | np.ndarray) -> torch.Tensor:
    """Stack H x W x 3 float patches into an N x 3 x H x W float32 torch tensor."""
    return torch.from_numpy(np.stack(patches).astype(np.float32)).permute(0, 3, 1, 2).contiguous()


@dataclass(frozen=True)
class DegradedPatch:
    """One degraded patch, its clean original and where and how it was made."""

    degraded: np.ndarray
    clean: np.ndarray
    params: DegradationParams
    image_id: str
    scale: float
    top: int
    left: int


@dataclass(frozen=True)
class PatchStack:
    """N degraded patches and their clean originals, N x 3 x 63 x 63 float32 tensors in [0, 1] on one device,
    with the degradation parameters and the source ``(image_id, scale, top, left)`` of each."""

    degraded: torch.Tensor
    clean: torch.Tensor
    params: list[DegradationParams]
    sources: list[tuple[str, float, int, int]]

    def __len__(self) -> int:
        return len(self.params)

    @classmethod
    def from_uint8(cls, degraded: np.ndarray, clean: np.ndarray, params: list[DegradationParams],
                   sources: list[tuple[str, float, int, int]], device: torch.device | str = "cpu") -> PatchStack:
        """From N x H x W x 3 uint8 arrays, converted on ``device`` (the values of ``u / 255`` in float32)."""
        def convert(pixels: np.ndarray) -> torch.Tensor:
            return uint8_to_float(torch.from_numpy(np.ascontiguousarray(pixels)).to(device)).permute(0, 3, 1, 2)

        return cls(convert(degraded), convert(clean), list(params), list(sources))

    @classmethod
    def from_patches(cls, patches: Sequence[DegradedPatch], device: torch.device | str = "cpu") -> PatchStack:
        """From :class:`DegradedPatch` objects (float H x W x 3 arrays)."""
        return cls(to_nchw([p.degraded for p in patches]).to(device), to_nchw([p.clean for p in patches]).to(device),
                   [p.params for p in patches], [(p.image_id, p.scale, p.top, p.left) for p in patches])

    def take(self, positions: Sequence[int]) -> PatchStack:
        """The patches at ``positions``, in that order."""
        index = torch.as_tensor(list(positions), dtype=torch.long, device=self.degraded.device)
        return PatchStack(self.degraded.index_select(0, index), self.clean.index_select(0, index),
                          [self.params[k] for k in positions], [self.sources[k] for k in positions])


class ImageSource:
    """A named list of clean RGB images (uint8, H x W x 3) for one split, loaded once and kept in memory."""

    name: str = "source"

    def __init__(self, split: str = "train") -> None:
        self.split = _check_split(split)
        self._images: list[tuple[str, np.ndarray]] | None = None
        self._scaled: list[tuple[str, float, np.ndarray]] | None = None
        self._area_weights: np.ndarray | None = None

    def _load(self) -> list[tuple[str, np.ndarray]]:
        raise NotImplementedError

    def images(self) -> list[tuple[str, np.ndarray]]:
        """``(image_id, image)`` pairs in a deterministic order."""
        if self._images is None:
            self._images = self._load()
        return self._images

    def scaled_images(self) -> list[tuple[str, float, np.ndarray]]:
        """``(image_id, scale, image)`` for every image at every scale of :data:`SCALES` that can hold a patch."""
        if self._scaled is None:
            self._scaled = [
                (image_id, scale, scaled)
                for image_id, image in self.images()
                for scale in SCALES
                if min((scaled := rescale(image, scale)).shape[:2]) >= MIN_SIDE
            ]
            if not self._scaled:
                raise ValueError(f"{self.describe()} yields no image of at least {MIN_SIDE}x{MIN_SIDE} pixels")
        return self._scaled

    def describe(self) -> str:
        """A short human-readable description, e.g. for logs and result files."""
        return f"{self.name}[{self.split}]"

    def grid_positions(self) -> list[tuple[int, int, int]]:
        """``(index into scaled_images, top, left)`` of every patch at stride 63, in a fixed order."""
        positions = []
        for index, (_, _, image) in enumerate(self.scaled_images()):
            height, width = image.shape[:2]
            rows = (height - 2 * MARGIN) // PATCH_SIZE
            cols = (width - 2 * MARGIN) // PATCH_SIZE
            positions += [
                (index, MARGIN + r * PATCH_SIZE, MARGIN + c * PATCH_SIZE) for r in range(rows) for c in range(cols)
            ]
        return positions

    def draw_place(self, difficulty: str, rng: np.random.Generator) -> tuple[int, int, int, DegradationParams]:
        """What a random patch draws before its noise: scaled image (chance proportional to area), top, left and
        degradation parameters."""
        check_generator(rng)
        scaled = self.scaled_images()
        if self._area_weights is None:
            areas = np.array([(im.shape[0] - MIN_SIDE + 1) * (im.shape[1] - MIN_SIDE + 1) for _, _, im in scaled],
                             dtype=np.float64)
            self._area_weights = areas / areas.sum()
        index = int(rng.choice(len(scaled), p=self._area_weights))
        image = scaled[index][2]
        top = int(rng.integers(MARGIN, image.shape[0] - PATCH_SIZE - MARGIN + 1))
        left = int(rng.integers(MARGIN, image.shape[1] - PATCH_SIZE - MARGIN + 1))
        return index, top, left, sample_params(difficulty, rng)

    def sample_patch(self, difficulty: str, rng: np.random.Generator) -> DegradedPatch:
        """A patch at a random scale and position (chosen with chance proportional to area), degraded anew."""
        check_difficulty(difficulty)
        index, top, left, params = self.draw_place(difficulty, rng)
        return self.patch_at(index, top, left, params, rng)

    def sample_patches(self, difficulty: str, rngs: Sequence[np.random.Generator],
                       device: torch.device | str = "cpu") -> PatchStack:
        """Patch k as :meth:`sample_patch` draws it with ``rngs[k]`` (distinct generators), all degraded together
        by :func:`~restore_gym.degrade.degrade_batch` on ``device``."""
        check_difficulty(difficulty)
        if not rngs:
            raise ValueError("sample_patches needs at least one generator")
        places = [self.draw_place(difficulty, rng) for rng in rngs]
        scaled = self.scaled_images()
        regions = np.stack([scaled[index][2][top - MARGIN : top + PATCH_SIZE + MARGIN,
                                             left - MARGIN : left + PATCH_SIZE + MARGIN]
                            for index, top, left, _ in places])
        params = [place[3] for place in places]
        degraded = degrade_batch(regions, params, rngs, device)
        inner = slice(MARGIN, MARGIN + PATCH_SIZE)
        sources = [(scaled[index][0], scaled[index][1], top, left) for index, top, left, _ in places]
        return PatchStack.from_uint8(degraded[:, inner, inner], regions[:, inner, inner], params, sources, device)

    def patch_at(
        self, index: int, top: int, left: int, params: DegradationParams, rng: np.random.Generator
    ) -> DegradedPatch:
        """Degrade the patch at (top, left) of scaled image ``index`` with ``params``."""
        image_id, scale, image = self.scaled_images()[index]
        degraded, clean = degrade_patch(image, top, left, params, rng)
        return DegradedPatch(degraded, clean, params, image_id, scale, top, left)


def _skimage_data_dir() -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data"


class BuiltinImages(ImageSource):
    """The natural RGB photos shipped inside scikit-image's wheel, split by image (see module docstring)."""

    name = "builtin"

    def _load(self) -> list[tuple[str, np.ndarray]]:
        images = []
        for filename in BUILTIN_SPLITS[self.split]:
            path = _skimage_data_dir() / filename
            if not path.is_file():
                raise FileNotFoundError(
                    f"scikit-image's bundled image {filename} is missing from {path.parent}; reinstall scikit-image"
                )
            with Image.open(path) as image:
                images.append((Path(filename).stem, to_rgb(image)))
        return images


def _split_rank(relative_path: str) -> str:
    return hashlib.sha256(relative_path.encode("utf-8")).hexdigest()


def folder_split(relative_paths: list[str], test_fraction: float) -> dict[str, list[str]]:
    """Split relative paths into train and test by their SHA-256 rank; disjoint, deterministic, both non-empty.

    The ``ceil(test_fraction * n)`` paths with the lowest hash go to test (at least one when n >= 2).
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    ranked = sorted(relative_paths, key=_split_rank)
    n_test = max(1, math.ceil(test_fraction * len(ranked))) if len(ranked) >= 2 else 0
    return {"test": sorted(ranked[:n_test]), "train": sorted(ranked[n_test:])}


class FolderImages(ImageSource):
    """All images under ``root`` (searched recursively), with a deterministic train/test split by file."""

    name = "folder"

    def __init__(self, root: str | os.PathLike, split: str = "train", test_fraction: float = 0.1) -> None:
        super().__init__(split)
        self.root = Path(root).expanduser()
        if not self.root.exists():
            raise FileNotFoundError(f"image folder {self.root} does not exist")
        if not self.root.is_dir():
            raise NotADirectoryError(f"{self.root} is not a folder; pass a folder of PNG/JPEG/BMP/TIFF images")
        self.test_fraction = test_fraction
        files = sorted(
            p.relative_to(self.root).as_posix()
            for p in self.root.rglob("*")
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not files:
            suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
            raise ValueError(f"image folder {self.root} holds no images; expected files ending in {suffixes}")
        self.files = folder_split(files, test_fraction)[split]
        if not self.files:
            raise ValueError(f"image folder {self.root} has only {len(files)} image(s): too few for a {split} split")

    def describe(self) -> str:
        return f"folder:{self.root.name}[{self.split}]"

    def _load(self) -> list[tuple[str, np.ndarray]]:
        images, unreadable, smallest = [], [], None
        for relative in self.files:
            try:
                with Image.open(self.root / relative) as image:
                    image.load()
                    array = to_rgb(image)
            except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as error:
                unreadable.append(f"{relative} ({error})")
                continue
            side = min(array.shape[:2])
            smallest = side if smallest is None else min(smallest, side)
            if side >= MIN_SIDE:
                images.append((relative, array))
        if unreadable:
            warnings.warn(
                f"skipped {len(unreadable)} unreadable or truncated image(s) in {self.root}: " + "; ".join(unreadable),
                stacklevel=2,
            )
        if not images:
            if smallest is None:
                raise ValueError(f"no image in {self.root} could be read ({self.split} split)")
            raise ValueError(
                f"every image of the {self.split} split in {self.root} is too small: the largest short side is "
                f"{smallest} px, but a {PATCH_SIZE}x{PATCH_SIZE} patch with its {MARGIN}-pixel degradation margin "
                f"needs at least {MIN_SIDE}x{MIN_SIDE}"
            )
        return images


@dataclass(frozen=True)
class TestSet:
    """A frozen set of degraded/clean patch pairs (N x 63 x 63 x 3 float32 in [0, 1]) and their provenance."""

    difficulty: str
    degraded: np.ndarray
    clean: np.ndarray
    params: list[DegradationParams]
    digest: str
    expected_digest: str | None
    sources: list[tuple[str, float, int, int]] = field(repr=False)

    __test__ = False

    @property
    def digest_matches(self) -> bool:
        """Whether these bytes are the ones recorded in the repository."""
        return self.digest == self.expected_digest

    def __len__(self) -> int:
        return len(self.degraded)


def digest_of(degraded: np.ndarray) -> str:
    """SHA-256 of a stack of degraded patches, taken over their 8-bit values in C order."""
    return hashlib.sha256(np.ascontiguousarray(np.round(degraded * 255.0).astype(np.uint8)).tobytes()).hexdigest()


def expected_digests() -> dict[str, str]:
    """The test-set digests recorded in the repository, by difficulty."""
    return json.loads(_DIGESTS_FILE.read_text())["digests"]


def build_test_set(difficulty: str, source: ImageSource | None = None, seed: int | None = None) -> TestSet:
    """Degrade every stride-63 patch of ``source`` (default: the built-in test split) with its own draw."""
    check_difficulty(difficulty)
    source = source or BuiltinImages("test")
    rng = np.random.default_rng(TEST_SET_SEEDS[difficulty] if seed is None else seed)
    patches = [
        source.patch_at(index, top, left, sample_params(difficulty, rng), rng)
        for index, top, left in source.grid_positions()
    ]
    degraded = np.stack([p.degraded for p in patches])
    frozen = isinstance(source, BuiltinImages) and source.split == "test" and seed is None
    return TestSet(
        difficulty=difficulty,
        degraded=degraded,
        clean=np.stack([p.clean for p in patches]),
        params=[p.params for p in patches],
        digest=digest_of(degraded),
        expected_digest=expected_digests().get(difficulty) if frozen else None,
        sources=[(p.image_id, p.scale, p.top, p.left) for p in patches],
    )


def _to_cache(test_set: TestSet, path: Path) -> None:
    params = test_set.params
    write_npz_atomic(
        path,
        degraded=np.round(test_set.degraded * 255.0).astype(np.uint8),
        clean=np.round(test_set.clean * 255.0).astype(np.uint8),
        levels=np.array([p.levels for p in params], dtype=np.int64),
        blur_sigma=np.array([p.blur_sigma for p in params]),
        noise_sigma=np.array([p.noise_sigma for p in params]),
        jpeg_quality=np.array([p.jpeg_quality for p in params], dtype=np.int64),
        sources=np.array(json.dumps(test_set.sources)),
        digest=np.array(test_set.digest),
    )


def _from_cache(data: Mapping[str, np.ndarray], difficulty: str) -> TestSet:
    """The test set of the cached arrays ``data``; ValueError if its patches do not match the digest cached
    with them."""
    degraded = data["degraded"].astype(np.float32) / 255.0
    if digest_of(degraded) != str(data["digest"]):
        raise ValueError("its patches do not match the digest they were cached with")
    params = [
        DegradationParams(tuple(int(k) for k in lv), float(b), float(n), int(q))
        for lv, b, n, q in zip(data["levels"], data["blur_sigma"], data["noise_sigma"], data["jpeg_quality"])
    ]
    return TestSet(
        difficulty=difficulty,
        degraded=degraded,
        clean=data["clean"].astype(np.float32) / 255.0,
        params=params,
        digest=str(data["digest"]),
        expected_digest=expected_digests().get(difficulty),
        sources=[tuple(s) for s in json.loads(str(data["sources"]))],
    )


def load_test_set(difficulty: str) -> TestSet:
    """The frozen test set of ``difficulty`` (built once, then read from the user cache; a damaged cache is
    rebuilt with a warning naming it).

    Warns with :class:`TestSetDigestWarning` when its bytes differ from the recorded digest; the
    returned set's ``digest`` is the one every result should record.
    """
    check_difficulty(difficulty)
    path = cache_dir() / "testsets" / f"v{TEST_SET_FORMAT}-{difficulty}.npz"
    test_set = read_npz_cache(path, lambda data: _from_cache(data, difficulty), f"{difficulty} test set")
    if test_set is None:
        test_set = build_test_set(difficulty)
        _to_cache(test_set, path)
    if not test_set.digest_matches:
        warnings.warn(
            f"the {difficulty} test set built here has SHA-256 {test_set.digest}, not the recorded "
            f"{test_set.expected_digest}: this machine's JPEG or resampling library differs, so results are not "
            "comparable with published ones; every result file records the digest it used",
            TestSetDigestWarning,
            stacklevel=2,
        )
    return test_set


def summarize_test_sets() -> list[dict]:
    """Count, mean input PSNR and digest status of the three frozen test sets."""
    rows = []
    for difficulty in DIFFICULTIES:
        ts = load_test_set(difficulty)
        rows.append(
            {
                "difficulty": difficulty,
                "patches": len(ts),
                "mean_input_psnr": float(np.mean([psnr(d, c) for d, c in zip(ts.degraded, ts.clean)])),
                "digest": ts.digest,
                "digest_matches": ts.digest_matches,
            }
        )
    return rows

"""A fixed pool of degraded training patches, as the authors trained: built once, memory-mapped, sampled.

The authors' data script degraded a fixed set of training patches once (an HDF5 file) and their training
sampled from it. ``patches="pool"`` in the environments does the same. A pool holds ``size`` patches of one
difficulty from one image source; it is built once per (contents of the source's images, difficulty, size,
seed) and cached in ``cache_dir() / "pools" / KEY`` as ``.npy`` arrays that are memory-mapped (and read once
in order when opened, so that random rows do not wait on the disk):
the degraded and clean patches as uint8 (both are exact in 8 bits: the degraded one comes out of its JPEG
step, the clean one is the source's pixels), their degradation parameters and where they were cut, and
``pool.json`` (the parameters, the image ids and the SHA-256 of the degraded patches).

Patch ``k`` of a pool is ``source.sample_patch(difficulty, numpy.random.default_rng([seed, k]))``, so a pool
is the same whatever the number of worker processes that built it, and each of its patches equals the
fresh patch drawn with that generator. A damaged pool is rebuilt with a warning naming it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from restore_gym.data import DegradedPatch, ImageSource, PatchStack, cache_dir
from restore_gym.degrade import PATCH_SIZE, DegradationParams, check_difficulty
from restore_gym.parallel import run_in_processes
from restore_gym.records import write_json_atomic

POOL_FORMAT = "restore-gym-patch-pool-v1"
META_FILE = "pool.json"
CHUNK = 2048  # patches per job when building
PAGE_BYTES = 4096
_ARRAYS: dict[str, tuple[tuple[int, ...], str]] = {
    "degraded": ((PATCH_SIZE, PATCH_SIZE, 3), "uint8"),
    "clean": ((PATCH_SIZE, PATCH_SIZE, 3), "uint8"),
    "levels": ((3,), "int8"),
    "values": ((2,), "float64"),  # blur sigma, noise sigma
    "quality": ((), "int16"),
    "image": ((), "int32"),  # index into pool.json's image_ids
    "scale": ((), "float64"),
    "corner": ((2,), "int32"),  # top, left
}
_VERIFIED: set[tuple[str, int]] = set()


def pool_key(source: ImageSource, difficulty: str, size: int, seed: int) -> str:
    """The cache key of a pool: a hash of the format, the parameters and every image of ``source``."""
    digest = hashlib.sha256(f"{POOL_FORMAT}|{difficulty}|{size}|{seed}".encode())
    for image_id, image in source.images():
        digest.update(f"|{image_id}|{image.shape}|".encode())
        digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()[:32]


class PatchPool:
    """A built pool, memory-mapped: ``len(pool)`` patches, ``pool.patch(k)`` the k-th as a DegradedPatch."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.meta = json.loads((self.folder / META_FILE).read_text())
        if self.meta.get("format") != POOL_FORMAT:
            raise ValueError(f"{self.folder} is not a patch pool of format {POOL_FORMAT!r}")
        self.arrays = {name: np.load(self.folder / f"{name}.npy", mmap_mode="r") for name in _ARRAYS}
        size = self.meta["size"]
        for name, (shape, dtype) in _ARRAYS.items():
            array = self.arrays[name]
            if array.shape != (size, *shape) or array.dtype != np.dtype(dtype):
                raise ValueError(f"{self.folder / f'{name}.npy'} holds {array.dtype} {array.shape}, expected "
                                 f"{dtype} {(size, *shape)}")
        for array in self.arrays.values():
            _touch(array)

    def __len__(self) -> int:
        return self.meta["size"]

    def verify(self) -> None:
        """ValueError unless the degraded patches hash to the recorded digest (checked once per process)."""
        key = (str(self.folder), (self.folder / "degraded.npy").stat().st_mtime_ns)
        if key in _VERIFIED:
            return
        if _digest(self.arrays["degraded"]) != self.meta["digest"]:
            raise ValueError(f"{self.folder}: the degraded patches do not match the recorded digest")
        _VERIFIED.add(key)

    def _described(self, rows: np.ndarray) -> tuple[list[DegradationParams], list[tuple[str, float, int, int]]]:
        """The degradation parameters and the sources ``(image_id, scale, top, left)`` of patches ``rows``."""
        a, ids = self.arrays, self.meta["image_ids"]
        params = [DegradationParams(levels=tuple(int(v) for v in levels), blur_sigma=float(values[0]),
                                    noise_sigma=float(values[1]), jpeg_quality=int(quality))
                  for levels, values, quality in zip(a["levels"][rows], a["values"][rows], a["quality"][rows])]
        sources = [(ids[int(image)], float(scale), int(corner[0]), int(corner[1]))
                   for image, scale, corner in zip(a["image"][rows], a["scale"][rows], a["corner"][rows])]
        return params, sources

    def patch(self, k: int) -> DegradedPatch:
        """Patch ``k`` as the fresh draw of it would be: float32 images in [0, 1], parameters and source."""
        (params,), (source,) = self._described(np.array([k]))
        a = self.arrays
        return DegradedPatch(np.asarray(a["degraded"][k], dtype=np.float32) / np.float32(255.0),
                             np.asarray(a["clean"][k], dtype=np.float32) / np.float32(255.0), params, *source)

    def patches(self, rows: Sequence[int], device: torch.device | str = "cpu") -> PatchStack:
        """Patches ``rows`` (in that order) as :meth:`patch` gives them, stacked on ``device``."""
        rows = np.asarray(rows, dtype=np.int64)
        params, sources = self._described(rows)
        return PatchStack.from_uint8(self.arrays["degraded"][rows], self.arrays["clean"][rows], params, sources,
                                     device)


def _touch(array: np.memmap) -> None:
    """Read one byte of every page of a memory-mapped array, in order. Rows are drawn at random, and a row still on
    disk costs a seek (on the project's machine about 0.45 ms a row, 0.9 ms a patch, against microseconds once
    mapped); read in order the kernel loads the file at disk speed, and the pages stay mapped in this process
    (file-backed: shared between processes and reclaimable)."""
    array.reshape(-1).view(np.uint8)[::PAGE_BYTES].sum()


def _digest(degraded: np.ndarray) -> str:
    digest = hashlib.sha256()
    for start in range(0, len(degraded), CHUNK):
        digest.update(np.ascontiguousarray(degraded[start : start + CHUNK]).tobytes())
    return digest.hexdigest()


def _fill(folder: Path, source: ImageSource, difficulty: str, seed: int, start: int, stop: int,
          image_ids: list[str], progress: Callable[[float], None] | None = None) -> None:
    """Draw patches ``start`` .. ``stop - 1`` into the pool arrays of ``folder`` (opened for writing)."""
    arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r+") for name in _ARRAYS}
    index = {image_id: i for i, image_id in enumerate(image_ids)}
    for k in range(start, stop):
        patch = source.sample_patch(difficulty, np.random.default_rng([seed, k]))
        arrays["degraded"][k] = np.rint(patch.degraded * 255.0).astype(np.uint8)
        arrays["clean"][k] = np.rint(patch.clean * 255.0).astype(np.uint8)
        arrays["levels"][k] = patch.params.levels
        arrays["values"][k] = (patch.params.blur_sigma, patch.params.noise_sigma)
        arrays["quality"][k] = patch.params.jpeg_quality
        arrays["image"][k] = index[patch.image_id]
        arrays["scale"][k] = patch.scale
        arrays["corner"][k] = (patch.top, patch.left)
        if progress is not None and (k - start + 1) % 64 == 0:
            progress(64)
    for array in arrays.values():
        array.flush()


def _fill_from_spec(folder: Path, source_spec: Any, difficulty: str, seed: int, start: int, stop: int,
                    image_ids: list[str], progress: Callable[[float], None] | None = None) -> None:
    from restore_gym.sources import resolve_source  # a worker process rebuilds the source from its name

    _fill(folder, resolve_source(source_spec, "train"), difficulty, seed, start, stop, image_ids, progress)


def build_pool(source: ImageSource, difficulty: str, size: int, seed: int, folder: Path, jobs: int = 1,
               source_spec: Any = None, progress: bool = True) -> PatchPool:
    """Build the pool into ``folder`` atomically (a temporary folder renamed into place); ``jobs`` > 1 builds
    in worker processes, which need ``source_spec``, the name the source was resolved from."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    try:
        for name, (shape, dtype) in _ARRAYS.items():
            np.lib.format.open_memmap(tmp / f"{name}.npy", mode="w+", dtype=dtype, shape=(size, *shape)).flush()
        image_ids = [image_id for image_id, _, _ in source.scaled_images()]
        image_ids = list(dict.fromkeys(image_ids))
        chunks = [(start, min(size, start + CHUNK)) for start in range(0, size, CHUNK)]
        with tqdm(total=size, unit="patch", desc=f"patch pool ({difficulty}, {size})", disable=not progress) as bar:
            if jobs > 1 and source_spec is not None and len(chunks) > 1:
                run_in_processes(_fill_from_spec, [(tmp, source_spec, difficulty, seed, a, b, image_ids)
                                                   for a, b in chunks], jobs,
                                 on_progress=lambda _i, amount: bar.update(amount))
            else:
                for a, b in chunks:
                    _fill(tmp, source, difficulty, seed, a, b, image_ids, bar.update)
            bar.update(size - bar.n)
        degraded = np.load(tmp / "degraded.npy", mmap_mode="r")
        write_json_atomic(tmp / META_FILE, {
            "format": POOL_FORMAT, "source": source.describe(), "difficulty": difficulty, "size": size,
            "seed": seed, "image_ids": image_ids, "digest": _digest(degraded),
        })
        del degraded
        if folder.exists():  # built meanwhile by another process: keep that one
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return PatchPool(folder)


def load_pool(source: ImageSource, difficulty: str, size: int = 100_000, seed: int = 0, jobs: int | None = None,
              source_spec: Any = None, progress: bool = True) -> PatchPool:
    """The pool of (``source``, ``difficulty``, ``size``, ``seed``) from the cache, built first if missing or
    damaged (with a warning naming it). Builds in ``jobs`` worker processes (default: one per core)."""
    check_difficulty(difficulty)
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"pool_size must be a positive integer, got {size!r}")
    folder = cache_dir() / "pools" / pool_key(source, difficulty, int(size), int(seed))
    if folder.exists():
        try:
            pool = PatchPool(folder)
            pool.verify()
            return pool
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as error:
            warnings.warn(f"the patch pool {folder} is damaged ({error}); rebuilding it", stacklevel=2)
            shutil.rmtree(folder)
    jobs = jobs if jobs is not None else max(1, min(os.cpu_count() or 1, 8))
    return build_pool(source, difficulty, int(size), int(seed), folder, jobs, source_spec, progress)

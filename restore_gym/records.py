"""Result files: atomic writes, verified weight files and the provenance every result records.

:func:`write_atomic` writes a file through a temp file ``.<name>.<8 random characters>.tmp`` beside it; a
process killed mid-write leaves that temp file behind, and :func:`remove_stale_temporaries` removes such
leftovers when a training starts. A cache written with :func:`write_npz_atomic` is read back with
:func:`read_npz_cache`, which takes a damaged one for missing, with a warning naming it, so that it is rebuilt.

Torch files are verified before they are loaded (:func:`verify_torch_file`, once per process per file
version): a file shipped in ``restore_gym/weights/`` must match its SHA-256 recorded in
``restore_gym/weights/SHA256SUMS`` (``sha256sum`` format), any other file its zip archive's CRCs (every
file written by ``torch.save`` is a zip archive). To ship a new or retrained weights file, record its
digest in the same commit: ``(cd restore_gym/weights && sha256sum *.pt > SHA256SUMS)``.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import subprocess
import tempfile
import time
import warnings
import zipfile
from collections.abc import Callable, Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import IO, Any, TypeVar

import numpy as np
import torch

_PACKAGES = ("restore-gym", "torch", "numpy", "gymnasium", "stable-baselines3", "sb3-contrib", "scikit-image", "Pillow")
WEIGHTS_DIR = Path(__file__).with_name("weights")
DIGESTS_FILE = "SHA256SUMS"
DIGEST_COMMAND = f"(cd restore_gym/weights && sha256sum *.pt > {DIGESTS_FILE})"
# What write_atomic's temp files are called: mkstemp's 8 random characters between the prefix and suffix.
_TEMPORARY = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")
_VERIFIED: set[tuple[str, int, int]] = set()
RESTORE_ADVICE = "restore it from a copy or write it anew"
_started = time.time()  # when this process imported this module (reset in a forked child)
# What reading a damaged .npz raises: truncated (BadZipFile, EOFError), a failed CRC (BadZipFile), a missing
# array (KeyError), no archive at all (ValueError, OSError), a wrong type (TypeError).
_DAMAGED_NPZ = (OSError, EOFError, KeyError, ValueError, TypeError, zipfile.BadZipFile)
T = TypeVar("T")


def _restart_clock() -> None:
    global _started
    _started = time.time()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_restart_clock)


def write_atomic(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(handle)`` on a temp file beside ``path``, fsync, then rename it onto ``path``.

    A reader never sees half a file, and on any failure a previous file at ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if hasattr(os, "fchmod"):  # mkstemp creates 0600; results and weights are for everyone to read
            os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if hasattr(os, "O_DIRECTORY"):  # POSIX: make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def check_writable(path: str | os.PathLike) -> Path:
    """``path`` as a Path if :func:`write_atomic` can write a file there (creating the folders it lacks); else a
    ValueError saying why not: ``path`` is a folder, a file stands where a folder above it should be, or the
    folder it would be written in is not writable."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give the path of a file in it, e.g. {path / 'report.json'}")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ValueError(f"cannot write {path}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write {path}: the folder {folder} is not writable")
    return path


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temp files of :func:`write_atomic` (``.<name>.<8 random characters>.tmp``) that a killed
    process left in ``folder``: only files of exactly that name, last modified before this process started
    (so never one being written now). Returns the removed paths."""
    removed = []
    for path in sorted(Path(folder).iterdir()) if Path(folder).is_dir() else []:
        if _TEMPORARY.fullmatch(path.name) and path.is_file() and not path.is_symlink() \
                and path.stat().st_mtime < _started:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temp file in the same folder, so a reader never sees half a file."""
    write_atomic(path, lambda handle: handle.write(text.encode("utf-8")))


def write_npz_atomic(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Write ``arrays`` as an uncompressed ``.npz`` to ``path`` atomically."""
    write_atomic(path, lambda handle: np.savez(handle, **arrays))


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_npz_cache(path: str | os.PathLike, read: Callable[[Mapping[str, np.ndarray]], T], what: str) -> T | None:
    """``read(arrays)`` of the ``.npz`` cache file ``path`` (``np.load``, no pickles); None when there is no such
    file, or, with a warning naming ``what`` and ``path``, when it is damaged (truncated, failing a CRC check,
    lacking an array, or refused by ``read`` with a ValueError): the caller then rebuilds it (and rewrites it
    with :func:`write_npz_atomic`)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        with path.open("rb") as handle, np.load(handle) as arrays:  # np.load leaves a path it opened open on failure
            return read(arrays)
    except _DAMAGED_NPZ as error:
        warnings.warn(f"the cached {what} {path} is damaged ({type(error).__name__}: {error}); rebuilding it",
                      stacklevel=3)
        return None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _cpu_model() -> str | None:
    """The CPU's model name (Linux's ``/proc/cpuinfo``), else what :func:`platform.processor` says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _memory_gib() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (AttributeError, ValueError, OSError):
        return None


def provenance() -> dict[str, Any]:
    """Package versions, torch/CUDA versions, git commit and hardware (CPU model and count, memory, GPU) of this
    run."""
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return {
        "packages": versions,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "git_commit": _git_commit(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "torch_threads": torch.get_num_threads(),
    }


def file_sha256(*paths: str | os.PathLike) -> str:
    """SHA-256 over the bytes of ``paths``, in order; a folder counts as its files in name order."""
    digest = hashlib.sha256()
    for given in paths:
        path = Path(given)
        for file in sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]:
            with file.open("rb") as handle:
                for block in iter(lambda handle=handle: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def _shipped_file_problem(path: Path) -> str | None:
    """Why the shipped weights file ``path`` is not the one recorded in SHA256SUMS, or None."""
    digests_path = WEIGHTS_DIR / DIGESTS_FILE
    recorded = {}
    if digests_path.is_file():
        for line in digests_path.read_text().splitlines():
            digest, _, name = line.strip().partition(" ")
            recorded[name.strip().lstrip("*")] = digest.lower()
    if path.name not in recorded:
        return (f"no SHA-256 is recorded for it in {digests_path}; if it is meant to be shipped, record its digest: "
                f"{DIGEST_COMMAND}")
    if file_sha256(path) != recorded[path.name]:
        return (f"its SHA-256 differs from the one recorded in {digests_path}: the file is damaged; reinstall "
                f"restore-gym (or `git checkout` the file), or, if you replaced it on purpose, record its digest: "
                f"{DIGEST_COMMAND}")
    return None


def _archive_problem(path: Path) -> str | None:
    """Why the zip archive of torch file ``path`` is damaged (a member fails its CRC check, say), or None; a
    file that is no zip archive is left to ``torch.load`` to judge."""
    if not zipfile.is_zipfile(path):
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as error:
        return f"its zip archive cannot be read ({error})"
    return f"archive member {bad!r} fails its CRC check" if bad else None


def verify_torch_file(path: str | os.PathLike, unreadable: type[Exception] = ValueError,
                      advice: str = RESTORE_ADVICE) -> None:
    """``unreadable`` naming ``path`` and what to do (``advice`` for a damaged file that is not shipped) unless its
    bytes are those written: a file shipped in ``restore_gym/weights/`` must match its recorded SHA-256, any
    other its archive's CRCs (see the module docstring). A file is verified once per process per (path,
    modification time, size)."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key in _VERIFIED:
        return
    if path.resolve().parent == WEIGHTS_DIR.resolve():
        problem = _shipped_file_problem(path)
        if problem:
            raise unreadable(f"{path} cannot be trusted: {problem}")
    else:
        problem = _archive_problem(path)
        if problem:
            raise unreadable(f"{path} is damaged: {problem}; its bytes changed after it was written: {advice}")
    _VERIFIED.add(key)


def load_torch_file(path: str | os.PathLike, what: str, missing: type[Exception] = FileNotFoundError,
                    unreadable: type[Exception] = ValueError, advice: str = RESTORE_ADVICE) -> Any:
    """``torch.load`` of ``path`` (weights only, onto the CPU) after :func:`verify_torch_file`; ``missing`` or
    ``unreadable`` naming the file and ``what`` it should be when it does not exist, is damaged or cannot be
    read (truncated, say), the latter two with ``advice``."""
    path = Path(path)
    if not path.is_file():
        raise missing(f"{what} {path} does not exist")
    verify_torch_file(path, unreadable, advice)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many types for foreign or damaged files
        raise unreadable(f"{path} is not a readable {what} (torch.load failed: {error}); {advice}") from error


def config_differences(saved: dict[str, Any], wanted: dict[str, Any], ignore: str | None = None,
                       labels: tuple[str, str] = ("saved", "now")) -> list[str]:
    """``"key: saved_value <labels[0]>, wanted_value <labels[1]>"`` for every key (but ``ignore``) whose values
    differ between two configs, sorted; empty when they agree."""
    keys = (saved.keys() | wanted.keys()) - {ignore}
    return sorted(f"{k}: {saved.get(k)!r} {labels[0]}, {wanted.get(k)!r} {labels[1]}" for k in keys
                  if saved.get(k) != wanted.get(k))

"""Result files: atomic writes and the provenance every result records."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import tempfile
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

_PACKAGES = ("restore-gym", "torch", "numpy", "gymnasium", "stable-baselines3", "sb3-contrib", "scikit-image", "Pillow")


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


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temp file in the same folder, so a reader never sees half a file."""
    write_atomic(path, lambda handle: handle.write(text.encode("utf-8")))


def write_npz_atomic(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Write ``arrays`` as an uncompressed ``.npz`` to ``path`` atomically."""
    write_atomic(path, lambda handle: np.savez(handle, **arrays))


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


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


def load_torch_file(path: Path, what: str, missing: type[Exception] = FileNotFoundError,
                    unreadable: type[Exception] = ValueError) -> Any:
    """``torch.load`` of ``path`` (weights only, onto the CPU); ``missing`` or ``unreadable`` naming the file
    and ``what`` it should be when it does not exist or cannot be read."""
    if not path.is_file():
        raise missing(f"{what} {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many types for foreign or damaged files
        raise unreadable(f"{path} is not a readable {what} (torch.load failed: {error})") from error


def config_differences(saved: dict[str, Any], wanted: dict[str, Any], ignore: str | None = None,
                       labels: tuple[str, str] = ("saved", "now")) -> list[str]:
    """``"key: saved_value <labels[0]>, wanted_value <labels[1]>"`` for every key (but ``ignore``) whose values
    differ between two configs, sorted; empty when they agree."""
    keys = (saved.keys() | wanted.keys()) - {ignore}
    return sorted(f"{k}: {saved.get(k)!r} {labels[0]}, {wanted.get(k)!r} {labels[1]}" for k in keys
                  if saved.get(k) != wanted.get(k))

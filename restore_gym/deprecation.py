"""Old import paths of names that moved: importing a name from one warns and returns the name's new home."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from typing import Any


def moved_module(old: str, new: str) -> Callable[[str], Any]:
    """A module ``__getattr__`` for module ``old``: every public name of module ``new`` resolves there, with a
    DeprecationWarning naming the new import path."""

    def getattr_(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        target = importlib.import_module(new)
        if not hasattr(target, name):
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        warnings.warn(f"{old}.{name} moved to {new}.{name}; import it from {new}", DeprecationWarning, stacklevel=2)
        return getattr(target, name)

    return getattr_

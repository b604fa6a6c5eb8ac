"""Checks of config values shared by the config and the kinds' sections.

Each check returns the checked value (completed with defaults where it says so) or raises a
:class:`ConfigError` whose message starts with ``where`` (the file and the key) and says what is allowed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


class ConfigError(ValueError):
    """A leaderboard config that cannot run; the message names the file, the key and what to do."""


def check_mapping(value: Any, where: str, known: dict[str, Any]) -> dict[str, Any]:
    """``value`` (a mapping) over the defaults ``known``; ConfigError for another type or an unknown key."""
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping with keys among {', '.join(known)}, got {value!r}")
    unknown = sorted(map(str, set(value) - set(known)))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(known)}")
    return {**known, **value}


def check_int(value: Any, where: str, minimum: int) -> int:
    """``value``, an integer of at least ``minimum`` (booleans are refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where} must be an integer of at least {minimum}, got {value!r}")
    return value


def check_names(value: Any, known: Sequence[str], where: str) -> list[str]:
    """A non-empty list of distinct names among ``known``."""
    if isinstance(value, str) or not isinstance(value, list) or not value:
        raise ConfigError(f"{where} must be a non-empty list of names among {', '.join(known)}, got {value!r}")
    unknown = [name for name in value if name not in known]
    if unknown:
        raise ConfigError(f"{where}: unknown name(s) {', '.join(map(str, unknown))}; known: {', '.join(known)}")
    if len(set(value)) != len(value):
        raise ConfigError(f"{where} lists a name twice: {value}")
    return list(value)


def check_seeds(value: Any, where: str) -> list[int]:
    """A non-empty list of distinct seeds (integers >= 0)."""
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where} must be a non-empty list of seeds (integers >= 0), got {value!r}")
    seeds = [check_int(seed, f"{where} item", 0) for seed in value]
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{where} lists a seed twice: {seeds}")
    return seeds


def check_overrides(value: Any, allowed: Sequence[str], where: str) -> dict[str, Any]:
    """A mapping of config fields among ``allowed`` to values."""
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping of config fields to values, got {value!r}")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: unknown or sweep-controlled field(s) {', '.join(unknown)}; allowed: "
                          f"{', '.join(allowed)}")
    return dict(value)


def check_built(make: Callable[[], Any], where: str) -> Any:
    """``make()``, its ValueError/TypeError/FileNotFoundError turned into a ConfigError naming ``where``."""
    try:
        return make()
    except (ValueError, TypeError, FileNotFoundError) as error:
        raise ConfigError(f"{where}: {error}") from error

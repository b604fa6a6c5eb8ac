"""Deprecated: the baselines are in :mod:`restore_gym.baselines`."""

from restore_gym.deprecation import moved_module

__getattr__ = moved_module(__name__, "restore_gym.baselines")

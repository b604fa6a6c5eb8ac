"""The benchmark leaderboard: every agent, baseline and single network on the frozen test sets
(``python -m benchmarks.leaderboard``; the command line and its outputs: :mod:`benchmarks.leaderboard.cli`).

Modules, one job each: ``config`` (the YAML config), ``kinds`` (one adapter per kind of entry, and their
registry), ``context`` (what a sweep's entries share), ``store`` (result files and their fingerprints),
``sweep`` (planning and running the jobs), ``ray_sweep`` (the jobs as Ray tasks), ``aggregate`` (statistics
and the paper's comparison), ``tables`` (CSV and Markdown), ``plots``, ``publish`` (writing the outputs), ``run``
(one whole run) and ``cli``.
"""

from benchmarks.leaderboard.checks import ConfigError
from benchmarks.leaderboard.cli import build_parser, main
from benchmarks.leaderboard.config import load_config, validate_config
from benchmarks.leaderboard.context import build_context, resolve_training_source
from benchmarks.leaderboard.kinds import KINDS, Entry, LearnedEntry, Outcome, build_entries, official_folder, register
from benchmarks.leaderboard.run import run_leaderboard

__all__ = [
    "KINDS", "ConfigError", "Entry", "LearnedEntry", "Outcome", "build_context", "build_entries", "build_parser",
    "load_config", "main", "official_folder", "register", "resolve_training_source", "run_leaderboard",
    "validate_config",
]

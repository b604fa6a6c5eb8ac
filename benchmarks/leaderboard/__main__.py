"""``python -m benchmarks.leaderboard``: the command line of :mod:`benchmarks.leaderboard.cli`."""

from benchmarks.leaderboard.cli import main

raise SystemExit(main())

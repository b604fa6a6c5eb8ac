"""Deprecated: ``python -m restore_gym evaluate`` (:mod:`restore_gym.evaluation`) evaluates every agent."""

import sys

from restore_gym.deprecation import moved_module

__getattr__ = moved_module(__name__, "restore_gym.evaluation")

if __name__ == "__main__":
    from restore_gym.evaluation import main

    print("agents.evaluate is deprecated: use `python -m restore_gym evaluate`", file=sys.stderr)
    raise SystemExit(main())

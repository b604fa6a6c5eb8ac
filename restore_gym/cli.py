"""Command line of restore-gym: ``python -m restore_gym COMMAND`` (also installed as ``restore-gym``)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from restore_gym.data import summarize_test_sets
from restore_gym.degrade import DIFFICULTIES
from restore_gym.demo import main as run_demo


def _print_test_sets(_: argparse.Namespace) -> None:
    start = time.perf_counter()
    rows = summarize_test_sets()
    print(f"{'difficulty':<10} {'patches':>7} {'input PSNR':>11}  digest")
    for row in rows:
        status = "matches the recorded digest" if row["digest_matches"] else "DIFFERS from the recorded digest"
        psnr_text = f"{row['mean_input_psnr']:>8.3f} dB"
        print(f"{row['difficulty']:<10} {row['patches']:>7} {psnr_text}  {row['digest'][:16]}… {status}")
    print(f"built or loaded in {time.perf_counter() - start:.1f} s")


def _evaluate(argv: list[str]) -> int:
    from restore_gym.evaluation import main as evaluate_main  # its imports are only needed here

    return evaluate_main(argv)


def _import_official(argv: list[str]) -> int:
    from restore_gym.official_import import main as import_main

    return import_main(argv)


def _restore(argv: list[str]) -> int:
    from restore_gym.restore_files import main as restore_main  # its imports are only needed here

    return restore_main(argv)


# Commands whose arguments their own module parses (``restore-gym COMMAND --help`` lists them).
_PASS_THROUGH = {"evaluate": _evaluate, "import-official": _import_official, "restore": _restore}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``restore-gym`` command."""
    parser = argparse.ArgumentParser(prog="restore-gym", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="the main job: the shipped agent on the test patches and on a whole photo")
    demo.add_argument("--difficulty", default="moderate", choices=DIFFICULTIES)
    demo.add_argument("--out", default="demo", help="folder for the pictures and demo.json (default: demo)")
    demo.add_argument("--mode", default="vote", choices=("vote", "tiles"), help="how the whole photo is restored")
    demo.add_argument("--patches", type=int, default=64, help="test patches to restore (164: the whole test set)")
    demo.set_defaults(run=lambda args: run_demo(args.difficulty, args.out, args.mode, args.patches))
    commands.add_parser("testsets", help="summary of the frozen test sets").set_defaults(run=_print_test_sets)
    commands.add_parser("evaluate", add_help=False,
                        help="an agent or baseline on a frozen test set (restore_gym.evaluation)")
    commands.add_parser("import-official", add_help=False,
                        help="convert the authors' released tools and agent once (restore_gym.official_import)")
    commands.add_parser("restore", add_help=False,
                        help="restore whole photos with the agent (restore_gym.restore_files)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command in _PASS_THROUGH:
        return _PASS_THROUGH[args.command](rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.run(args)
    return 0

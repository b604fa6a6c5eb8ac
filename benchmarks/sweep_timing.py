"""Wall time of the leaderboard's sweep run serially, in worker processes and as Ray tasks on this machine.

Each sweep runs from scratch, in a fresh temporary folder, as its own command (``python -m benchmarks.leaderboard``),
so it pays what a user pays: the interpreter, the imports and, on Ray, the start of a local Ray instance; the
test sets are cached first. Cases: ``smoke`` (``benchmarks/leaderboard-smoke.yml``: 3 tiny trainings and 24
evaluations of 4 patches) and ``greedy-oracle`` (the real config's greedy oracle on the three whole test sets: 3
evaluations of 164 patches). Every run's numbers are compared with those of the serial run on one thread, which
a run of one-thread jobs must give bit for bit (torch's default threads sum in another order: the table gives
the largest difference of a mean PSNR). Writes ``sweep_timing.json`` and ``sweep_timing.md``.

    python -m benchmarks.sweep_timing [--workers 2] [--cases smoke,greedy-oracle] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ray
import yaml

from restore_gym.data import load_test_set
from restore_gym.records import provenance, write_json_atomic, write_text_atomic

RESULTS = Path(__file__).parent / "results"
REPOSITORY = Path(__file__).resolve().parents[1]
REFERENCE = "serial, 1 thread"  # the run whose numbers every other must give


def case_config(case: str, folder: Path) -> dict[str, Any]:
    """The leaderboard config of ``case`` with its runs and results under ``folder``."""
    if case == "smoke":
        config = yaml.safe_load((REPOSITORY / "benchmarks" / "leaderboard-smoke.yml").read_text())
    elif case == "greedy-oracle":
        config = {**yaml.safe_load((REPOSITORY / "benchmarks" / "leaderboard.yml").read_text()), "official": False,
                  "baselines": {"names": ["greedy-oracle"]}, "lstm_dqn": None, "single_networks": None, "sb3": None}
    else:
        raise ValueError(f"unknown case {case!r}; choose smoke or greedy-oracle")
    return {**config, "runs": str(folder / "runs"), "out": str(folder / "out")}


def runs_of(case: str, workers: int) -> dict[str, list[str]]:
    """The runs of ``case`` by name: the leaderboard's options of each (worker processes train only, so the
    greedy oracle's evaluations have no such run)."""
    runs = {"serial": [], REFERENCE: ["--threads", "1"]}
    if case == "smoke":
        runs[f"--jobs {workers} (worker processes)"] = ["--jobs", str(workers)]
    runs[f"--ray --jobs {workers} (local Ray, {workers} workers)"] = ["--ray", "--jobs", str(workers)]
    return runs


def time_sweep(case: str, options: list[str]) -> dict[str, Any]:
    """Run the sweep of ``case`` from scratch with ``options``: its wall time, this machine's load average
    before and after, and the rows of its ``leaderboard.json``."""
    with tempfile.TemporaryDirectory(prefix="sweep-timing-") as folder:
        config = Path(folder) / "config.yml"
        config.write_text(yaml.safe_dump(case_config(case, Path(folder))))
        load_before = os.getloadavg()[0]
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "benchmarks.leaderboard", "--config", str(config), "--no-progress",
                        *options], check=True, cwd=REPOSITORY, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
        rows = json.loads((Path(folder) / "out" / "leaderboard" / "leaderboard.json").read_text())["rows"]
    return {"seconds": seconds, "load_before": load_before, "load_after": os.getloadavg()[0],
            "numbers": [(row["entry"], row["difficulty"], row["metrics"]) for row in rows]}


def markdown(result: dict[str, Any]) -> str:
    """The results as the Markdown table of ``sweep_timing.md``."""
    lines = ["# The sweep's wall time: serial, worker processes, local Ray", "",
             f"{result['provenance']['cpu_model']}, {result['provenance']['cpu_count']} CPUs, torch "
             f"{result['provenance']['torch']}, Ray {result['ray']}. Each run from scratch as its own command; "
             "load average: this machine's 1-minute load before and after the run.", "",
             "| case | run | wall time (s) | against serial | load before / after | against the one-thread serial "
             "run's numbers |", "|---|---|---|---|---|---|"]
    for case in result["cases"]:
        serial = case["runs"]["serial"]["seconds"]
        for name, run in case["runs"].items():
            lines.append(f"| {case['case']} | {name} | {run['seconds']:.1f} | {serial / run['seconds']:.2f}x | "
                         f"{run['load_before']:.1f} / {run['load_after']:.1f} | "
                         f"{_agreement(run)} |")
    return "\n".join(lines) + "\n"


def _agreement(run: dict[str, Any]) -> str:
    if run["same_numbers"]:
        return "identical"
    return f"differ: mean PSNR by up to {run['max_psnr_difference_db']:.1e} dB"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sweep_timing", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2, help="worker processes and Ray workers (default: 2)")
    parser.add_argument("--cases", default="smoke,greedy-oracle", help="comma-separated (default: %(default)s)")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    for difficulty in ("mild", "moderate", "severe"):
        load_test_set(difficulty)
    cases = []
    for case in args.cases.split(","):
        runs = {name: time_sweep(case, options) for name, options in runs_of(case, args.workers).items()}
        reference = runs[REFERENCE]["numbers"]
        for run in runs.values():
            numbers = run.pop("numbers")
            run["same_numbers"] = numbers == reference
            run["max_psnr_difference_db"] = max(abs(a[2]["psnr"]["mean"] - b[2]["psnr"]["mean"])
                                                for a, b in zip(numbers, reference, strict=True))
        cases.append({"case": case, "runs": runs})
        print(json.dumps(cases[-1]))
    result = {"benchmark": "sweep_timing", "workers": args.workers, "ray": ray.__version__, "cases": cases,
              "provenance": provenance()}
    table = markdown(result)
    print(table)
    write_json_atomic(Path(args.out) / "sweep_timing.json", result)
    write_text_atomic(Path(args.out) / "sweep_timing.md", table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

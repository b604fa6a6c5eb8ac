"""The benchmark leaderboard: every agent, baseline and single network on the frozen test sets.

    python -m benchmarks.leaderboard --config benchmarks/leaderboard.yml [--out DIR] [--runs DIR]
        [--max-patches N] [--device cpu|cuda] [--threads N] [--jobs N] [--dry-run] [--no-train] [--no-evaluate]
        [--no-progress] [--ray [ADDRESS] [--storage DIR] [--gpus-per-task G]]

(the leaderboard runs from the repository: it trains with the scripts of ``agents/``). The YAML config names the entries
(its keys are documented in ``benchmarks/leaderboard.yml``; unknown keys and entries are errors): the
baselines of :mod:`restore_gym.baselines`, the LSTM-DQN agent of :mod:`agents.lstm_dqn` over several training
seeds, the authors' agent with their toolbox (when their release is beside the project), the single networks
of :mod:`agents.single_network` and optionally SB3 agents of :mod:`agents.sb3`. Learned entries missing from
the runs folder (``benchmarks/results/leaderboard/models/<entry>/seed<N>``, committed with the results but for
the training checkpoints) are trained first, resuming interrupted runs.

Every (entry, difficulty, seed) evaluation is written atomically to ``OUT/leaderboard/runs/<entry>/
<difficulty>-seed<N>.json`` together with the fingerprint of its inputs (entry definition, seed, test-set
digest, patch limit, toolbox and model digests); a rerun skips the evaluations whose file exists with the
same fingerprint, so an interrupted sweep resumes where it stopped. The aggregates are then rebuilt from
those files: ``OUT/leaderboard.md`` and, in ``OUT/leaderboard/``, ``leaderboard.json`` (with provenance),
``leaderboard.csv``, ``runs.csv``, ``comparison.csv`` and the plots ``psnr.png``, ``tool_usage.png``,
``gallery.png``, ``performance_profiles.png`` and ``training_curves.png``.

Per entry and difficulty: PSNR as the mean with its 95% stratified-bootstrap confidence interval over
training seeds and the interquartile mean (:mod:`benchmarks.stats`; tasks are test patches, runs are
seeds), SSIM, the gain over the input, the share of the exhaustive oracle's gain, tools per patch,
parameters, multiply-adds per patch actually executed (the tools of each patch's chain, plus the agent's
own network once per decision it took; single networks: one forward pass) and the measured wall time per
patch, the only number that differs between two runs of the same sweep.

The paper's comparison: every toolchain agent against every single network per difficulty, by the
difference of mean PSNR and rliable's probability of improvement (intervals from a bootstrap over the test
patches, paired, and the training seeds) and by multiply-adds per patch.

With ``--ray`` (the ``ray`` extra: ``pip install 'restore-gym[ray]'``) every training and evaluation is a Ray
task of ``--threads`` CPUs (default 1) and, on device cuda, ``--gpus-per-task`` GPUs: on a Ray instance started
on this machine (``--jobs N``: N tasks at a time; default: one per core), or on the cluster at ADDRESS (``ray
start --head`` on one machine prints it; ``auto``: the cluster this machine is part of). The results are the
serial sweep's, written by this process alone. On a cluster the trained models come back to this machine's runs
folder, unless ``--storage DIR`` names a runs folder that every node mounts at that path (then the tasks train
in it, checkpoints and all, so an interrupted training resumes where it stopped).

A bad config or argument exits with status 2 and a message naming the problem.
"""

from __future__ import annotations

import argparse
import importlib.util
from collections.abc import Sequence
from pathlib import Path

import torch

from benchmarks.leaderboard.checks import ConfigError
from benchmarks.leaderboard.config import load_config, validate_config
from benchmarks.leaderboard.run import run_leaderboard
from benchmarks.leaderboard.sweep import RayOptions
from restore_gym.allocator import retain_freed_memory
from restore_gym.devices import resolve_device

DEFAULT_CONFIG = Path(__file__).parents[1] / "leaderboard.yml"
LOCAL_RAY = "local"  # --ray without an address: a Ray instance on this machine


def build_parser() -> argparse.ArgumentParser:
    """The command line of the leaderboard."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.leaderboard", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="YAML config (default: %(default)s)")
    parser.add_argument("--out", help="results folder (default: the config's out)")
    parser.add_argument("--runs", help="folder of trained agents and networks (default: the config's runs)")
    parser.add_argument("--max-patches", type=int, help="only the first N patches of each test set (quick checks; "
                        "marked in every output)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: the config's device)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's; with --ray: of each "
                        "task, 1)")
    parser.add_argument("--jobs", type=int, help="models trained at once, each in its own process with an equal "
                        "share of the threads (default: 1; with --ray: the tasks run at once on this machine, "
                        "default: one per core)")
    parser.add_argument("--dry-run", action="store_true", help="print the jobs still to run and their estimated time")
    parser.add_argument("--no-train", action="store_true", help="train nothing: leave out the seeds not trained yet "
                        "(named in the notes)")
    parser.add_argument("--no-evaluate", action="store_true", help="run nothing (implies --no-train): publish the "
                        "results stored and still valid, naming the ones left out")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--ray", nargs="?", const=LOCAL_RAY, metavar="ADDRESS", help="every training and "
                        "evaluation a Ray task, on the Ray cluster at ADDRESS (default: a Ray instance on this "
                        "machine)")
    parser.add_argument("--storage", help="with --ray ADDRESS: the runs folder, on a filesystem every node mounts "
                        "at this path (default: the models come back to this machine's runs folder)")
    parser.add_argument("--gpus-per-task", type=float, default=1.0, help="with --ray and device cuda: the GPUs of "
                        "each task; a fraction packs tasks on one GPU (default: %(default)s)")
    return parser


def ray_options(args: argparse.Namespace) -> RayOptions | None:
    """The Ray options of the command line (None without ``--ray``); ValueError naming a bad combination."""
    if args.ray is None:
        if args.storage is not None:
            raise ValueError("--storage is the runs folder of a Ray cluster: give it with --ray ADDRESS")
        return None
    local = args.ray == LOCAL_RAY
    if args.storage is not None and local:
        raise ValueError("--storage names the runs folder a cluster's nodes share; on this machine the runs folder "
                         "(--runs) is shared already")
    if args.storage is not None and args.runs is not None:
        raise ValueError("--storage is the runs folder: give --storage or --runs, not both")
    if args.jobs is not None and not local:
        raise ValueError("--jobs sets the tasks run at once by a Ray instance on this machine; a cluster runs as "
                         "many as its resources allow")
    threads = args.threads or 1
    return RayOptions(address=None if local else args.ray, shared_runs=local or args.storage is not None,
                      threads=threads, cpus=None if args.jobs is None else args.jobs * threads,
                      gpus=args.gpus_per_task)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; a bad config or argument exits with status 2 and a message naming the problem."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.jobs is not None and args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    try:
        ray = ray_options(args)
        config = load_config(args.config)
        cli = {"out": args.out, "runs": args.storage or args.runs, "max_patches": args.max_patches,
               "device": args.device}
        config = validate_config({**config, **{k: v for k, v in cli.items() if v is not None}},
                                 f"{args.config} with the command line")
        if ray is not None:
            ray.task_gpus(config["device"])
        if ray is None or ray.address is None:  # a cluster's tasks find their GPUs there
            resolve_device(config["device"])
        if ray is not None and importlib.util.find_spec("ray") is None:
            raise ValueError("--ray needs Ray: pip install 'restore-gym[ray]'")
    except (ConfigError, FileNotFoundError, RuntimeError, ValueError) as error:
        parser.error(str(error))
    if args.threads:
        torch.set_num_threads(args.threads)
    retain_freed_memory()
    result = run_leaderboard(config, progress=not args.no_progress, dry_run=args.dry_run, train=not args.no_train,
                             jobs=args.jobs or 1, evaluate=not args.no_evaluate, ray=ray)
    if args.dry_run:
        for job in result["jobs"]:
            print(f"{job['estimated_seconds'] / 60:9.1f} min  {job['label']}")
        print(f"{len(result['jobs'])} jobs, about {result['estimated_seconds'] / 3600:.1f} h; "
              f"{result['skipped']} finished results kept")
        return 0
    out = Path(config["out"])
    print(f"{result['sweep']['trained']} trainings, {result['sweep']['evaluated']} evaluations run; "
          f"{result['sweep']['skipped']} finished results kept")
    for row in result["rows"]:
        psnr = row["metrics"]["psnr"]
        print(f"{row['difficulty']:<9} {row['entry']:<18} PSNR {psnr['mean']:7.3f} "
              f"[{psnr['mean_ci'][0]:.3f}, {psnr['mean_ci'][1]:.3f}]")
    print(f"wrote {out / 'leaderboard.md'} and {out / 'leaderboard'}/")
    return 0



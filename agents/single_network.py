"""Training of the single restoration networks of the paper's comparison (DnCNN, VDSR, VDSR-s, defined in
:mod:`restore_gym.networks`) on the agent's data.

Training (``python -m agents.single_network train --arch dncnn --out runs/single/dncnn``): patches of the
TRAIN split of ``--source`` (``builtin`` or an image folder) degraded with the protocol of the training
difficulty (moderate, as the agent's), a random crop of ``patch_size`` per patch, MSE, Adam with cosine
decay. The run folder holds ``config.json``, ``log.csv`` (validation PSNR on a fixed train-split set),
``tensorboard/`` (the loss and learning rate of every iteration, the validation PSNR and gain:
:mod:`restore_gym.summaries`), ``checkpoint.pt`` (atomic, every ``checkpoint_every`` iterations and at the end;
``--resume`` continues it exactly) and, at the end, ``network.pt``. Evaluate with ``python -m restore_gym
evaluate --agent single-network --checkpoint RUN/network.pt --difficulty D``.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from restore_gym.allocator import retain_freed_memory
from restore_gym.baselines import validation_set
from restore_gym.data import ImageSource, to_nchw
from restore_gym.degrade import DIFFICULTIES, PATCH_SIZE, check_difficulty
from restore_gym.deprecation import moved_module
from restore_gym.devices import resolve_device
from restore_gym.metrics import psnr_batch
from restore_gym.networks import ARCHITECTURES, build_network, check_arch, network_payload, restore
from restore_gym.records import load_torch_file, write_json_atomic
from restore_gym.resumable import TrainingLog, check_checkpoint, check_config, restore_rngs, rng_states, start_run
from restore_gym.sources import resolve_source
from restore_gym.summaries import TENSORBOARD_DIR, Scalars
from restore_gym.toolbox import atomic_torch_save
from restore_gym.train_tools import learning_rate, mse_step

NETWORK_FILE, CHECKPOINT_FILE, LOG_FILE, CONFIG_FILE = "network.pt", "checkpoint.pt", "log.csv", "config.json"
LOG_COLUMNS = ("iteration", "loss", "lr", "val_psnr_in", "val_psnr_out", "val_gain", "seconds")
RESTART_ADVICE = "delete it to train the network anew (without --resume)"
CHECKPOINT_KEYS = frozenset({"config", "optimizer", "numpy_rng", "log"})


# Names that moved into the library resolve there, with a DeprecationWarning.
__getattr__ = moved_module(__name__, "restore_gym.networks")


# ---- Configuration --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NetworkConfig:
    """Every hyperparameter of a training run; ``iterations`` may grow on resume, nothing else may change."""

    arch: str = "dncnn"
    seed: int = 0
    difficulty: str = "moderate"  # the degradation protocol of the training patches (the agent's)
    source: str = "builtin"  # training images: "builtin", "corpus" or a folder (its train split)
    iterations: int = 1000
    batch_size: int = 16
    patch_size: int = 41  # random crop of each 63x63 degraded patch (41: VDSR's receptive field)
    lr: float = 1e-3
    final_lr: float = 1e-5
    val_patches: int = 128
    eval_every: int = 50
    checkpoint_every: int = 100

    def __post_init__(self) -> None:
        check_arch(self.arch)
        check_difficulty(self.difficulty)
        counts = ("iterations", "batch_size", "val_patches", "eval_every", "checkpoint_every")
        bad = [f"{name}={getattr(self, name)!r}" for name in counts if getattr(self, name) < 1]
        if not 1 <= self.patch_size <= PATCH_SIZE:
            bad.append(f"patch_size={self.patch_size} (a crop of the {PATCH_SIZE}x{PATCH_SIZE} patches)")
        if not 0 < self.final_lr <= self.lr:
            bad.append(f"lr={self.lr}, final_lr={self.final_lr} (need 0 < final_lr <= lr)")
        if bad:
            raise ValueError(f"invalid single-network config: {', '.join(bad)}")


PRESETS: dict[str, dict[str, Any]] = {
    # For a GPU: 200k batches of 64 whole patches (12.8M patches). They are degraded on one CPU thread
    # (about 0.7 ms each), which bounds a GPU run at about 20 iterations per second.
    "paper": {"iterations": 200_000, "batch_size": 64, "patch_size": 63, "lr": 1e-3, "final_lr": 1e-6,
              "val_patches": 512, "eval_every": 2000, "checkpoint_every": 5000},
    # About 25 minutes per network on one CPU thread where CPU_SECONDS_PER_ITERATION was measured; the
    # leaderboard's runs took 54 to 56 minutes on later machines (iterations per architecture: CPU_ITERATIONS).
    "cpu": {"batch_size": 16, "patch_size": 41, "lr": 1e-3, "final_lr": 1e-5, "val_patches": 128,
            "eval_every": 500, "checkpoint_every": 250},
    # Seconds, for tests: every mechanism (updates, validation, a checkpoint) runs.
    "smoke": {"iterations": 4, "batch_size": 2, "patch_size": 17, "val_patches": 4, "eval_every": 2,
              "checkpoint_every": 2},
}
# Measured on one CPU thread of this project's 2-core machine (torch 2.13 CPU; CPU seconds, two measurements
# agree within 7%): one iteration of the cpu preset (a batch of 16 crops of 41x41: data 0.014 s, forward,
# backward, Adam). A validation of 128 patches costs 5.9, 5.3 and 1.0 s. The cpu preset spends about
# CPU_BUDGET_SECONDS per network.
CPU_SECONDS_PER_ITERATION: dict[str, float] = {"dncnn": 0.545, "vdsr": 0.587, "vdsr-s": 0.148}
CPU_BUDGET_SECONDS = 25 * 60
CPU_ITERATIONS: dict[str, int] = {arch: int(round(CPU_BUDGET_SECONDS / seconds, -2))
                                  for arch, seconds in CPU_SECONDS_PER_ITERATION.items()}


def seconds_per_iteration(cfg: NetworkConfig) -> float:
    """Estimated seconds of one training iteration of ``cfg`` on one CPU thread: the measured cpu-preset cost
    of its architecture scaled by the pixels per batch (``batch_size * patch_size ** 2``)."""
    reference = PRESETS["cpu"]["batch_size"] * PRESETS["cpu"]["patch_size"] ** 2
    return CPU_SECONDS_PER_ITERATION[cfg.arch] * cfg.batch_size * cfg.patch_size ** 2 / reference


def preset(name: str, arch: str, **overrides: Any) -> NetworkConfig:
    """The preset ``name`` ("paper", "cpu" or "smoke") for ``arch``, with some fields replaced."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    unknown = sorted(set(overrides) - {f.name for f in fields(NetworkConfig)})
    if unknown:
        raise ValueError(f"unknown single-network config field(s) {unknown}; known: "
                         f"{', '.join(f.name for f in fields(NetworkConfig))}")
    values = dict(PRESETS[name])
    if name == "cpu":
        values["iterations"] = CPU_ITERATIONS[check_arch(arch)]
    return replace(NetworkConfig(arch=arch, **values), **overrides)


# ---- Data -----------------------------------------------------------------------------------------------


def sample_batch(source: ImageSource, difficulty: str, batch_size: int, patch_size: int, rng: np.random.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch_size`` (degraded, clean) pairs as N x 3 x P x P float32 tensors: each a fresh 63x63 patch of
    ``source`` degraded at ``difficulty`` (:meth:`ImageSource.sample_patch`), cropped at random to P x P."""
    degraded, clean = [], []
    for _ in range(batch_size):
        patch = source.sample_patch(difficulty, rng)
        top, left = (int(v) for v in rng.integers(0, PATCH_SIZE - patch_size + 1, size=2))
        window = (slice(top, top + patch_size), slice(left, left + patch_size))
        degraded.append(patch.degraded[window])
        clean.append(patch.clean[window])
    return to_nchw(degraded), to_nchw(clean)


def _check_resumable(payload: Any, cfg: NetworkConfig, path: Path) -> None:
    """ValueError unless ``payload`` is a checkpoint of ``cfg`` (``iterations`` aside)."""
    check_checkpoint(payload, CHECKPOINT_KEYS, path, "a network file cannot be resumed")
    check_config(payload["config"], asdict(cfg), path, ("iterations",))


# ---- Training -------------------------------------------------------------------------------------------


def train(
    cfg: NetworkConfig,
    out_dir: str | os.PathLike,
    device: str | torch.device = "cpu",
    resume: bool = False,
    progress: bool = True,
    on_iteration: Callable[[], None] | None = None,
) -> nn.Module:
    """Train a network of ``cfg.arch`` to ``cfg.iterations`` and return it (in eval mode).

    Writes to ``out_dir``: ``config.json``, ``log.csv`` (rewritten atomically at every validation), TensorBoard
    events in ``tensorboard/`` (``losses/mse`` and ``charts/learning_rate`` at every iteration, ``eval/psnr`` and
    ``eval/psnr_gain`` at every validation),
    ``checkpoint.pt`` every ``checkpoint_every`` iterations and at the end, and ``network.pt`` at the end,
    each atomically; it starts by removing the temp files a killed run left there. ``resume`` continues from
    ``checkpoint.pt`` exactly as if never stopped (same config, ``iterations`` aside; a finished run just
    rewrites ``network.pt``), and the log's ``seconds`` go on counting the training time from the checkpoint's
    (a damaged checkpoint is an error naming it); without it an existing checkpoint is an error, never
    overwritten.
    ``on_iteration`` is called after every iteration (progress reporting).
    """
    device = resolve_device(device)
    out_dir = Path(out_dir)
    checkpoint_path, log = start_run(out_dir, CHECKPOINT_FILE, resume), TrainingLog(out_dir / LOG_FILE, LOG_COLUMNS)
    source = resolve_source(cfg.source, "train")
    validation = validation_set(cfg.difficulty, cfg.source, cfg.val_patches)
    val_degraded, val_clean = to_nchw(validation.degraded).to(device), to_nchw(validation.clean).to(device)
    val_input = float(psnr_batch(val_degraded, val_clean).mean())

    torch.manual_seed(cfg.seed)
    network = build_network(cfg.arch).to(device)
    optimizer = torch.optim.Adam(network.parameters(), lr=cfg.lr)
    rng = np.random.default_rng(cfg.seed)
    start, rows, seconds_before = 0, [], 0.0
    if resume:
        payload = load_torch_file(checkpoint_path, "single-network checkpoint", advice=RESTART_ADVICE)
        _check_resumable(payload, cfg, checkpoint_path)
        network.load_state_dict(payload["state_dict"])
        optimizer.load_state_dict(payload["optimizer"])
        restore_rngs(payload, rng, suffix="_rng")
        start, rows = payload["iteration"], list(payload["log"])
        # Checkpoints written before "seconds" was stored: the time up to the last validation.
        seconds_before = float(payload.get("seconds", rows[-1]["seconds"] if rows else 0.0))
    else:
        write_json_atomic(out_dir / CONFIG_FILE, asdict(cfg))

    def elapsed() -> float:
        return seconds_before + time.perf_counter() - began

    def save_checkpoint(iteration: int) -> None:
        atomic_torch_save({**network_payload(network, asdict(cfg), iteration), "optimizer": optimizer.state_dict(),
                           **rng_states(rng, ("numpy",), suffix="_rng"), "log": rows, "seconds": elapsed()},
                          checkpoint_path)

    began = time.perf_counter()
    bar = tqdm(range(start, cfg.iterations), initial=start, total=cfg.iterations, desc=cfg.arch, unit="it",
               disable=not progress)
    network.train()
    with Scalars(out_dir / TENSORBOARD_DIR, purge_step=start + 1 if resume else None) as scalars:
        for iteration in bar:
            lr = learning_rate(cfg, iteration, cfg.iterations)
            batch = sample_batch(source, cfg.difficulty, cfg.batch_size, cfg.patch_size, rng)
            loss_value = mse_step(network, optimizer, batch, lr, cfg.arch, iteration, device)
            done = iteration + 1
            scalars.add(done, {"losses/mse": loss_value, "charts/learning_rate": lr})
            if done % cfg.eval_every == 0 or done == cfg.iterations:
                val_output = float(psnr_batch(restore(network, val_degraded), val_clean).mean())
                network.train()
                rows.append({"iteration": done, "loss": f"{loss_value:.6g}", "lr": f"{lr:.3g}",
                             "val_psnr_in": f"{val_input:.4f}", "val_psnr_out": f"{val_output:.4f}",
                             "val_gain": f"{val_output - val_input:.4f}",
                             "seconds": f"{elapsed():.1f}"})
                log.write(rows)
                scalars.add(done, {"eval/psnr": val_output, "eval/psnr_gain": val_output - val_input})
                bar.set_postfix(loss=f"{loss_value:.5f}", gain=f"{val_output - val_input:+.2f} dB")
            if done % cfg.checkpoint_every == 0 and done < cfg.iterations:
                save_checkpoint(done)
            if on_iteration is not None:
                on_iteration()
    bar.close()
    final = max(start, cfg.iterations)
    save_checkpoint(final)
    atomic_torch_save(network_payload(network, asdict(cfg), final), out_dir / NETWORK_FILE)
    return network.eval()


# ---- Command line ---------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m agents.single_network``."""
    parser = argparse.ArgumentParser(prog="python -m agents.single_network", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    train_command = commands.add_parser("train", help="train (or resume) one single network")
    train_command.add_argument("--arch", required=True, choices=list(ARCHITECTURES))
    train_command.add_argument("--out", required=True, help="run folder (config, log, checkpoint, network)")
    train_command.add_argument("--source", default="builtin", help="training images: builtin, corpus or a folder")
    train_command.add_argument("--preset", default="cpu", choices=list(PRESETS))
    train_command.add_argument("--difficulty", default="moderate", choices=DIFFICULTIES)
    train_command.add_argument("--seed", type=int, default=0)
    train_command.add_argument("--iterations", type=int, help="override the preset's iterations")
    train_command.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    train_command.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    train_command.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    train_command.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; bad arguments exit with status 2 and a message naming the problem."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {} if args.iterations is None else {"iterations": args.iterations}
    try:
        cfg = preset(args.preset, args.arch, seed=args.seed, source=args.source, difficulty=args.difficulty,
                     **overrides)
        resolve_source(cfg.source, "train")
        resolve_device(args.device)
    except (ValueError, FileNotFoundError, NotADirectoryError, RuntimeError) as error:
        parser.error(str(error))
    retain_freed_memory()
    train(cfg, args.out, args.device, resume=args.resume, progress=not args.no_progress)
    print(f"network written to {Path(args.out) / NETWORK_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

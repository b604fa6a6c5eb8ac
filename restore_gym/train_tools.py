"""Train the 12 tools, each on its own distortion band (the authors never released their tool training).

``python -m restore_gym.train_tools --out runs/tools`` trains all twelve (or ``--tools 1,5-8``) with the
CPU preset; ``--preset paper`` sizes the run for a GPU. Each tool learns the residual that maps a patch
distorted inside its band back to the clean patch, under MSE. What comes with the tool's own distortion
is the config's draw (:mod:`restore_gym.tool_data`): the paper's slight noise and JPEG (``context="slight"``,
toolboxes v1 and v2), or the distortions and middle states the MDP hands the tool (``context="mdp"``, the
presets' default since toolbox v3).

Per tool the run writes a resumable checkpoint (network, optimiser, schedule, iteration, random states)
every ``--checkpoint-every`` iterations, its final weights with the config and iteration count that
produced them, rows of a CSV log with the loss and the validation PSNR gain, and TensorBoard events in
``tensorboard/toolNN`` (:mod:`restore_gym.summaries`): the loss and learning rate of every iteration, the
validation PSNR and gain. When every requested
tool is done, ``toolbox.pt`` assembles them (tools not trained in this run come from ``--init``, which
defaults to an untrained toolbox). With ``--warm-start`` the trained tools start from ``--init``'s
weights instead of a fresh initialisation, to train them further. A fresh tool starts with its output
convolution at zero (``zero_init_output``), so it begins as the identity. Each clean patch is rotated,
mirrored and its colour channels reordered at random (``augment``) before it is distorted. Every file is
written atomically (the log's rows are appended and synced); at its start a run removes the temp files
that a killed run left in ``--out`` (:func:`restore_gym.records.remove_stale_temporaries`). An
interrupted run resumes where its checkpoints left it, and only under the config it was started with
(iteration counts may grow). A finished tool is reused only if it was trained under the same config and
for the iteration count asked for now; otherwise, and for finished files that predate this record, the
run stops with an error saying what to do, rather than label old weights with a new config.

``--assemble FILE --from RUN [--from RUN ...] [--base v2] [--name NAME]`` trains nothing: it writes one
toolbox from the finished tools of several runs (tools started from different toolboxes, or trained further in
later rounds), its model card (each round's tools, start, config and iterations) read from the runs alone.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from restore_gym.allocator import retain_freed_memory
from restore_gym.data import BuiltinImages, ImageSource
from restore_gym.metrics import PSNR_EPS, psnr_batch
from restore_gym.parallel import run_in_processes
from restore_gym.records import load_torch_file, remove_stale_temporaries, write_json_atomic
from restore_gym.resumable import TrainingLog, check_config, config_changes, restore_rngs, rng_states
from restore_gym.sources import resolve_source
from restore_gym.summaries import TENSORBOARD_DIR, Scalars
from restore_gym.tool_data import DrawConfig, sample_band_batch
from restore_gym.toolbox import TOOL_SPECS, Toolbox, ToolSpec, atomic_torch_save, build_tool

RETRAIN_ADVICE = "delete it to train the tool anew"
LOG_FIELDS = ("tool", "iteration", "loss", "lr", "val_psnr_in", "val_psnr_out", "val_gain", "seconds")
ITERATION_FIELDS = ("small_iterations", "large_iterations")  # may grow when a run is resumed
LOSSES: tuple[str, ...] = ("mse", "psnr")
# Config fields added after runs were recorded without them, with the value those runs had.
LEGACY_DEFAULTS: dict[str, object] = {"balance_difficulties": False, "loss": "mse"}


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of tool training; iterations are per tool."""

    small_iterations: int = 3000
    large_iterations: int = 2000
    batch_size: int = 64
    patch_size: int = 41
    optimizer: str = "adam"
    lr: float = 1e-3
    final_lr: float = 1e-5
    grad_clip: float = 0.0
    val_patches: int = 256
    val_patch_size: int = 63
    eval_every: int = 500
    checkpoint_every: int = 250
    seed: int = 0
    zero_init_output: bool = True
    augment: bool = True
    context: str = "mdp"
    level_sums: tuple[int, int] = (9, 20)
    slight_prob: float = 0.15
    off_band_prob: float = 0.1
    prior_tool_prob: float = 0.2
    prior_tools: tuple[int, ...] = (5, 6, 7, 8, 9, 10, 11, 12)
    prior_toolbox: str = "v2"
    balance_difficulties: bool = False
    loss: str = "mse"

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; choose one of {', '.join(LOSSES)}")

    def draw(self) -> DrawConfig:
        """The distortion draw of this config (:class:`restore_gym.tool_data.DrawConfig`)."""
        return DrawConfig(self.context, tuple(self.level_sums), self.slight_prob, self.off_band_prob,
                          self.prior_tool_prob, tuple(self.prior_tools), self.balance_difficulties)

    def load_prior_toolbox(self) -> Toolbox | None:
        """The toolbox whose tools run before the trained one (a shipped variant's name or a file), if any."""
        if self.prior_tool_prob == 0 or self.context == "slight":
            return None
        return Toolbox.resolve(self.prior_toolbox)


PRESETS: dict[str, TrainConfig] = {
    "cpu": TrainConfig(),
    # The paper's schedule in spirit: SGD from 0.1 with adjustable gradient clipping (as in VDSR),
    # 63x63 patches, about 80 epochs of a DIV2K-sized patch set.
    "paper": TrainConfig(
        small_iterations=300_000,
        large_iterations=300_000,
        patch_size=63,
        optimizer="sgd",
        lr=0.1,
        final_lr=1e-4,
        grad_clip=0.4,
        val_patches=1024,
        eval_every=5000,
        checkpoint_every=2000,
    ),
    # A few steps on tiny data, for tests.
    "smoke": TrainConfig(
        small_iterations=3, large_iterations=2, batch_size=4, patch_size=15, val_patches=4, val_patch_size=15,
        eval_every=2, checkpoint_every=1,
    ),
}


def learning_rate(config: TrainConfig, iteration: int, total: int) -> float:
    """Cosine decay from ``config.lr`` to ``config.final_lr`` over ``total`` iterations."""
    progress = min(1.0, iteration / max(1, total))
    return config.final_lr + 0.5 * (config.lr - config.final_lr) * (1.0 + math.cos(math.pi * progress))


def make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """The optimiser named by ``config.optimizer`` ("adam" or "sgd" with momentum 0.9)."""
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr)
    if config.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=0.9, weight_decay=1e-4)
    raise ValueError(f"unknown optimizer {config.optimizer!r}; choose adam or sgd")


def restoration_loss(output: torch.Tensor, clean: torch.Tensor, loss: str = "mse") -> torch.Tensor:
    """The training loss of a batch: ``"mse"`` over all its pixels, or ``"psnr"``, minus the mean of the
    patches' PSNRs (dB, :func:`restore_gym.metrics.psnr_batch`'s definition), which weighs every patch alike
    in dB, as the MDP's reward and the test sets' mean PSNR do, where MSE weighs patches by their error."""
    if loss == "mse":
        return nn.functional.mse_loss(output, clean)
    if loss == "psnr":
        mse = (output - clean).square().flatten(1).mean(dim=1)
        return (10.0 * torch.log10(mse + PSNR_EPS)).mean()
    raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")


def mse_step(model: nn.Module, optimizer: torch.optim.Optimizer, batch: tuple[torch.Tensor, torch.Tensor], lr: float,
             tag: str, iteration: int, device: torch.device, grad_clip: float = 0.0, loss: str = "mse") -> float:
    """One optimiser step at learning rate ``lr`` on :func:`restoration_loss` (``loss``, default the MSE)
    between ``model(batch[0])`` and ``batch[1]``; returns the loss. ``grad_clip`` > 0 clips the gradient norm
    to ``grad_clip / lr`` (VDSR's adjustable clipping). A loss that is not finite raises FloatingPointError
    naming ``tag`` and the iteration."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    degraded, clean = (t.to(device) for t in batch)
    loss = restoration_loss(model(degraded), clean, loss)
    loss_value = float(loss.detach())
    if not math.isfinite(loss_value):
        raise FloatingPointError(f"{tag}: the loss became {loss_value} at iteration {iteration}; "
                                 f"lower the learning rate (now {lr:g}) or enable gradient clipping")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip / lr)
    optimizer.step()
    return loss_value


@torch.no_grad()
def validation_gain(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], device: torch.device) -> tuple:
    """Mean PSNR of the distorted inputs and of the tool's (unclipped) outputs on a fixed validation batch."""
    model.eval()
    distorted, clean = (t.to(device) for t in batch)
    out = torch.cat([model(chunk) for chunk in distorted.split(64)])
    model.train()
    before = float(psnr_batch(distorted, clean).mean())
    after = float(psnr_batch(out, clean).mean())
    return before, after


def _training_log(out_dir: Path) -> TrainingLog:
    """The CSV log of every tool trained in ``out_dir``, ``train_log.csv``: one row per validation."""
    return TrainingLog(out_dir / "train_log.csv", LOG_FIELDS, "iteration", line_end="\r\n")


def _check_resumable(state: dict, config: TrainConfig, path: Path) -> None:
    """ValueError unless the checkpoint ``state`` was written under ``config`` (iteration counts aside, which
    may grow); checkpoints that predate the recorded config are taken as they are."""
    if "config" in state:
        check_config({**LEGACY_DEFAULTS, **state["config"]}, asdict(config), path, ITERATION_FIELDS,
                     "delete the checkpoint to train the tool anew")


def read_finished_tool(path: str | os.PathLike, advice: str = RETRAIN_ADVICE) -> dict:
    """The finished tool file ``path`` of a run (``toolNN.pt``): a dict of its ``state_dict`` and the ``config``
    and ``iterations`` that trained it. FileNotFoundError if it is missing; ValueError naming it, with
    ``advice``, if it is damaged or holds no record of its config (it predates that record)."""
    state = load_torch_file(path, "finished tool file", advice=advice)
    if not isinstance(state, dict) or not {"config", "iterations", "state_dict"} <= state.keys():
        raise ValueError(f"{path} holds no record of the config that trained it (it predates that record); {advice}")
    return state


def _finished_weights(path: Path, config: TrainConfig, iterations: int) -> dict:
    """The weights of the finished tool in ``path``; ValueError saying what to do unless they were trained under
    ``config`` for ``iterations`` iterations (a finished tool cannot be trained further: its optimiser is gone)."""
    state = read_finished_tool(path, "it cannot be checked against this run's config: delete it to train the tool "
                                     "anew, or keep it and train elsewhere (another --out)")
    differences = config_changes({**LEGACY_DEFAULTS, **state["config"]}, asdict(config), ITERATION_FIELDS)
    if state["iterations"] != iterations:
        differences.append(f"iterations: {state['iterations']!r} there, {iterations} here")
    if differences:
        raise ValueError(f"cannot reuse {path}: it was trained under another config ({'; '.join(sorted(differences))})"
                         "; restore that config, train elsewhere (another --out), or delete it to train the tool anew")
    return state["state_dict"]


def train_tool(
    spec: ToolSpec,
    source: ImageSource,
    val_source: ImageSource,
    out_dir: Path,
    config: TrainConfig,
    device: torch.device,
    progress: bool = True,
    start_from: nn.Module | None = None,
) -> nn.Module:
    """Train (or resume, or load if finished under ``config``) one tool; returns the trained module on
    ``device``.

    A fresh run starts from ``start_from``'s weights when given, else from a seeded initialisation.
    """
    tag = f"tool{spec.index + 1:02d}"
    final_path, ckpt_path = out_dir / f"{tag}.pt", out_dir / f"{tag}.ckpt.pt"
    torch.manual_seed(config.seed * 1000 + spec.index)
    model = build_tool(spec).to(device)
    if start_from is not None:
        model.load_state_dict(start_from.state_dict())
    elif config.zero_init_output:
        nn.init.zeros_(model.conv3.weight)
        nn.init.zeros_(model.conv3.bias)
    total = config.small_iterations if spec.size == "small" else config.large_iterations
    if final_path.exists():
        model.load_state_dict(_finished_weights(final_path, config, total))
        return model
    optimizer = make_optimizer(config, model)
    rng = np.random.default_rng([config.seed, spec.index])
    start = 0
    if ckpt_path.exists():
        state = load_torch_file(ckpt_path, "tool checkpoint", advice=RETRAIN_ADVICE)
        _check_resumable(state, config, ckpt_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        restore_rngs(state, rng, suffix="_rng")
        start = state["iteration"]
    draw, prior = config.draw(), config.load_prior_toolbox()
    val_rng = np.random.default_rng([config.seed, spec.index, 999])
    val_batch = sample_band_batch(val_source, spec, config.val_patches, config.val_patch_size, val_rng, draw,
                                  prior_toolbox=prior)
    log = _training_log(out_dir)
    began = time.perf_counter()
    bar = tqdm(range(start, total), initial=start, total=total, desc=f"{tag} {spec.name}", disable=not progress)
    with Scalars(out_dir / TENSORBOARD_DIR / tag, purge_step=start + 1 if start else None) as scalars:
        for iteration in bar:
            lr = learning_rate(config, iteration, total)
            batch = sample_band_batch(source, spec, config.batch_size, config.patch_size, rng, draw, config.augment,
                                      prior)
            loss_value = mse_step(model, optimizer, batch, lr, f"{tag} {spec.name}", iteration, device,
                                  config.grad_clip, config.loss)
            done = iteration + 1
            scalars.add(done, {f"losses/{config.loss}": loss_value, "charts/learning_rate": lr})
            if done % config.eval_every == 0 or done == total:
                before, after = validation_gain(model, val_batch, device)
                bar.set_postfix(loss=f"{loss_value:.5f}", gain=f"{after - before:+.2f} dB")
                log.append({
                    "tool": spec.index + 1, "iteration": done, "loss": f"{loss_value:.6f}", "lr": f"{lr:.3g}",
                    "val_psnr_in": f"{before:.4f}", "val_psnr_out": f"{after:.4f}",
                    "val_gain": f"{after - before:.4f}", "seconds": f"{time.perf_counter() - began:.1f}",
                })
                scalars.add(done, {"eval/psnr": after, "eval/psnr_gain": after - before})
            if done % config.checkpoint_every == 0 and done < total:
                atomic_torch_save({
                    "config": asdict(config), "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "iteration": done, **rng_states(rng, ("numpy", "torch"), suffix="_rng"),
                }, ckpt_path)
    atomic_torch_save({"config": asdict(config), "iterations": total, "state_dict": model.state_dict()}, final_path)
    ckpt_path.unlink(missing_ok=True)
    return model


def parse_tool_list(text: str) -> list[int]:
    """Parse ``"1,3,5-8"`` (1-based, as in the paper) into sorted 0-based tool indices."""
    indices: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        try:
            low, _, high = part.partition("-")
            first, last = int(low), int(high or low)
        except ValueError:
            raise ValueError(f"cannot read tool list {text!r}; write numbers 1..12 and ranges, e.g. 1,5-8") from None
        if not 1 <= first <= last <= len(TOOL_SPECS):
            raise ValueError(f"tool range {part!r} is outside 1..{len(TOOL_SPECS)}")
        indices.update(range(first - 1, last))
    return sorted(indices)


def make_source(spec: str, split: str) -> ImageSource:
    """``builtin`` (the built-in train split; its validation comes from the same images), ``corpus`` or a
    folder path (see :func:`restore_gym.sources.resolve_source`)."""
    if spec == "builtin":
        return BuiltinImages("train")
    return resolve_source(spec, split)


def train_toolbox(
    out_dir: str | os.PathLike,
    tools: Sequence[int] | None = None,
    source: str = "builtin",
    config: TrainConfig = PRESETS["cpu"],
    device: str = "cpu",
    init: str | os.PathLike | None = None,
    progress: bool = True,
    warm_start: bool = False,
    jobs: int = 1,
) -> Path:
    """Train the tools ``tools`` (0-based; default all) and write ``out_dir/toolbox.pt``; returns its path.

    ``jobs`` > 1 trains that many tools at once, each in its own process with an equal share of torch's CPU
    threads; every tool's data and initialisation are seeded by the tool, so the weights do not depend on it.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)
    tools = list(range(len(TOOL_SPECS))) if tools is None else list(tools)
    torch_device = torch.device(device)
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but torch sees no CUDA device; use --device cpu")
    train_source, val_source = make_source(source, "train"), make_source(source, "test")
    write_json_atomic(out / "config.json", {"config": asdict(config), "source": source, "tools": tools,
                                            "init": Path(init).name if init else None, "warm_start": warm_start})
    if warm_start and not init:
        raise ValueError("warm_start needs init: the toolbox whose tools to train further")
    toolbox = Toolbox.load(init) if init else Toolbox()
    if jobs > 1 and len(tools) > 1:
        _training_log(out).create()  # before any worker starts, so that parallel workers never race to create it
        run_in_processes(_train_tool_in_worker, [(index, source, out, config, device, init, warm_start)
                                                 for index in tools], jobs)
    for index in tools:
        start_from = toolbox.tools[index] if warm_start else None
        trained = train_tool(TOOL_SPECS[index], train_source, val_source, out, config, torch_device, progress,
                             start_from)
        toolbox.tools[index].load_state_dict(trained.state_dict())
    toolbox.metadata = {
        "trained_by": "restore_gym.train_tools",
        "source": source if source == "builtin" else Path(source).name,
        "config": asdict(config),
        "tools_trained": [i + 1 for i in tools],
        "warm_start": Path(init).name if warm_start else None,
    }
    path = out / "toolbox.pt"
    toolbox.save(path)
    return path


def assemble_toolbox(runs: Sequence[str | os.PathLike], path: str | os.PathLike, base: str = "v2",
                     name: str | None = None) -> Toolbox:
    """Write to ``path`` (atomically) and return one toolbox made of the finished tools (``toolNN.pt``) of the
    training runs ``runs``, in order: a tool finished in a later run replaces an earlier run's, and tools that no
    run finished come from the toolbox ``base`` (a name or file, :meth:`Toolbox.resolve`).

    The metadata is the model card of the file, read from the runs alone: ``name``, ``base`` and ``rounds``,
    one per run with its folder's name, the tools it finished, the source, the start (``init``, ``warm_start``)
    and the config and iteration count that each of its tools recorded. A run folder without ``config.json`` or
    without any finished tool is a ValueError naming it.
    """
    base_toolbox = Toolbox.resolve(base)
    toolbox = Toolbox(metadata={"name": name, "trained_by": "restore_gym.train_tools", "base": base_toolbox.metadata
                                .get("name", Path(str(base)).name), "rounds": []})
    toolbox.load_state_dict(base_toolbox.state_dict())
    for run in map(Path, runs):
        config_file = run / "config.json"
        if not config_file.is_file():
            raise ValueError(f"{run} is not a run folder of restore_gym.train_tools: it has no config.json")
        recorded = json.loads(config_file.read_text())
        finished = sorted(run.glob("tool[0-9][0-9].pt"))
        if not finished:
            raise ValueError(f"{run} holds no finished tool (toolNN.pt): let its training finish first")
        round_tools = {}
        for file in finished:
            state = read_finished_tool(file, "it cannot go into a toolbox with a model card")
            index = int(file.stem[4:]) - 1
            toolbox.tools[index].load_state_dict(state["state_dict"])
            round_tools[index + 1] = {"config": state["config"], "iterations": state["iterations"]}
        configs = {json.dumps(t["config"], sort_keys=True) for t in round_tools.values()}
        toolbox.metadata["rounds"].append({
            "run": run.name, "tools": sorted(round_tools), "source": recorded.get("source"),
            "init": recorded.get("init"), "warm_start": recorded.get("warm_start"),
            "config": round_tools[min(round_tools)]["config"] if len(configs) == 1 else None,
            "iterations": {str(t): v["iterations"] for t, v in round_tools.items()},
            **({} if len(configs) == 1 else {"configs": {str(t): v["config"] for t, v in round_tools.items()}}),
        })
    toolbox.save(path)
    return toolbox


def _train_tool_in_worker(index: int, source: str, out: Path, config: TrainConfig, device: str,
                          init: str | os.PathLike | None, warm_start: bool) -> None:
    """One tool of :func:`train_toolbox`, in a worker process: its final weights land in ``out``."""
    start_from = Toolbox.load(init).tools[index] if warm_start else None
    train_tool(TOOL_SPECS[index], make_source(source, "train"), make_source(source, "test"), out, config,
               torch.device(device), False, start_from)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line of the tool training."""
    parser = argparse.ArgumentParser(prog="python -m restore_gym.train_tools", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="output folder (checkpoints, log, weights); needed unless --assemble")
    parser.add_argument("--assemble", metavar="FILE", help="instead of training, write one toolbox FILE from the "
                        "finished tools of the --from runs (later runs win; the rest from --base) with its model card")
    parser.add_argument("--from", dest="runs", action="append", default=[], metavar="RUN",
                        help="a run folder for --assemble (repeatable, in order)")
    parser.add_argument("--base", default="v2", help="for --assemble: the toolbox of the tools no run finished")
    parser.add_argument("--name", help="for --assemble: the toolbox's name in its metadata")
    parser.add_argument("--tools", default="1-12", help="1-based tools to train, e.g. 1,5-8 (default all)")
    parser.add_argument("--source", default="builtin",
                        help="'builtin' or a folder of clean images, e.g. the corpus of restore_gym.corpus")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--init", help="toolbox file whose tools fill those not trained here")
    parser.add_argument("--warm-start", action="store_true", help="train the chosen tools further from --init")
    for name in ("small_iterations", "large_iterations", "batch_size", "patch_size", "seed"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int)
    for name in ("lr", "final_lr", "slight_prob", "off_band_prob", "prior_tool_prob"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=float)
    parser.add_argument("--context", choices=("slight", "mdp"), help="what comes with a tool's own distortion")
    parser.add_argument("--prior-toolbox", help="shipped variant (v2) or toolbox file whose tools run before the "
                        "trained one on a share of the patches")
    parser.add_argument("--loss", choices=LOSSES, help="mse over all pixels, or psnr: minus the patches' mean PSNR")
    parser.add_argument("--balance-difficulties", action="store_true", default=None,
                        help="draw the MDP's level triples with mild, moderate and severe alike")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--jobs", type=int, default=1, help="tools trained at once, each in its own process with "
                        "an equal share of the threads (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.assemble:
        if not args.runs:
            parser.error("--assemble needs at least one --from RUN")
        try:
            assemble_toolbox(args.runs, args.assemble, args.base, args.name)
        except (ValueError, FileNotFoundError) as error:
            parser.error(str(error))
        print(f"wrote {args.assemble}")
        return 0
    if not args.out:
        parser.error("--out is needed to train (or give --assemble FILE --from RUN ...)")
    overrides = {k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__ and v is not None}
    config = replace(PRESETS[args.preset], **overrides)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        tools = parse_tool_list(args.tools)
    except ValueError as error:
        parser.error(str(error))
    if args.warm_start and not args.init:
        parser.error("--warm-start needs --init")
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    retain_freed_memory()
    path = train_toolbox(args.out, tools, args.source, config, args.device, args.init, not args.no_progress,
                         args.warm_start, args.jobs)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

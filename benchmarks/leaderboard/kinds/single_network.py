"""The single restoration networks of :mod:`agents.single_network` (one entry per architecture, each over
several training seeds), from the config section ``single_networks``; their runs live in
``<runs>/single/<arch>/seed<N>`` and resume from their checkpoint."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar

from agents import single_network
from benchmarks.leaderboard.checks import check_built, check_mapping, check_names, check_overrides, check_seeds
from benchmarks.leaderboard.context import Context
from benchmarks.leaderboard.kinds.base import DEFAULT_SEEDS, Entry, LearnedEntry, Outcome, overridable
from restore_gym.evaluation import run_network
from restore_gym.networks import ARCHITECTURES, load_network, read_network_file
from restore_gym.toolbox import Toolbox, count_parameters


class SingleNetworkEntry(LearnedEntry):
    """One architecture trained by the sweep; it restores a patch in one forward pass, without tools."""

    kind = "single-network"
    section = "single_networks"
    keys: ClassVar[dict[str, Any]] = {"archs": list(ARCHITECTURES), "preset": "cpu", "seeds": DEFAULT_SEEDS,
                                      "overrides": {}}
    model_name = single_network.NETWORK_FILE
    checkpoint_name = single_network.CHECKPOINT_FILE
    progress_key = "iteration"
    log_name = single_network.LOG_FILE
    curve_columns = ("iteration", "val_gain")
    curve_label = "iterations; gain on the validation patches (train split)"
    eval_seconds_per_patch = 0.05
    marker = "^"
    line = "--"
    comparison_side = "network"

    @classmethod
    def validate(cls, value: Any, where: str) -> dict[str, Any]:
        section = check_mapping(value, where, cls.keys)
        section["archs"] = check_names(section["archs"], list(ARCHITECTURES), f"{where}.archs")
        section["seeds"] = check_seeds(section["seeds"], f"{where}.seeds")
        section["overrides"] = check_overrides(section["overrides"], overridable(single_network.NetworkConfig),
                                               f"{where}.overrides")
        for arch in section["archs"]:
            check_built(lambda a=arch: single_network.preset(section["preset"], a, **section["overrides"]), where)
        return section

    @classmethod
    def entries(cls, section: dict[str, Any]) -> list[Entry]:
        return [cls(arch, section["seeds"], {"preset": section["preset"], "overrides": section["overrides"]})
                for arch in section["archs"]]

    def network_config(self, ctx: Context, seed: int) -> single_network.NetworkConfig:
        """The training config of ``seed``."""
        return single_network.preset(self.spec["preset"], self.name, seed=seed, source=ctx.source,
                                     **self.spec["overrides"])

    def run_dir(self, ctx: Context, seed: int) -> Path:
        return ctx.runs / "single" / self.name / f"seed{seed}"

    def hyperparameters(self, ctx: Context, seed: int) -> dict[str, Any]:
        return asdict(self.network_config(ctx, seed))

    def check_model(self, ctx: Context, seed: int, path: Path) -> bool:
        cfg = self.network_config(ctx, seed)
        payload = read_network_file(path)
        self.check_same_config(payload["config"], asdict(cfg), "iterations", path)
        return payload["iteration"] >= cfg.iterations

    def schedule(self, ctx: Context, seed: int) -> tuple[int, float]:
        cfg = self.network_config(ctx, seed)
        return cfg.iterations, single_network.seconds_per_iteration(cfg)

    def fit(self, ctx: Context, seed: int, resume: bool, advance: Callable[[int], None]) -> None:
        single_network.train(self.network_config(ctx, seed), self.run_dir(ctx, seed), ctx.device, resume=resume,
                             progress=False, on_iteration=lambda: advance(1))

    def toolbox(self, ctx: Context) -> None:
        return None

    def toolbox_name(self, ctx: Context) -> None:
        return None

    def evaluate(self, ctx: Context, toolbox: Toolbox | None, difficulty: str, seed: int) -> Outcome:
        network, _ = load_network(self.model_file(ctx, seed), ctx.device)
        evaluation = run_network(network, difficulty, device=ctx.device, max_patches=ctx.max_patches,
                                 name=self.name, details={"seed": seed})
        macs = int(evaluation.report["metrics"]["macs_per_patch"])
        return Outcome(evaluation, count_parameters(network), None, [macs] * evaluation.report["patches"])

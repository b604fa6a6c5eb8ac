"""The benchmark leaderboard: every agent, baseline and single network on the frozen test sets.

    python -m benchmarks.leaderboard --config benchmarks/leaderboard.yml [--out DIR] [--runs DIR]
        [--max-patches N] [--device cpu|cuda] [--threads N] [--jobs N] [--dry-run] [--no-train] [--no-evaluate]
        [--no-progress]

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
``leaderboard.csv``, ``runs.csv``, ``comparison.csv`` and the plots ``psnr.png``, ``tool_usage.png`` and
``gallery.png``.

Per entry and difficulty: PSNR as the mean with its 95% stratified-bootstrap confidence interval over
training seeds and the interquartile mean (:mod:`benchmarks.stats`; tasks are test patches, runs are
seeds), SSIM, the gain over the input, the share of the exhaustive oracle's gain, tools per patch,
parameters, multiply-adds per patch actually executed (the tools of each patch's chain, plus the agent's
own network once per decision it took; single networks: one forward pass) and the measured wall time per
patch, the only number that differs between two runs of the same sweep.

The paper's comparison (:func:`paper_comparison`): every toolchain agent against every single network per
difficulty, by the difference of mean PSNR and rliable's probability of improvement (intervals from a
bootstrap over the test patches, paired, and the training seeds) and by multiply-adds per patch.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn
from tqdm import tqdm

from agents import lstm_dqn, single_network
from benchmarks.stats import compare, summarize
from benchmarks.toolbox import DEFAULT_OFFICIAL
from restore_gym import metrics
from restore_gym.allocator import retain_freed_memory
from restore_gym.baselines import BASELINES, VALIDATION_SIZE, NamedPolicy
from restore_gym.corpus import corpus_is_complete, default_out_dir
from restore_gym.data import TestSet, load_test_set
from restore_gym.degrade import DIFFICULTIES, PATCH_SIZE
from restore_gym.devices import resolve_device
from restore_gym.engine import MAX_TOOLS
from restore_gym.evaluation import Evaluation, load_toolbox, make_policy, run_network, run_policy
from restore_gym.lstm_dqn import QNetwork, read_agent_file, toolbox_info
from restore_gym.networks import ARCHITECTURES, load_network, read_network_file
from restore_gym.parallel import run_in_processes
from restore_gym.records import (
    config_differences,
    file_sha256,
    provenance,
    write_atomic,
    write_json_atomic,
    write_npz_atomic,
    write_text_atomic,
)
from restore_gym.rollout import Policy
from restore_gym.sources import CORPUS_SOURCE
from restore_gym.toolbox import NUM_TOOLS, TOOL_SPECS, Toolbox, count_parameters

DEFAULT_CONFIG = Path(__file__).with_name("leaderboard.yml")
OFFICIAL_DIR = DEFAULT_OFFICIAL.parent
RESULT_FORMAT = 1
STOCHASTIC_BASELINES = frozenset({"random"})  # the other baselines are deterministic: one run each
DEFAULT_SEEDS = [0, 1, 2]
ORACLE = "exhaustive-oracle"
TOOLCHAIN_KINDS = ("lstm-dqn", "official")  # agents that restore with a toolchain, set against the single networks
# Markers of the PSNR plot per kind of entry (toolchain agents square, networks triangles), so that entries
# sharing one of the ten colours stay apart.
PLOT_MARKERS = {"baseline": "o", "official": "s", "lstm-dqn": "s", "sb3": "s", "single-network": "^"}

# Rough costs for the progress bar's estimate of the remaining time (it calibrates itself as jobs finish).
# The cpu preset's 400k steps on one thread: 87 minutes for the shipped agent, 2.5 hours for seed 1 beside another
# training on the 2-core machine.
LSTM_DQN_SECONDS_PER_STEP = 0.02
SB3_SECONDS_PER_STEP = 0.005
EVAL_SECONDS_PER_PATCH = {"exhaustive-oracle": 11.7, "greedy-oracle": 0.2, "single-network": 0.05}
EVAL_SECONDS_PER_PATCH_DEFAULT = 0.02
VALIDATION_SEARCH_SECONDS = {"best-chain": 8.0, "best-tool": 0.05}  # per validation patch, once per difficulty


class ConfigError(ValueError):
    """A leaderboard config that cannot run; the message names the file, the key and what to do."""


# =====================================================================================================
# Configuration
# =====================================================================================================

TOP_LEVEL: dict[str, Any] = {
    "difficulties": list(DIFFICULTIES),
    "device": "cpu",
    "toolbox": "pretrained",
    "source": "auto",
    "runs": "benchmarks/results/leaderboard/models",
    "out": "benchmarks/results",
    "max_patches": None,
    "stats": None,
    "gallery": None,
    "official": "auto",
    "baselines": None,
    "lstm_dqn": None,
    "single_networks": None,
    "sb3": None,
}
SECTIONS: dict[str, dict[str, Any]] = {
    "stats": {"reps": 2000, "confidence": 0.95, "seed": 0, "task_bootstrap": False},
    "gallery": {"difficulty": "moderate", "patches": 4},
    "baselines": {"names": list(BASELINES), "seeds": DEFAULT_SEEDS, "validation_size": VALIDATION_SIZE},
    "lstm_dqn": {"preset": "cpu", "seeds": DEFAULT_SEEDS, "overrides": {}},
    "single_networks": {"archs": list(ARCHITECTURES), "preset": "cpu", "seeds": DEFAULT_SEEDS,
                        "overrides": {}},
    "sb3": {"algo": None, "name": None, "seeds": DEFAULT_SEEDS, "timesteps": None, "hyperparams": None,
            "env": "RLRestore-v0"},
}
# Config fields the sweep sets itself (per seed, and the training images of the top-level ``source``).
SWEEP_FIELDS = frozenset({"seed", "source", "arch"})


def _mapping(value: Any, where: str, known: dict[str, Any]) -> dict[str, Any]:
    """``value`` (a mapping) over the defaults ``known``; ConfigError for another type or an unknown key."""
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping with keys among {', '.join(known)}, got {value!r}")
    unknown = sorted(map(str, set(value) - set(known)))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(known)}")
    return {**known, **value}


def _int(value: Any, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where} must be an integer of at least {minimum}, got {value!r}")
    return value


def _names(value: Any, known: Sequence[str], where: str) -> list[str]:
    """A non-empty list of distinct names among ``known``."""
    if isinstance(value, str) or not isinstance(value, list) or not value:
        raise ConfigError(f"{where} must be a non-empty list of names among {', '.join(known)}, got {value!r}")
    unknown = [name for name in value if name not in known]
    if unknown:
        raise ConfigError(f"{where}: unknown name(s) {', '.join(map(str, unknown))}; known: {', '.join(known)}")
    if len(set(value)) != len(value):
        raise ConfigError(f"{where} lists a name twice: {value}")
    return list(value)


def _seeds(value: Any, where: str) -> list[int]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where} must be a non-empty list of seeds (integers >= 0), got {value!r}")
    seeds = [_int(seed, f"{where} item", 0) for seed in value]
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{where} lists a seed twice: {seeds}")
    return seeds


def _overrides(value: Any, allowed: Sequence[str], where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping of config fields to values, got {value!r}")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: unknown or sweep-controlled field(s) {', '.join(unknown)}; allowed: "
                          f"{', '.join(allowed)}")
    return dict(value)


def _built(make: Callable[[], Any], where: str) -> Any:
    """``make()``, its ValueError/TypeError/FileNotFoundError turned into a ConfigError naming ``where``."""
    try:
        return make()
    except (ValueError, TypeError, FileNotFoundError) as error:
        raise ConfigError(f"{where}: {error}") from error


def validate_config(data: Any, where: str = "config") -> dict[str, Any]:
    """The config ``data`` (parsed YAML) checked and completed with defaults; ConfigError naming the key.

    Absent sections (``baselines``, ``lstm_dqn``, ``single_networks``, ``sb3``) add no entry; a section
    given with some keys takes the defaults for the others.
    """
    config = _mapping(data if data is not None else {}, where, TOP_LEVEL)
    config["difficulties"] = _names(config["difficulties"], DIFFICULTIES, f"{where}: difficulties")
    for key in ("device", "toolbox", "source", "runs", "out"):
        if not isinstance(config[key], str) or not config[key]:
            raise ConfigError(f"{where}: {key} must be a non-empty string, got {config[key]!r}")
    if config["toolbox"] != "pretrained" and not Path(config["toolbox"]).is_file():
        raise ConfigError(f"{where}: toolbox file {config['toolbox']} does not exist; give a file written by "
                          "Toolbox.save or 'pretrained' for the shipped toolbox")
    if config["source"] not in ("auto", "builtin") and not Path(config["source"]).expanduser().is_dir():
        raise ConfigError(f"{where}: source folder {config['source']} does not exist; give 'auto' (the tools' "
                          "corpus if built, else builtin), 'builtin' or a folder of images")
    if config["max_patches"] is not None:
        _int(config["max_patches"], f"{where}: max_patches", 1)

    stats = _mapping(config["stats"] or {}, f"{where}: stats", SECTIONS["stats"])
    _int(stats["reps"], f"{where}: stats.reps", 1)
    _int(stats["seed"], f"{where}: stats.seed", 0)
    if not isinstance(stats["confidence"], float) or not 0.0 < stats["confidence"] < 1.0:
        raise ConfigError(f"{where}: stats.confidence must be a number in (0, 1), got {stats['confidence']!r}")
    if not isinstance(stats["task_bootstrap"], bool):
        raise ConfigError(f"{where}: stats.task_bootstrap must be true or false")
    config["stats"] = stats
    gallery = _mapping(config["gallery"] or {}, f"{where}: gallery", SECTIONS["gallery"])
    if gallery["difficulty"] not in config["difficulties"]:
        raise ConfigError(f"{where}: gallery.difficulty {gallery['difficulty']!r} is not among the difficulties "
                          f"{config['difficulties']}")
    _int(gallery["patches"], f"{where}: gallery.patches", 1)
    config["gallery"] = gallery

    official = config["official"]
    if official is not False and official != "auto" and not (isinstance(official, str) and Path(official).is_dir()):
        raise ConfigError(f"{where}: official must be 'auto' (the authors' release at {OFFICIAL_DIR} when it "
                          f"exists), false, or an existing folder holding toolbox/ and models/; got {official!r}")

    if config["baselines"] is not None:
        section = _mapping(config["baselines"], f"{where}: baselines", SECTIONS["baselines"])
        section["names"] = _names(section["names"], list(BASELINES), f"{where}: baselines.names")
        section["seeds"] = _seeds(section["seeds"], f"{where}: baselines.seeds")
        _int(section["validation_size"], f"{where}: baselines.validation_size", 1)
        config["baselines"] = section
    if config["lstm_dqn"] is not None:
        section = _mapping(config["lstm_dqn"], f"{where}: lstm_dqn", SECTIONS["lstm_dqn"])
        section["seeds"] = _seeds(section["seeds"], f"{where}: lstm_dqn.seeds")
        allowed = [f.name for f in fields(lstm_dqn.Config) if f.name not in SWEEP_FIELDS]
        section["overrides"] = _overrides(section["overrides"], allowed, f"{where}: lstm_dqn.overrides")
        _built(lambda: lstm_dqn.preset(section["preset"], **section["overrides"]), f"{where}: lstm_dqn")
        config["lstm_dqn"] = section
    if config["single_networks"] is not None:
        section = _mapping(config["single_networks"], f"{where}: single_networks", SECTIONS["single_networks"])
        section["archs"] = _names(section["archs"], list(ARCHITECTURES),
                                  f"{where}: single_networks.archs")
        section["seeds"] = _seeds(section["seeds"], f"{where}: single_networks.seeds")
        allowed = [f.name for f in fields(single_network.NetworkConfig) if f.name not in SWEEP_FIELDS]
        section["overrides"] = _overrides(section["overrides"], allowed, f"{where}: single_networks.overrides")
        for arch in section["archs"]:
            _built(lambda a=arch: single_network.preset(section["preset"], a, **section["overrides"]),
                   f"{where}: single_networks")
        config["single_networks"] = section
    if config["sb3"] is not None:
        items = _sb3_list(config["sb3"], where)
        config["sb3"] = [_sb3_entry(item, f"{where}: sb3[{i}]") for i, item in enumerate(items)]

    names = [entry.name for entry in build_entries(config, official_dir=None)]
    if not names:
        raise ConfigError(f"{where} defines no entry: give baselines, lstm_dqn, single_networks or sb3")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigError(f"{where}: entry name(s) {', '.join(repeated)} appear twice; give sb3 entries a 'name'")
    return config


def _sb3_list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise ConfigError(f"{where}: sb3 must be a list of entries (algo, seeds, timesteps, ...), got {value!r}")
    return value


def _sb3_entry(item: Any, where: str) -> dict[str, Any]:
    from restore_gym.sb3_policy import ALGORITHMS

    section = _mapping(item, where, SECTIONS["sb3"])
    if section["algo"] not in ALGORITHMS:
        raise ConfigError(f"{where}: algo must be one of {', '.join(ALGORITHMS)}, got {section['algo']!r}")
    section["name"] = section["name"] or f"sb3-{section['algo']}"
    section["seeds"] = _seeds(section["seeds"], f"{where}.seeds")
    if section["timesteps"] is not None:
        _int(section["timesteps"], f"{where}.timesteps", 1)
    if "joint" in _built(lambda: _sb3_block(section), where):
        raise ConfigError(f"{where}: hyperparameters with a joint block train the tools along with the agent, a "
                          "toolbox per seed, which the leaderboard does not evaluate; use one without joint")
    return section


def _sb3_block(section: dict[str, Any], source: str | None = None) -> dict[str, Any]:
    """The resolved hyperparameters of an sb3 entry, trained on ``source`` when given."""
    from agents import sb3

    overrides = {} if section["timesteps"] is None else {"n_timesteps": section["timesteps"]}
    block = sb3.load_hyperparams(section["algo"], section["env"], section["hyperparams"], overrides)
    if source is not None:
        block["env_kwargs"] = {**block.get("env_kwargs", {}), "source": source}
    return block


def load_config(path: str | Path) -> dict[str, Any]:
    """The validated config of the YAML file ``path`` (see :func:`validate_config`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"leaderboard config {path} does not exist; see benchmarks/leaderboard.yml")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from error
    return validate_config(data, str(path))


def resolve_training_source(source: str) -> str:
    """``auto``: the tools' corpus folder (``python -m restore_gym.corpus``) when it is complete, else
    ``builtin``; any other value as given."""
    if source != "auto":
        return source
    return CORPUS_SOURCE if corpus_is_complete(default_out_dir()) else "builtin"


# =====================================================================================================
# Entries
# =====================================================================================================


@dataclass
class Context:
    """What every entry shares in one sweep."""

    toolbox: Toolbox
    device: torch.device
    source: str
    runs: Path
    max_patches: int | None
    _test_sets: dict[str, TestSet] = field(default_factory=dict)

    def test_set(self, difficulty: str) -> TestSet:
        """The frozen test set of ``difficulty`` (whole; evaluations keep its first ``max_patches``)."""
        if difficulty not in self._test_sets:
            self._test_sets[difficulty] = load_test_set(difficulty)
        return self._test_sets[difficulty]


@dataclass
class Outcome:
    """An entry's evaluation on one test set: the report, final images, parameters and per-patch costs."""

    evaluation: Evaluation
    parameters: int
    decision_macs: int | None
    macs_per_patch: list[int]


def _decisions(chain: Sequence[int]) -> int:
    """Agent decisions a chain took: one per tool, plus the stop unless the chain is full."""
    return len(chain) + (1 if len(chain) < MAX_TOOLS else 0)


def forward_macs(module: nn.Module, run: Callable[[], Any]) -> int:
    """Multiply-adds per sample of the Conv2d, Linear, LSTMCell and LSTM layers of ``module`` that ``run()``
    calls on a batch of one (biases excluded)."""
    total = 0

    def hook(layer: nn.Module, inputs: tuple, output: Any) -> None:
        nonlocal total
        if isinstance(layer, nn.Conv2d):
            kh, kw = layer.kernel_size
            total += output.numel() * (layer.in_channels // layer.groups) * kh * kw
        elif isinstance(layer, nn.Linear):
            total += output.numel() * layer.in_features
        elif isinstance(layer, nn.LSTMCell):
            total += layer.weight_ih.numel() + layer.weight_hh.numel()
        elif isinstance(layer, nn.LSTM):
            steps = inputs[0].shape[0 if not layer.batch_first else 1] if inputs[0].dim() == 3 else 1
            total += steps * sum(p.numel() for name, p in layer.named_parameters() if name.startswith("weight"))

    kinds = (nn.Conv2d, nn.Linear, nn.LSTMCell, nn.LSTM)
    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, kinds)]
    try:
        with torch.inference_mode():
            run()
    finally:
        for handle in handles:
            handle.remove()
    return total


def qnetwork_macs(network: QNetwork) -> int:
    """Multiply-adds of one decision of the LSTM-DQN agent (one 63x63 image)."""
    device = network.q.weight.device
    return forward_macs(network, lambda: network(torch.zeros(1, 3, PATCH_SIZE, PATCH_SIZE, device=device),
                                                 torch.zeros(1, NUM_TOOLS, device=device)))


def _policy_outcome(policy: Policy, ctx: Context, toolbox: Toolbox, difficulty: str, seed: int, parameters: int,
                    decision_macs: int | None) -> Outcome:
    evaluation = run_policy(policy, difficulty, toolbox, seed=seed, device=ctx.device, max_patches=ctx.max_patches)
    chains = evaluation.report["per_patch"]["chain"]
    macs = [sum(TOOL_SPECS[t].macs for t in chain) + (decision_macs or 0) * _decisions(chain) for chain in chains]
    return Outcome(evaluation, parameters, decision_macs, macs)


def _check_same_config(saved: dict[str, Any], wanted: dict[str, Any], growing: str | None, path: Path) -> None:
    """RuntimeError naming the differences unless ``saved`` equals ``wanted``, the field ``growing`` aside (a
    run may be extended)."""
    differences = config_differences(saved, wanted, growing, labels=("there", "here"))
    if differences:
        raise RuntimeError(f"{path} was trained with another config ({'; '.join(differences)}); delete "
                           f"{path.parent} to train it anew with this config, or restore the config of that run")


def _check_same_toolbox(trained_with: dict[str, Any], ctx: Context, path: Path) -> None:
    """RuntimeError unless the agent of ``path`` was trained with the sweep's toolbox (version and metadata)."""
    here = toolbox_info(ctx.toolbox)
    if trained_with != here:
        raise RuntimeError(f"{path} was trained with another toolbox ({trained_with}, not {here}); delete "
                           f"{path.parent} to train it anew with this toolbox")


@dataclass
class Entry:
    """One row of the leaderboard: a kind, its seeds and how to train (learned entries) and evaluate it.

    ``spec`` is the JSON-ready definition that enters the fingerprint of its results.
    """

    name: str
    kind: str
    seeds: list[int]
    spec: dict[str, Any] = field(default_factory=dict)

    @property
    def public_spec(self) -> dict[str, Any]:
        """``spec`` as results record it: the authors' release by its folder name, not its path on this machine."""
        return {**self.spec, "dir": Path(self.spec["dir"]).name} if "dir" in self.spec else dict(self.spec)

    @property
    def learned(self) -> bool:
        return self.kind in ("lstm-dqn", "single-network", "sb3")

    def run_dir(self, ctx: Context, seed: int) -> Path:
        """Where a learned entry's run of ``seed`` lives."""
        if self.kind == "single-network":
            return ctx.runs / "single" / self.name / f"seed{seed}"
        return ctx.runs / self.name / f"seed{seed}"

    def model_file(self, ctx: Context, seed: int) -> Path | None:
        """The trained model of ``seed`` (None for entries that are not trained here)."""
        # "model.zip": restore_gym.sb3_policy.MODEL_FILE (imported only where needed: SB3 loads slowly)
        files = {"lstm-dqn": lstm_dqn.AGENT_FILE, "single-network": single_network.NETWORK_FILE, "sb3": "model.zip"}
        return self.run_dir(ctx, seed) / files[self.kind] if self.learned else None

    def checkpoint_file(self, ctx: Context, seed: int) -> Path | None:
        """Where the training of ``seed`` keeps its checkpoint (None for entries that never resume)."""
        files = {"lstm-dqn": lstm_dqn.CHECKPOINT_FILE, "single-network": single_network.CHECKPOINT_FILE}
        return self.run_dir(ctx, seed) / files[self.kind] if self.kind in files else None

    # ---- training ----

    def lstm_config(self, ctx: Context, seed: int) -> lstm_dqn.Config:
        return lstm_dqn.preset(self.spec["preset"], seed=seed, source=ctx.source, **self.spec["overrides"])

    def network_config(self, ctx: Context, seed: int) -> single_network.NetworkConfig:
        return single_network.preset(self.spec["preset"], self.name, seed=seed, source=ctx.source,
                                     **self.spec["overrides"])

    def trained(self, ctx: Context, seed: int) -> bool:
        """Whether the model of ``seed`` exists and is trained to the end (always True for entries not trained
        here); RuntimeError when it was trained with another config, which the sweep never overwrites."""
        path = self.model_file(ctx, seed)
        if path is None:
            return True
        if not path.is_file():
            return False
        if self.kind == "lstm-dqn":
            cfg = self.lstm_config(ctx, seed)
            payload = read_agent_file(path)
            _check_same_config(lstm_dqn.stored_config(payload), asdict(cfg), "total_timesteps", path)
            _check_same_toolbox(payload.get("base_toolbox", payload["toolbox"]), ctx, path)
            return payload["global_step"] >= cfg.total_timesteps
        if self.kind == "single-network":
            cfg = self.network_config(ctx, seed)
            payload = read_network_file(path)
            _check_same_config(payload["config"], asdict(cfg), "iterations", path)
            return payload["iteration"] >= cfg.iterations
        saved = yaml.safe_load((path.parent / "config.yml").read_text())  # restore_gym.sb3_policy.CONFIG_FILE
        _check_same_config({"seed": saved.get("seed"), **saved.get("hyperparams", {})},
                           {"seed": seed, **_sb3_block(self.spec, ctx.source)}, None, path)
        if "toolbox_info" in saved:  # runs of older versions did not record it
            _check_same_toolbox(saved["toolbox_info"], ctx, path)
        return True

    def hyperparameters(self, ctx: Context, seed: int) -> dict[str, Any]:
        """The resolved training hyperparameters of ``seed`` (learned entries) or the entry's definition."""
        if self.kind == "lstm-dqn":
            return asdict(self.lstm_config(ctx, seed))
        if self.kind == "single-network":
            return asdict(self.network_config(ctx, seed))
        if self.kind == "sb3":
            return {"seed": seed, **_sb3_block(self.spec, ctx.source)}
        return self.public_spec

    def schedule(self, ctx: Context, seed: int) -> tuple[int, float]:
        """The training length of ``seed`` in its own units (agent steps, iterations or SB3 timesteps) and the
        estimated seconds of one unit."""
        if self.kind == "lstm-dqn":
            return self.lstm_config(ctx, seed).total_timesteps, LSTM_DQN_SECONDS_PER_STEP
        if self.kind == "single-network":
            cfg = self.network_config(ctx, seed)
            return cfg.iterations, single_network.seconds_per_iteration(cfg)
        return int(_sb3_block(self.spec)["n_timesteps"]), SB3_SECONDS_PER_STEP

    def units_done(self, ctx: Context, seed: int) -> int:
        """How much of the training of ``seed`` its checkpoint holds (0 without one; SB3 runs never resume)."""
        path = self.checkpoint_file(ctx, seed)
        if path is None or not path.is_file():
            return 0
        key = "global_step" if self.kind == "lstm-dqn" else "iteration"
        try:  # mapped, not read: an agent's checkpoint holds gigabytes of replay
            return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)[key])
        except (OSError, RuntimeError, KeyError, ValueError) as error:
            raise RuntimeError(f"the training checkpoint {path} cannot be read ({error}); delete it to train "
                               f"{self.name} seed {seed} anew") from error

    def train_cost(self, ctx: Context, seed: int) -> float:
        """Estimated seconds to train ``seed`` from where its run folder stands (a checkpoint's part is done)."""
        units, per_unit = self.schedule(ctx, seed)
        return max(units - self.units_done(ctx, seed), 0) * per_unit

    def train(self, ctx: Context, seed: int, advance: Callable[[float], None] | None = None) -> None:
        """Train (or resume) ``seed`` into its run folder, telling ``advance`` (optional) of the progress in
        estimated seconds of :meth:`train_cost` as it goes (SB3 runs: not before the end)."""
        out = self.run_dir(ctx, seed)
        tell = advance or (lambda seconds: None)
        per_unit = self.schedule(ctx, seed)[1]
        checkpoint = self.checkpoint_file(ctx, seed)
        resume = checkpoint is not None and checkpoint.is_file()
        if self.kind == "lstm-dqn":
            lstm_dqn.train(self.lstm_config(ctx, seed), out, ctx.toolbox, ctx.device, resume=resume, progress=False,
                           on_steps=lambda steps: tell(steps * per_unit))
        elif self.kind == "single-network":
            single_network.train(self.network_config(ctx, seed), out, ctx.device, resume=resume, progress=False,
                                 on_iteration=lambda: tell(per_unit))
        else:
            from agents import sb3

            block = _sb3_block(self.spec, ctx.source)
            # The committed model.zip needs no optimizer statistics: SB3 runs are evaluated, never resumed.
            sb3.train(self.spec["algo"], self.spec["env"], seed, out=out, hyperparams=self.spec["hyperparams"],
                      overrides=block, toolbox=ctx.toolbox, device=str(ctx.device), optimizer_state=False)

    # ---- evaluation ----

    def toolbox(self, ctx: Context) -> Toolbox | None:
        """The toolbox this entry runs (None for single networks)."""
        if self.kind == "official":
            return Toolbox.from_official(Path(self.spec["dir"]) / "toolbox").to(ctx.device)
        return None if self.kind == "single-network" else ctx.toolbox

    def model_digest(self, ctx: Context, seed: int) -> str | None:
        if self.kind == "official":
            models = Path(self.spec["dir"]) / "models"
            return file_sha256(models)
        path = self.model_file(ctx, seed)
        return file_sha256(path) if path is not None and path.is_file() else None

    def evaluate(self, ctx: Context, toolbox: Toolbox | None, difficulty: str, seed: int) -> Outcome:
        """Evaluate ``seed`` of this entry on the test set of ``difficulty``."""
        if self.kind == "single-network":
            network, _ = load_network(self.model_file(ctx, seed), ctx.device)
            evaluation = run_network(network, difficulty, device=ctx.device, max_patches=ctx.max_patches,
                                     name=self.name, details={"seed": seed})
            macs = int(evaluation.report["metrics"]["macs_per_patch"])
            return Outcome(evaluation, count_parameters(network), None, [macs] * evaluation.report["patches"])
        assert toolbox is not None
        tools = count_parameters(toolbox)
        if self.kind == "baseline":
            policy = make_policy(self.name, toolbox, difficulty, seed, validation_size=self.spec["validation_size"],
                                 device=ctx.device, source=ctx.source)
            chain = getattr(policy, "details", {}).get("chain")
            parameters = tools if chain is None else sum(TOOL_SPECS[t].params for t in set(chain))
            return _policy_outcome(policy, ctx, toolbox, difficulty, seed, parameters, None)
        if self.kind in ("lstm-dqn", "official"):
            checkpoint = self.model_file(ctx, seed) if self.kind == "lstm-dqn" else Path(self.spec["dir"]) / "models"
            policy = make_policy(self.kind, toolbox, difficulty, seed, str(checkpoint), device=ctx.device)
            network = policy.act.network
            return _policy_outcome(policy, ctx, toolbox, difficulty, seed, tools + count_parameters(network),
                                   qnetwork_macs(network))
        from restore_gym.sb3_policy import load_policy

        policy = load_policy(self.run_dir(ctx, seed), ctx.device)
        model = policy.model
        macs = forward_macs(model.policy, lambda: model.predict(model.observation_space.sample(), deterministic=True))
        named = NamedPolicy(self.name, policy, {"algo": self.spec["algo"], "seed": seed})
        return _policy_outcome(named, ctx, toolbox, difficulty, seed, tools + count_parameters(model.policy), macs)


def build_entries(config: dict[str, Any], official_dir: Path | None) -> list[Entry]:
    """The entries of a validated config, in leaderboard order; the official one when ``official_dir`` is given."""
    entries = []
    if config["baselines"] is not None:
        section = config["baselines"]
        for name in section["names"]:
            seeds = section["seeds"] if name in STOCHASTIC_BASELINES else section["seeds"][:1]
            entries.append(Entry(name, "baseline", seeds, {"validation_size": section["validation_size"]}))
    if official_dir is not None:
        entries.append(Entry("official", "official", [0], {"dir": str(official_dir)}))
    if config["lstm_dqn"] is not None:
        section = config["lstm_dqn"]
        entries.append(Entry("lstm-dqn", "lstm-dqn", section["seeds"],
                             {"preset": section["preset"], "overrides": section["overrides"]}))
    if config["single_networks"] is not None:
        section = config["single_networks"]
        for arch in section["archs"]:
            entries.append(Entry(arch, "single-network", section["seeds"],
                                 {"preset": section["preset"], "overrides": section["overrides"]}))
    for section in config["sb3"] or []:
        entries.append(Entry(section["name"], "sb3", section["seeds"],
                             {k: section[k] for k in ("algo", "timesteps", "hyperparams", "env")}))
    return entries


def official_folder(setting: Any) -> tuple[Path | None, str | None]:
    """The authors' release to evaluate (or None) and, when it is skipped, why."""
    if setting is False:
        return None, "the authors' agent: switched off in the config (official: false)"
    folder = OFFICIAL_DIR if setting == "auto" else Path(setting)
    if not folder.is_dir():
        return None, (f"the authors' agent with their toolbox: skipped, their release is not at {folder} "
                      "(reference data beside the project, never part of it)")
    return folder, None


# =====================================================================================================
# The sweep
# =====================================================================================================


@dataclass
class Job:
    """A unit of the sweep (``kind`` "train" or "evaluate") with its estimated cost in seconds."""

    kind: str
    label: str
    cost: float
    run: Callable[[Callable[[float], None]], None]  # called with a function that advances the progress bar
    entry: str = ""  # the entry and seed a training job trains
    seed: int = 0


def _fingerprint(inputs: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def gallery_indices(count: int, patches: int) -> list[int]:
    """``count`` patch indices spread evenly over the first ``patches`` of a test set."""
    return sorted({int(i) for i in np.linspace(0, patches - 1, min(count, patches)).round()})


class Sweep:
    """Plans and runs the jobs of one leaderboard config, then aggregates the result files."""

    def __init__(self, config: dict[str, Any], out: Path, ctx: Context, official_note: str | None,
                 official_dir: Path | None, train_missing: bool = True, evaluate_missing: bool = True,
                 jobs: int = 1) -> None:
        self.config, self.out, self.ctx = config, out, ctx
        self.train_missing, self.evaluate_missing = train_missing and evaluate_missing, evaluate_missing
        self.jobs, self.official_dir = jobs, official_dir
        self.untrained: set[tuple[str, int]] = set()  # (entry, seed) left out because they are not trained
        # (entry, difficulty, seed) left out because no valid result is stored (evaluate_missing False)
        self.unevaluated: set[tuple[str, str, int]] = set()
        self.entries = build_entries(config, official_dir)
        self.notes = [official_note] if official_note else []
        self.results = out / "leaderboard" / "runs"
        self._toolboxes: dict[str, Toolbox | None] = {}
        self._fingerprints: dict[str, str] = {}

    def published(self, entry: str, difficulty: str, seed: int) -> bool:
        """Whether the outputs hold the result of (``entry``, ``difficulty``, ``seed``) (after :meth:`plan`)."""
        return (entry, seed) not in self.untrained and (entry, difficulty, seed) not in self.unevaluated

    def result_path(self, entry: Entry, difficulty: str, seed: int) -> Path:
        return self.results / entry.name / f"{difficulty}-seed{seed}.json"

    def entry_toolbox(self, entry: Entry) -> Toolbox | None:
        if entry.name not in self._toolboxes:
            self._toolboxes[entry.name] = entry.toolbox(self.ctx)
        return self._toolboxes[entry.name]

    def toolbox_fingerprint(self, entry: Entry) -> str | None:
        toolbox = self.entry_toolbox(entry)
        if toolbox is None:
            return None
        if entry.name not in self._fingerprints:
            self._fingerprints[entry.name] = toolbox.fingerprint()
        return self._fingerprints[entry.name]

    def patches(self, difficulty: str) -> int:
        size = len(self.ctx.test_set(difficulty))
        return size if self.ctx.max_patches is None else min(size, self.ctx.max_patches)

    def gallery(self, entry: Entry, difficulty: str, seed: int) -> list[int] | None:
        """The gallery's patch indices where this run's images are kept (the entry's first seed), else None."""
        spec = self.config["gallery"]
        if difficulty != spec["difficulty"] or seed != entry.seeds[0]:
            return None
        return gallery_indices(spec["patches"], self.patches(difficulty))

    def inputs(self, entry: Entry, difficulty: str, seed: int) -> dict[str, Any]:
        """Everything a result depends on; its hash decides whether a stored result is still valid."""
        spec = entry.public_spec
        if (entry.kind == "baseline" and entry.name in ("best-tool", "best-chain")) or entry.learned:
            spec["source"] = self.ctx.source
        return {
            "format": RESULT_FORMAT, "entry": entry.name, "kind": entry.kind, "spec": spec, "seed": seed,
            "difficulty": difficulty, "test_set": self.ctx.test_set(difficulty).digest,
            "max_patches": self.ctx.max_patches, "toolbox": self.toolbox_fingerprint(entry),
            "model": entry.model_digest(self.ctx, seed), "gallery": self.gallery(entry, difficulty, seed),
        }

    def finished(self, entry: Entry, difficulty: str, seed: int) -> bool:
        """Whether the result file exists with the fingerprint of today's inputs (and its gallery file)."""
        path = self.result_path(entry, difficulty, seed)
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError):
            return False
        if stored.get("fingerprint") != _fingerprint(self.inputs(entry, difficulty, seed)):
            return False
        return self.gallery(entry, difficulty, seed) is None or path.with_suffix(".npz").is_file()

    def evaluate(self, entry: Entry, difficulty: str, seed: int) -> None:
        """Evaluate one (entry, difficulty, seed) and write its result file (and gallery images) atomically."""
        inputs = self.inputs(entry, difficulty, seed)
        outcome = entry.evaluate(self.ctx, self.entry_toolbox(entry), difficulty, seed)
        path = self.result_path(entry, difficulty, seed)
        indices = self.gallery(entry, difficulty, seed)
        if indices is not None:
            images = np.round(np.clip(outcome.evaluation.images[indices], 0.0, 1.0) * 255.0).astype(np.uint8)
            write_npz_atomic(path.with_suffix(".npz"), indices=np.array(indices), images=images)
        write_json_atomic(path, {
            "format": RESULT_FORMAT, "entry": entry.name, "kind": entry.kind, "seed": seed,
            "difficulty": difficulty, "fingerprint": _fingerprint(inputs), "inputs": inputs,
            "hyperparameters": entry.hyperparameters(self.ctx, seed), "parameters": outcome.parameters,
            "decision_macs": outcome.decision_macs, "macs_per_patch": outcome.macs_per_patch,
            "report": outcome.evaluation.report,
        })

    def eval_cost(self, entry: Entry, difficulty: str) -> float:
        key = "single-network" if entry.kind == "single-network" else entry.name
        cost = self.patches(difficulty) * EVAL_SECONDS_PER_PATCH.get(key, EVAL_SECONDS_PER_PATCH_DEFAULT)
        return cost + entry.spec.get("validation_size", 0) * VALIDATION_SEARCH_SECONDS.get(entry.name, 0.0)

    def plan(self) -> tuple[list[Job], int]:
        """The jobs still to run, in order, and how many finished results are skipped."""
        jobs, skipped = [], 0
        for entry in self.entries:
            for seed in entry.seeds:
                must_train = not entry.trained(self.ctx, seed)
                if must_train and not self.train_missing:
                    self.untrained.add((entry.name, seed))
                    continue
                if must_train:
                    jobs.append(Job("train", f"train {entry.name} seed {seed}", entry.train_cost(self.ctx, seed),
                                    lambda advance, e=entry, s=seed: e.train(self.ctx, s, advance), entry.name, seed))
                for difficulty in self.config["difficulties"]:
                    if not must_train and self.finished(entry, difficulty, seed):
                        skipped += 1
                        continue
                    if not self.evaluate_missing:
                        self.unevaluated.add((entry.name, difficulty, seed))
                        continue
                    jobs.append(Job("evaluate", f"evaluate {entry.name} seed {seed} on {difficulty}",
                                    self.eval_cost(entry, difficulty),
                                    lambda advance, e=entry, d=difficulty, s=seed: self.evaluate(e, d, s)))
        return jobs, skipped

    def run(self, progress: bool = True) -> dict[str, int]:
        """Run every pending job under one progress bar; returns the counts of jobs run and results skipped."""
        jobs, skipped = self.plan()
        bar = tqdm(total=round(sum(job.cost for job in jobs), 3), disable=not progress, desc="leaderboard",
                   bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}] {postfix}")
        trainings = [job for job in jobs if job.kind == "train"]
        evaluations = [job for job in jobs if job.kind == "evaluate"]
        if self.jobs > 1 and len(trainings) > 1:
            self._train_in_parallel(trainings, bar)
            jobs = evaluations
        for job in jobs:
            bar.set_postfix_str(job.label)
            advance = _Advance(bar, job.cost)
            job.run(advance)
            advance(job.cost)
        bar.close()
        return {"trained": len(trainings), "evaluated": len(evaluations), "skipped": skipped}

    def _train_in_parallel(self, trainings: list[Job], bar: tqdm) -> None:
        """Run the training jobs in ``self.jobs`` worker processes, advancing ``bar`` as they go."""
        bar.set_postfix_str(f"training {len(trainings)} models, {self.jobs} at a time")
        advances = [_Advance(bar, job.cost) for job in trainings]
        run_in_processes(_train_worker, [(self.config, self.official_dir, job.entry, job.seed) for job in trainings],
                         self.jobs, on_done=lambda index: advances[index](trainings[index].cost),
                         on_progress=lambda index, seconds: advances[index](seconds))


def _train_worker(config: dict[str, Any], official_dir: Path | None, entry_name: str, seed: int,
                  progress: Callable[[float], None]) -> None:
    """Train (or resume) one seed of one entry of ``config`` in a worker process of :meth:`Sweep.run`."""
    entry = next(e for e in build_entries(config, official_dir) if e.name == entry_name)
    entry.train(build_context(config), seed, progress)


class _Advance:
    """Advances a progress bar by at most ``budget`` in all (a job's estimate), whatever the job reports."""

    def __init__(self, bar: tqdm, budget: float) -> None:
        self.bar, self.left = bar, budget

    def __call__(self, amount: float) -> None:
        amount = min(amount, self.left)
        self.left -= amount
        self.bar.update(amount)


# =====================================================================================================
# Aggregation and outputs
# =====================================================================================================


def load_results(sweep: Sweep) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """The stored results of every entry and difficulty, ordered by seed."""
    results = {}
    for entry in sweep.entries:
        for difficulty in sweep.config["difficulties"]:
            results[entry.name, difficulty] = [json.loads(sweep.result_path(entry, difficulty, seed).read_text())
                                               for seed in entry.seeds if sweep.published(entry.name, difficulty, seed)]
    return results


def aggregate(runs: list[dict[str, Any]], stats: dict[str, Any]) -> dict[str, Any]:
    """The deterministic aggregates of one entry on one difficulty from its per-seed results."""
    per_patch = [run["report"]["per_patch"] for run in runs]
    psnr = np.array([p["psnr"] for p in per_patch])
    psnr_input = np.array([p["psnr_input"] for p in per_patch])
    options = {k: stats[k] for k in ("reps", "confidence", "seed", "task_bootstrap")}
    chains = [p["chain"] for p in per_patch]
    return {
        "psnr": summarize(psnr, **options),
        "ssim": summarize(np.array([p["ssim"] for p in per_patch]), **options),
        "psnr_gain": summarize(psnr - psnr_input, **options),
        "psnr_input": float(psnr_input.mean()),
        "chain_length": None if chains[0] is None else float(np.mean([len(c) for run in chains for c in run])),
        "parameters": runs[0]["parameters"],
        "macs_per_patch": float(np.mean([run["macs_per_patch"] for run in runs])),
        "agent_macs_per_decision": runs[0]["decision_macs"],
    }


def build_rows(sweep: Sweep, results: dict[tuple[str, str], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per entry and difficulty: aggregates, share of the exhaustive oracle's gain, timing."""
    aggregates = {key: aggregate(runs, sweep.config["stats"]) for key, runs in results.items() if runs}
    rows = []
    for difficulty in sweep.config["difficulties"]:
        oracle = aggregates.get((ORACLE, difficulty))
        oracle_gain = oracle["psnr_gain"]["mean"] if oracle else None
        for entry in sweep.entries:
            runs = results[entry.name, difficulty]
            if not runs:  # no seed trained yet (--no-train)
                continue
            metrics = aggregates[entry.name, difficulty]
            gain = metrics["psnr_gain"]["mean"]
            metrics["oracle_gain_share"] = gain / oracle_gain if oracle_gain else None
            usage = [run["report"]["tool_usage"]["per_step"] for run in runs] if metrics["chain_length"] is not None \
                else None
            rows.append({
                "entry": entry.name, "kind": entry.kind, "difficulty": difficulty,
                "seeds": [run["seed"] for run in runs],
                "patches": runs[0]["report"]["patches"], "metrics": metrics,
                "tool_usage_per_step": None if usage is None else np.sum(usage, axis=0).tolist(),
                "timing": {"wall_seconds_per_patch": float(np.mean(
                    [run["report"]["metrics"]["wall_seconds_per_patch"] for run in runs])), "deterministic": False},
            })
    return rows


def _psnr_matrix(runs: list[dict[str, Any]]) -> np.ndarray:
    return np.array([run["report"]["per_patch"]["psnr"] for run in runs])


def _verdict(low: float, high: float) -> str:
    if low > 0.0:
        return "toolchain ahead"
    return "network ahead" if high < 0.0 else "no clear difference"


def paper_comparison(sweep: Sweep, results: dict[tuple[str, str], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The paper's claim put to the test: every toolchain agent (:data:`TOOLCHAIN_KINDS`) against every single
    network on each difficulty, by PSNR (difference of means and probability of improvement, with intervals
    from a bootstrap over test patches, paired, and training seeds) and by multiply-adds per patch."""
    options = {k: sweep.config["stats"][k] for k in ("reps", "confidence", "seed")}
    toolchains = [e for e in sweep.entries if e.kind in TOOLCHAIN_KINDS]
    networks = [e for e in sweep.entries if e.kind == "single-network"]
    records = []
    for difficulty in sweep.config["difficulties"]:
        for chain, network in ((c, n) for c in toolchains for n in networks):
            chain_runs, network_runs = results[chain.name, difficulty], results[network.name, difficulty]
            if not chain_runs or not network_runs:
                continue
            chain_psnr, network_psnr = _psnr_matrix(chain_runs), _psnr_matrix(network_runs)
            comparison = compare(chain_psnr, network_psnr, task_bootstrap=True, **options)
            chain_macs = float(np.mean([run["macs_per_patch"] for run in chain_runs]))
            network_macs = float(np.mean([run["macs_per_patch"] for run in network_runs]))
            records.append({
                "difficulty": difficulty, "toolchain": chain.name, "network": network.name,
                "toolchain_psnr": float(chain_psnr.mean()), "network_psnr": float(network_psnr.mean()), **comparison,
                "toolchain_parameters": chain_runs[0]["parameters"],
                "network_parameters": network_runs[0]["parameters"],
                "toolchain_macs_per_patch": chain_macs, "network_macs_per_patch": network_macs,
                "macs_share": chain_macs / network_macs, "verdict": _verdict(*comparison["difference_ci"]),
            })
    return records


COMPARISON_COLUMNS = ("difficulty", "toolchain", "network", "toolchain_psnr", "network_psnr", "difference",
                      "difference_ci_low", "difference_ci_high", "probability_of_improvement",
                      "probability_of_improvement_ci_low", "probability_of_improvement_ci_high",
                      "toolchain_parameters", "network_parameters", "toolchain_macs_per_patch",
                      "network_macs_per_patch", "macs_share", "verdict")


def comparison_record(record: dict[str, Any]) -> dict[str, Any]:
    """A record of :func:`paper_comparison` flattened for ``comparison.csv``."""
    flat = {k: record[k] for k in COMPARISON_COLUMNS if k in record}
    for key in ("difference", "probability_of_improvement"):
        flat[f"{key}_ci_low"], flat[f"{key}_ci_high"] = record[f"{key}_ci"]
    return flat


def comparison_markdown(records: list[dict[str, Any]], confidence: float) -> list[str]:
    """The Markdown section of the paper's comparison (no lines without a toolchain and a network)."""
    if not records:
        return []
    level = round(100 * confidence)
    lines = [
        "## The paper's comparison: toolchains against single networks", "",
        "The paper's claim: a toolchain of small tools matches single networks of the toolbox's size at a fraction "
        "of their computation. Difference: the toolchain's mean PSNR minus the network's, with its "
        f"{level}% interval from a bootstrap over test patches (paired) and training seeds; P(better): rliable's "
        "probability of improvement, the chance that the toolchain beats the network on a random test patch; "
        "compute: the toolchain's multiply-adds per patch (tools run plus its agent's network) as a share of "
        "the network's.", "",
        f"| difficulty | toolchain | network | PSNR toolchain / network (dB) | difference (dB) [{level}% CI] "
        f"| P(better) [{level}% CI] | GMACs toolchain / network | compute | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        low, high = r["difference_ci"]
        p_low, p_high = r["probability_of_improvement_ci"]
        lines.append(
            f"| {r['difficulty']} | {r['toolchain']} | {r['network']} | {r['toolchain_psnr']:.3f} / "
            f"{r['network_psnr']:.3f} | {r['difference']:+.3f} [{low:+.3f}, {high:+.3f}] | "
            f"{r['probability_of_improvement']:.2f} [{p_low:.2f}, {p_high:.2f}] | "
            f"{r['toolchain_macs_per_patch'] / 1e9:.3f} / {r['network_macs_per_patch'] / 1e9:.3f} | "
            f"{100 * r['macs_share']:.0f}% | {r['verdict']} |")
    if any(r["toolchain"] == "official" for r in records):
        lines += ["", "`official` is the authors' agent with their tools, trained on their own data; the networks "
                  "and every other entry were trained on this sweep's training images."]
    return [*lines, ""]


RUN_COLUMNS = ("entry", "kind", "difficulty", "seed", "patches", "psnr", "ssim", "psnr_input", "psnr_gain",
               "chain_length", "parameters", "macs_per_patch", "wall_seconds_per_patch")
ROW_COLUMNS = ("entry", "kind", "difficulty", "runs", "patches", "psnr_mean", "psnr_ci_low", "psnr_ci_high",
               "psnr_iqm", "ssim_mean", "ssim_ci_low", "ssim_ci_high", "psnr_gain_mean", "oracle_gain_share",
               "chain_length", "parameters", "macs_per_patch", "agent_macs_per_decision", "wall_seconds_per_patch")


def _csv(columns: Sequence[str], records: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in record.items()} for record in records)
    return buffer.getvalue()


def row_record(row: dict[str, Any]) -> dict[str, Any]:
    """A leaderboard row flattened for ``leaderboard.csv``."""
    m = row["metrics"]
    return {
        "entry": row["entry"], "kind": row["kind"], "difficulty": row["difficulty"], "runs": len(row["seeds"]),
        "patches": row["patches"], "psnr_mean": m["psnr"]["mean"], "psnr_ci_low": m["psnr"]["mean_ci"][0],
        "psnr_ci_high": m["psnr"]["mean_ci"][1], "psnr_iqm": m["psnr"]["iqm"], "ssim_mean": m["ssim"]["mean"],
        "ssim_ci_low": m["ssim"]["mean_ci"][0], "ssim_ci_high": m["ssim"]["mean_ci"][1],
        "psnr_gain_mean": m["psnr_gain"]["mean"], "oracle_gain_share": m["oracle_gain_share"],
        "chain_length": m["chain_length"], "parameters": m["parameters"], "macs_per_patch": m["macs_per_patch"],
        "agent_macs_per_decision": m["agent_macs_per_decision"],
        "wall_seconds_per_patch": row["timing"]["wall_seconds_per_patch"],
    }


def run_records(results: dict[tuple[str, str], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One record per (entry, difficulty, seed) for ``runs.csv``."""
    records = []
    for runs in results.values():
        for run in runs:
            m = run["report"]["metrics"]
            records.append({"entry": run["entry"], "kind": run["kind"], "difficulty": run["difficulty"],
                            "seed": run["seed"], "patches": run["report"]["patches"],
                            **{k: m[k] for k in ("psnr", "ssim", "psnr_input", "psnr_gain", "chain_length")},
                            "parameters": run["parameters"], "macs_per_patch": float(np.mean(run["macs_per_patch"])),
                            "wall_seconds_per_patch": m["wall_seconds_per_patch"]})
    return records


def markdown(sweep: Sweep, rows: list[dict[str, Any]], comparison: list[dict[str, Any]], header: dict[str, Any]
             ) -> str:
    """The leaderboard as Markdown: setup, one table per difficulty, the paper's comparison, notes and plots."""
    stats = sweep.config["stats"]
    level = round(100 * stats["confidence"])
    lines = ["# Leaderboard", ""]
    if sweep.ctx.max_patches is not None:
        lines += [f"**LIMITED RUN: only the first {sweep.ctx.max_patches} patches of each test set. Not comparable "
                  "with full results.**", ""]
    test_sets = ", ".join(f"{d} {t['patches']} patches ({t['digest'][:12]}…, "
                          f"{'matches the recorded digest' if t['digest_matches'] else 'NO recorded match'})"
                          for d, t in header["test_sets"].items())
    toolbox, machine = header["toolbox"], header["provenance"]
    hardware = machine["cuda_device"] or f"{machine['cpu_model']}, {machine['cpu_count']} CPUs"
    lines += [
        f"Frozen test sets: {test_sets}. Toolbox: {toolbox['metadata'].get('name', toolbox['name'])} "
        f"({toolbox['fingerprint'][:12]}…). Learned entries trained on `{header['training_source']}`. "
        f"Aggregated at commit {machine['git_commit']}, torch {machine['torch']}, device {sweep.ctx.device} "
        f"({hardware}); every per-run file in `leaderboard/runs/` records the provenance of its own evaluation.",
        "",
        f"PSNR and SSIM: mean over runs (seeds) and test patches with its {level}% stratified-bootstrap confidence "
        f"interval over runs ({stats['reps']} replicates, seed {stats['seed']}; a deterministic entry has one run, "
        "so its interval is a point), and the interquartile mean (IQM). Gain: over the input. Oracle share: the "
        "entry's mean gain over the exhaustive oracle's (this sweep's toolbox). GMACs: multiply-adds per patch "
        "actually executed (tools of the chain + the agent's network per decision; single networks: one pass; "
        "an oracle's search is not counted). "
        "ms/patch: measured wall time, **not deterministic**.",
        "",
    ]
    for difficulty in sweep.config["difficulties"]:
        lines += [f"## {difficulty}", "",
                  f"| entry | runs | PSNR (dB) [{level}% CI] | PSNR IQM | SSIM [{level}% CI] | gain (dB) "
                  "| oracle share | tools/patch | parameters | GMACs/patch | ms/patch* |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for row in (r for r in rows if r["difficulty"] == difficulty):
            m = row["metrics"]
            psnr, ssim = m["psnr"], m["ssim"]
            share = "n/a" if m["oracle_gain_share"] is None else f"{100 * m['oracle_gain_share']:.0f}%"
            length = "n/a" if m["chain_length"] is None else f"{m['chain_length']:.2f}"
            lines.append(
                f"| {row['entry']} | {len(row['seeds'])} | {psnr['mean']:.3f} [{psnr['mean_ci'][0]:.3f}, "
                f"{psnr['mean_ci'][1]:.3f}] | {psnr['iqm']:.3f} | {ssim['mean']:.4f} [{ssim['mean_ci'][0]:.4f}, "
                f"{ssim['mean_ci'][1]:.4f}] | {m['psnr_gain']['mean']:+.3f} | {share} | {length} | "
                f"{m['parameters']:,} | {m['macs_per_patch'] / 1e9:.3f} | "
                f"{1e3 * row['timing']['wall_seconds_per_patch']:.2f} |")
        lines.append("")
    lines += ["\\* wall time per patch on this run's machine, including a policy's own work (an oracle's search; "
              "the exhaustive oracle's search is cached on disk after its first run).", ""]
    lines += comparison_markdown(comparison, stats["confidence"])
    trained = {e.name: [s for s in e.seeds if (e.name, s) not in sweep.untrained] for e in sweep.entries}
    few = [e.name for e in sweep.entries if e.learned and 0 < len(trained[e.name]) < 3]
    notes = list(sweep.notes)
    for name in dict.fromkeys(name for name, _ in sorted(sweep.untrained)):
        seeds = sorted(seed for entry, seed in sweep.untrained if entry == name)
        notes.append(f"{name}: seed(s) {', '.join(map(str, seeds))} not trained yet (run without --no-train to "
                     "train them); the row aggregates the trained seeds only")
    unevaluated: dict[tuple[str, str], list[int]] = {}
    for name, difficulty, seed in sorted(sweep.unevaluated):
        unevaluated.setdefault((name, difficulty), []).append(seed)
    for (name, difficulty), seeds in unevaluated.items():
        notes.append(f"{name} on {difficulty}: seed(s) {', '.join(map(str, seeds))} not evaluated yet (run without "
                     "--no-evaluate to evaluate them); not in the tables")
    if few:
        notes.append(f"fewer than 3 training seeds for {', '.join(few)}: their intervals are not meaningful")
    if notes:
        lines += ["Notes:", "", *[f"- {note}" for note in notes], ""]
    lines += ["![PSNR per difficulty](leaderboard/psnr.png)", "",
              "![Tool usage per step](leaderboard/tool_usage.png)", "",
              "![Restored patches and their toolchains](leaderboard/gallery.png)", ""]
    return "\n".join(lines)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_figure(fig: Any, path: Path) -> None:
    write_atomic(path, lambda handle: fig.savefig(handle, format="png", dpi=110, bbox_inches="tight"))
    _pyplot().close(fig)


def plot_psnr(rows: list[dict[str, Any]], difficulties: list[str], confidence: float, path: Path) -> None:
    """PSNR per difficulty, one marker per entry with its ``confidence`` interval."""
    plt = _pyplot()
    entries = list(dict.fromkeys(row["entry"] for row in rows))
    fig, ax = plt.subplots(figsize=(2.2 + 2.4 * len(difficulties), 4.5))
    width = 0.8 / max(len(entries), 1)
    for k, entry in enumerate(entries):
        mine = {row["difficulty"]: row["metrics"]["psnr"] for row in rows if row["entry"] == entry}
        shown = [i for i, d in enumerate(difficulties) if d in mine]  # an entry may lack a difficulty's result
        x = np.array(shown) - 0.4 + width * (k + 0.5)
        points = [mine[difficulties[i]] for i in shown]
        means = np.array([point["mean"] for point in points])
        errors = np.array([[point["mean"] - point["mean_ci"][0], point["mean_ci"][1] - point["mean"]]
                           for point in points]).T
        kind = next(row["kind"] for row in rows if row["entry"] == entry)
        ax.errorbar(x, means, yerr=errors, fmt=PLOT_MARKERS.get(kind, "o"), color=f"C{k % 10}", capsize=3,
                    label=entry)
    ax.set_xticks(np.arange(len(difficulties)), difficulties)
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(f"PSNR per difficulty (mean, {round(100 * confidence)}% CI over seeds)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    _save_figure(fig, path)


def plot_tool_usage(rows: list[dict[str, Any]], difficulties: list[str], path: Path) -> None:
    """Share of patches applying each tool at each step, per entry (rows) and difficulty (columns)."""
    plt = _pyplot()
    used = [row for row in rows if row["tool_usage_per_step"] is not None and np.any(row["tool_usage_per_step"])]
    entries = list(dict.fromkeys(row["entry"] for row in used)) or ["(no entry applies tools)"]
    fig, axes = plt.subplots(len(entries), len(difficulties), squeeze=False,
                             figsize=(3.2 * len(difficulties), 1.3 * len(entries) + 0.8))
    image = None
    for i, entry in enumerate(entries):
        for j, difficulty in enumerate(difficulties):
            ax = axes[i, j]
            row = next((r for r in used if r["entry"] == entry and r["difficulty"] == difficulty), None)
            if row is not None:
                share = np.array(row["tool_usage_per_step"]) / (row["patches"] * len(row["seeds"]))
                image = ax.imshow(share, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
            ax.set_xticks(range(len(TOOL_SPECS)), [str(s.index + 1) for s in TOOL_SPECS], fontsize=6)
            ax.set_yticks(range(MAX_TOOLS), [f"step {s + 1}" for s in range(MAX_TOOLS)], fontsize=6)
            ax.tick_params(labelleft=j == 0)  # step labels on the first column only: they would overlap
            if i == 0:
                ax.set_title(difficulty, fontsize=9)
            if j == 0:
                ax.set_ylabel(entry, fontsize=8, rotation=0, ha="right", va="center", labelpad=30)
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.6, label="share of patches")
    fig.suptitle("Tool usage per step (tools 1-4 deblur, 5-8 denoise, 9-12 de-JPEG)", fontsize=10)
    _save_figure(fig, path)


def _chain_text(chain: list[int] | None) -> str:
    if chain is None:
        return "one pass"
    return " > ".join(str(t + 1) for t in chain) if chain else "stop"


def plot_gallery(sweep: Sweep, results: dict[tuple[str, str], list[dict[str, Any]]], path: Path) -> None:
    """Gallery patches of the gallery difficulty: input, each entry's restoration (first seed) with its chain
    (1-based tools) and PSNR, and the clean patch."""
    plt = _pyplot()
    difficulty = sweep.config["gallery"]["difficulty"]
    indices = gallery_indices(sweep.config["gallery"]["patches"], sweep.patches(difficulty))
    test_set = sweep.ctx.test_set(difficulty)
    # Entries whose first seed is published on this difficulty (with --no-train or --no-evaluate some are not).
    shown = [entry for entry in sweep.entries if sweep.published(entry.name, difficulty, entry.seeds[0])]
    columns = ["input", *(entry.name for entry in shown), "clean"]
    fig, axes = plt.subplots(len(indices), len(columns), squeeze=False,
                             figsize=(1.5 * len(columns), 1.75 * len(indices) + 0.5))
    first = {entry.name: results[entry.name, difficulty][0] for entry in shown}
    images = {entry.name: np.load(sweep.result_path(entry, difficulty, entry.seeds[0]).with_suffix(".npz"))["images"]
              for entry in shown}
    for r, index in enumerate(indices):
        panels = [(test_set.degraded[index], f"{metrics.psnr(test_set.degraded[index], test_set.clean[index]):.2f} dB")]
        for entry in shown:
            per_patch = first[entry.name]["report"]["per_patch"]
            chain = None if per_patch["chain"] is None else per_patch["chain"][index]
            panels.append((images[entry.name][r], f"{_chain_text(chain)}\n{per_patch['psnr'][index]:.2f} dB"))
        panels.append((test_set.clean[index], ""))
        for c, (image, label) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(image, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(label, fontsize=6)
            if r == 0:
                ax.set_title(columns[c], fontsize=7)
    fig.suptitle(f"{difficulty} test patches {indices}: chains of 1-based tools, PSNR", fontsize=9)
    _save_figure(fig, path)


def write_outputs(sweep: Sweep, counts: dict[str, int]) -> dict[str, Any]:
    """Aggregate the result files into JSON, CSV, Markdown and PNG outputs (all atomic); returns the JSON."""
    results = load_results(sweep)
    rows = build_rows(sweep, results)
    comparison = paper_comparison(sweep, results)
    folder = sweep.out / "leaderboard"
    header = {
        "test_sets": {d: {"patches": sweep.patches(d), "full_patches": len(sweep.ctx.test_set(d)),
                          "digest": sweep.ctx.test_set(d).digest,
                          "digest_matches": sweep.ctx.test_set(d).digest_matches}
                      for d in sweep.config["difficulties"]},
        "max_patches": sweep.ctx.max_patches,
        "toolbox": {"name": sweep.config["toolbox"], "fingerprint": sweep.ctx.toolbox.fingerprint(),
                    "version": sweep.ctx.toolbox.version, "metadata": sweep.ctx.toolbox.metadata},
        "training_source": sweep.ctx.source,
        "provenance": provenance(),
    }
    report = {
        "benchmark": "leaderboard", **header, "config": sweep.config,
        "entries": [{"name": e.name, "kind": e.kind, "seeds": e.seeds, "spec": e.public_spec,
                     "hyperparameters": {str(seed): e.hyperparameters(sweep.ctx, seed) for seed in e.seeds}}
                    for e in sweep.entries],
        "notes": sweep.notes, "untrained": sorted(sweep.untrained), "unevaluated": sorted(sweep.unevaluated),
        "rows": rows, "comparison": comparison, "sweep": counts,
    }
    write_json_atomic(folder / "leaderboard.json", report)
    write_text_atomic(folder / "leaderboard.csv", _csv(ROW_COLUMNS, [row_record(row) for row in rows]))
    write_text_atomic(folder / "runs.csv", _csv(RUN_COLUMNS, run_records(results)))
    write_text_atomic(folder / "comparison.csv", _csv(COMPARISON_COLUMNS, [comparison_record(r) for r in comparison]))
    plot_psnr(rows, sweep.config["difficulties"], sweep.config["stats"]["confidence"], folder / "psnr.png")
    plot_tool_usage(rows, sweep.config["difficulties"], folder / "tool_usage.png")
    plot_gallery(sweep, results, folder / "gallery.png")
    write_text_atomic(sweep.out / "leaderboard.md", markdown(sweep, rows, comparison, header))
    return report


def build_context(config: dict[str, Any]) -> Context:
    """The toolbox, device, training source and folders that every entry of a validated config shares."""
    device = resolve_device(config["device"])
    toolbox = load_toolbox(None if config["toolbox"] == "pretrained" else config["toolbox"]).to(device)
    return Context(toolbox, device, resolve_training_source(config["source"]), Path(config["runs"]),
                   config["max_patches"])


def run_leaderboard(config: dict[str, Any], progress: bool = True, dry_run: bool = False,
                    train: bool = True, jobs: int = 1, evaluate: bool = True) -> dict[str, Any]:
    """Train what is missing, evaluate what is not stored yet and write the outputs of a validated config.

    Returns the ``leaderboard.json`` contents, or with ``dry_run`` only the plan (jobs and their estimated
    seconds) without running anything. With ``train`` False, seeds not trained yet are left out (and named in
    the notes) instead of trained; with ``evaluate`` False nothing runs at all (no training either): the
    outputs aggregate the results stored with today's fingerprints and the notes name what is left out.
    ``jobs`` > 1 trains that many models at once, each in its own process with
    an equal share of torch's CPU threads; evaluations then run once every training has finished.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    official_dir, note = official_folder(config["official"])
    sweep = Sweep(config, Path(config["out"]), build_context(config), note, official_dir, train_missing=train,
                  evaluate_missing=evaluate, jobs=jobs)
    if dry_run:
        planned, skipped = sweep.plan()
        return {"jobs": [{"label": job.label, "estimated_seconds": job.cost} for job in planned],
                "skipped": skipped, "estimated_seconds": sum(job.cost for job in planned)}
    counts = sweep.run(progress)
    return write_outputs(sweep, counts)


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
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--jobs", type=int, default=1, help="models trained at once, each in its own process "
                        "with an equal share of the threads (default: %(default)s)")
    parser.add_argument("--dry-run", action="store_true", help="print the jobs still to run and their estimated time")
    parser.add_argument("--no-train", action="store_true", help="train nothing: leave out the seeds not trained yet "
                        "(named in the notes)")
    parser.add_argument("--no-evaluate", action="store_true", help="run nothing (implies --no-train): publish the "
                        "results stored and still valid, naming the ones left out")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; a bad config or argument exits with status 2 and a message naming the problem."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        cli = {"out": args.out, "runs": args.runs, "max_patches": args.max_patches, "device": args.device}
        config = validate_config({**config, **{k: v for k, v in cli.items() if v is not None}},
                                 f"{args.config} with the command line")
        resolve_device(config["device"])
    except (ConfigError, FileNotFoundError, RuntimeError) as error:
        parser.error(str(error))
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    if args.threads:
        torch.set_num_threads(args.threads)
    retain_freed_memory()
    result = run_leaderboard(config, progress=not args.no_progress, dry_run=args.dry_run, train=not args.no_train,
                             jobs=args.jobs, evaluate=not args.no_evaluate)
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


if __name__ == "__main__":
    raise SystemExit(main())

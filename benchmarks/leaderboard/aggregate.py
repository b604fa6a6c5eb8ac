"""The leaderboard's numbers from the stored results: one row per entry and difficulty, and the paper's comparison.

Per row: PSNR, SSIM and the gain over the input as the mean with its stratified-bootstrap confidence interval
over training seeds and the interquartile mean (:mod:`benchmarks.stats`; tasks are test patches, runs are seeds),
the share of the exhaustive oracle's gain, tools per patch, parameters, multiply-adds per patch, and the measured
wall time per patch (the only number that differs between two runs of the same sweep).

The paper's comparison (:func:`paper_comparison`): every toolchain agent against every single network per
difficulty (the kinds' ``comparison_side``), by the difference of mean PSNR and rliable's probability of
improvement (intervals from a bootstrap over the test patches, paired, and the training seeds) and by
multiply-adds per patch.

For the plots: every entry's performance profile per difficulty (:func:`performance_profiles`, rliable's score
distribution of the gains over test patches and seeds) and every learned entry's training curve
(:func:`training_curves`, the mean gain over seeds against training steps).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.leaderboard.kinds import LearnedEntry
from benchmarks.leaderboard.kinds.baseline import ORACLE, BaselineEntry
from benchmarks.leaderboard.sweep import Sweep
from benchmarks.stats import compare, interval_estimates, performance_profile, run_means, summarize

PROFILE_THRESHOLDS = 121  # thresholds of a performance profile, evenly over PROFILE_RANGE
# The quantiles of every entry's gains pooled that the thresholds span: the random baseline's long tail of losses
# (down to -27 dB) and the few largest gains would leave the entries' differences a sliver of the plot.
PROFILE_RANGE = (0.05, 0.99)
CURVE_POINTS = 200  # at most, per training curve

Results = dict[tuple[str, str], list[dict[str, Any]]]  # per (entry, difficulty): its stored results, by seed


def load_results(sweep: Sweep) -> Results:
    """The published results of every entry and difficulty, ordered by seed."""
    return {(entry.name, difficulty): [sweep.store.load(entry, difficulty, seed) for seed in entry.seeds
                                       if sweep.published(entry.name, difficulty, seed)]
            for entry in sweep.entries for difficulty in sweep.config["difficulties"]}


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
        "macs_per_patch": _mean_macs(runs),
        "agent_macs_per_decision": runs[0]["decision_macs"],
    }


def build_rows(sweep: Sweep, results: Results) -> list[dict[str, Any]]:
    """One row per entry and difficulty: aggregates, share of the exhaustive oracle's gain with the same toolbox
    (the sweep's for entries that run none), timing."""
    aggregates = {key: aggregate(runs, sweep.config["stats"]) for key, runs in results.items() if runs}
    oracles = [e for e in sweep.entries if e.kind == BaselineEntry.kind and e.base_name == ORACLE]
    rows = []
    for difficulty in sweep.config["difficulties"]:
        oracle_gains = {sweep.store.toolbox_fingerprint(e): aggregates[e.name, difficulty]["psnr_gain"]["mean"]
                        for e in oracles if (e.name, difficulty) in aggregates}
        for entry in sweep.entries:
            runs = results[entry.name, difficulty]
            if not runs:  # no seed trained or evaluated yet (--no-train, --no-evaluate)
                continue
            metrics = aggregates[entry.name, difficulty]
            gain = metrics["psnr_gain"]["mean"]
            toolbox = sweep.store.toolbox_fingerprint(entry) or sweep.ctx.toolbox.fingerprint()
            oracle_gain = oracle_gains.get(toolbox)
            metrics["oracle_gain_share"] = gain / oracle_gain if oracle_gain else None
            usage = [run["report"]["tool_usage"]["per_step"] for run in runs] if metrics["chain_length"] is not None \
                else None
            rows.append({
                "entry": entry.name, "kind": entry.kind, "difficulty": difficulty, "toolbox": entry.toolbox_name(
                    sweep.ctx), "seeds": [run["seed"] for run in runs],
                "patches": runs[0]["report"]["patches"], "metrics": metrics,
                "tool_usage_per_step": None if usage is None else np.sum(usage, axis=0).tolist(),
                "timing": {"wall_seconds_per_patch": float(np.mean(
                    [run["report"]["metrics"]["wall_seconds_per_patch"] for run in runs])), "deterministic": False},
            })
    return rows


def _mean_macs(runs: list[dict[str, Any]]) -> float:
    return float(np.mean([run["macs_per_patch"] for run in runs]))


def _psnr_matrix(runs: list[dict[str, Any]]) -> np.ndarray:
    return np.array([run["report"]["per_patch"]["psnr"] for run in runs])


def _verdict(low: float, high: float) -> str:
    if low > 0.0:
        return "toolchain ahead"
    return "network ahead" if high < 0.0 else "no clear difference"


def paper_comparison(sweep: Sweep, results: Results) -> list[dict[str, Any]]:
    """The paper's claim put to the test: every toolchain agent against every single network on each
    difficulty, by PSNR (difference of means and probability of improvement, with intervals from a bootstrap
    over test patches, paired, and training seeds) and by multiply-adds per patch."""
    options = {k: sweep.config["stats"][k] for k in ("reps", "confidence", "seed")}
    toolchains = [e for e in sweep.entries if e.comparison_side == "toolchain"]
    networks = [e for e in sweep.entries if e.comparison_side == "network"]
    records = []
    for difficulty in sweep.config["difficulties"]:
        for chain, network in ((c, n) for c in toolchains for n in networks):
            chain_runs, network_runs = results[chain.name, difficulty], results[network.name, difficulty]
            if not chain_runs or not network_runs:
                continue
            chain_psnr, network_psnr = _psnr_matrix(chain_runs), _psnr_matrix(network_runs)
            comparison = compare(chain_psnr, network_psnr, task_bootstrap=True, **options)
            chain_macs, network_macs = _mean_macs(chain_runs), _mean_macs(network_runs)
            records.append({
                "difficulty": difficulty, "toolchain": chain.name, "network": network.name,
                "toolchain_psnr": float(chain_psnr.mean()), "network_psnr": float(network_psnr.mean()), **comparison,
                "toolchain_parameters": chain_runs[0]["parameters"],
                "network_parameters": network_runs[0]["parameters"],
                "toolchain_macs_per_patch": chain_macs, "network_macs_per_patch": network_macs,
                "macs_share": chain_macs / network_macs, "verdict": _verdict(*comparison["difference_ci"]),
            })
    return records


def _gains(runs: list[dict[str, Any]]) -> np.ndarray:
    per_patch = [run["report"]["per_patch"] for run in runs]
    return np.array([p["psnr"] for p in per_patch]) - np.array([p["psnr_input"] for p in per_patch])


def performance_profiles(sweep: Sweep, results: Results) -> dict[str, list[dict[str, Any]]]:
    """Per difficulty, every entry's performance profile of its PSNR gains (seeds x test patches; thresholds
    spanning PROFILE_RANGE of every entry's gains on that difficulty pooled) with its bootstrap interval over
    seeds: a list of ``{"entry", "kind", **performance_profile}``."""
    options = {k: sweep.config["stats"][k] for k in ("reps", "confidence", "seed", "task_bootstrap")}
    profiles = {}
    for difficulty in sweep.config["difficulties"]:
        gains = [(entry, _gains(results[entry.name, difficulty])) for entry in sweep.entries
                 if results[entry.name, difficulty]]
        if not gains:
            continue
        pooled = np.concatenate([g.ravel() for _, g in gains])
        thresholds = np.linspace(*np.quantile(pooled, PROFILE_RANGE), PROFILE_THRESHOLDS)
        profiles[difficulty] = [{"entry": entry.name, "kind": entry.kind,
                                 **performance_profile(g, thresholds, **options)} for entry, g in gains]
    return profiles


def _common_steps(curves: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """The steps logged by any seed inside the range every seed covers, at most CURVE_POINTS of them, evenly
    picked."""
    low, high = max(steps[0] for steps, _ in curves), min(steps[-1] for steps, _ in curves)
    steps = np.unique(np.concatenate([s[(s >= low) & (s <= high)] for s, _ in curves]))
    return steps[np.unique(np.linspace(0, len(steps) - 1, min(len(steps), CURVE_POINTS)).round().astype(int))]


def training_curves(sweep: Sweep) -> list[dict[str, Any]]:
    """Every learned entry's training curve from its seeds' logs: the gain interpolated at common steps, its mean
    over seeds and the bootstrap interval of that mean (over seeds, at each step); one record per entry with a
    log, ``{"entry", "kind", "label", "seeds", "steps", "mean", "ci"}``."""
    stats = sweep.config["stats"]
    records = []
    for entry in sweep.entries:
        if not isinstance(entry, LearnedEntry):
            continue
        logged = {seed: entry.training_curve(sweep.ctx, seed) for seed in entry.seeds
                  if (entry.name, seed) not in sweep.untrained}
        logged = {seed: curve for seed, curve in logged.items() if curve is not None and len(curve[0])}
        if not logged:
            continue
        steps = _common_steps(list(logged.values()))
        matrix = np.array([np.interp(steps, s, g) for s, g in logged.values()])
        mean, low, high = interval_estimates(matrix, run_means, stats["reps"], stats["confidence"], stats["seed"])
        records.append({"entry": entry.name, "kind": entry.kind, "label": entry.curve_label, "seeds": list(logged),
                        "steps": steps.tolist(), "mean": mean.tolist(), "ci": [low.tolist(), high.tolist()]})
    return records

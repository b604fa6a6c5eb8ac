"""The leaderboard's numbers from the stored results: one row per entry and difficulty, and the paper's comparison.

Per row: PSNR, SSIM and the gain over the input as the mean with its stratified-bootstrap confidence interval
over training seeds and the interquartile mean (:mod:`benchmarks.stats`; tasks are test patches, runs are seeds),
the share of the exhaustive oracle's gain, tools per patch, parameters, multiply-adds per patch, and the measured
wall time per patch (the only number that differs between two runs of the same sweep).

The paper's comparison (:func:`paper_comparison`): every toolchain agent against every single network per
difficulty (the kinds' ``comparison_side``), by the difference of mean PSNR and rliable's probability of
improvement (intervals from a bootstrap over the test patches, paired, and the training seeds) and by
multiply-adds per patch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.leaderboard.kinds.baseline import ORACLE, BaselineEntry
from benchmarks.leaderboard.sweep import Sweep
from benchmarks.stats import compare, summarize

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

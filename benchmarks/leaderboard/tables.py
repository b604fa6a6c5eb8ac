"""The leaderboard's tables: ``leaderboard.csv`` (one line per row), ``runs.csv`` (one per stored result),
``comparison.csv`` (the paper's comparison) and ``leaderboard.md`` (setup, one table per difficulty, the paper's
comparison, notes on what is left out, the plots). Texts only; :mod:`benchmarks.leaderboard.publish` writes them.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmarks.leaderboard.aggregate import Results
from benchmarks.leaderboard.sweep import Sweep

RUN_COLUMNS = ("entry", "kind", "difficulty", "seed", "patches", "psnr", "ssim", "psnr_input", "psnr_gain",
               "chain_length", "parameters", "macs_per_patch", "wall_seconds_per_patch")
ROW_COLUMNS = ("entry", "kind", "toolbox", "difficulty", "runs", "patches", "psnr_mean", "psnr_ci_low", "psnr_ci_high",
               "psnr_iqm", "ssim_mean", "ssim_ci_low", "ssim_ci_high", "psnr_gain_mean", "oracle_gain_share",
               "chain_length", "parameters", "macs_per_patch", "agent_macs_per_decision", "wall_seconds_per_patch")
COMPARISON_COLUMNS = ("difficulty", "toolchain", "network", "toolchain_psnr", "network_psnr", "difference",
                      "difference_ci_low", "difference_ci_high", "probability_of_improvement",
                      "probability_of_improvement_ci_low", "probability_of_improvement_ci_high",
                      "toolchain_parameters", "network_parameters", "toolchain_macs_per_patch",
                      "network_macs_per_patch", "macs_share", "verdict")
PLOTS = (("PSNR per difficulty", "psnr.png"), ("Tool usage per step", "tool_usage.png"),
         ("Restored patches and their toolchains", "gallery.png"),
         ("Performance profiles over the test patches", "performance_profiles.png"),
         ("Training curves of the learned entries", "training_curves.png"))


def csv_text(columns: Sequence[str], records: list[dict[str, Any]]) -> str:
    """``records`` as CSV with the header ``columns`` (None as an empty field)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in record.items()} for record in records)
    return buffer.getvalue()


def row_record(row: dict[str, Any]) -> dict[str, Any]:
    """A leaderboard row flattened for ``leaderboard.csv``."""
    m = row["metrics"]
    return {
        "entry": row["entry"], "kind": row["kind"], "toolbox": row["toolbox"], "difficulty": row["difficulty"],
        "runs": len(row["seeds"]),
        "patches": row["patches"], "psnr_mean": m["psnr"]["mean"], "psnr_ci_low": m["psnr"]["mean_ci"][0],
        "psnr_ci_high": m["psnr"]["mean_ci"][1], "psnr_iqm": m["psnr"]["iqm"], "ssim_mean": m["ssim"]["mean"],
        "ssim_ci_low": m["ssim"]["mean_ci"][0], "ssim_ci_high": m["ssim"]["mean_ci"][1],
        "psnr_gain_mean": m["psnr_gain"]["mean"], "oracle_gain_share": m["oracle_gain_share"],
        "chain_length": m["chain_length"], "parameters": m["parameters"], "macs_per_patch": m["macs_per_patch"],
        "agent_macs_per_decision": m["agent_macs_per_decision"],
        "wall_seconds_per_patch": row["timing"]["wall_seconds_per_patch"],
    }


def run_records(results: Results) -> list[dict[str, Any]]:
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


def comparison_record(record: dict[str, Any]) -> dict[str, Any]:
    """A record of the paper's comparison flattened for ``comparison.csv``."""
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


def markdown(sweep: Sweep, rows: list[dict[str, Any]], comparison: list[dict[str, Any]], header: dict[str, Any]
             ) -> str:
    """The leaderboard as Markdown: setup, one table per difficulty, the paper's comparison, notes and plots."""
    stats = sweep.config["stats"]
    lines = ["# Leaderboard", "", *_setup(sweep, header)]
    for difficulty in sweep.config["difficulties"]:
        lines += _difficulty_table(difficulty, [r for r in rows if r["difficulty"] == difficulty], stats["confidence"])
    lines += ["\\* wall time per patch on this run's machine, including a policy's own work (an oracle's search; "
              "the exhaustive oracle's search is cached on disk after its first run).", ""]
    lines += comparison_markdown(comparison, stats["confidence"])
    notes = _notes(sweep)
    if notes:
        lines += ["Notes:", "", *[f"- {note}" for note in notes], ""]
    for title, file in PLOTS:
        lines += [f"![{title}](leaderboard/{file})", ""]
    return "\n".join(lines)


def _setup(sweep: Sweep, header: dict[str, Any]) -> list[str]:
    """The paragraphs on the test sets, toolbox, machine and statistics."""
    stats = sweep.config["stats"]
    lines = []
    if sweep.ctx.max_patches is not None:
        lines += [f"**LIMITED RUN: only the first {sweep.ctx.max_patches} patches of each test set. Not comparable "
                  "with full results.**", ""]
    test_sets = ", ".join(f"{d} {t['patches']} patches ({t['digest'][:12]}…, "
                          f"{'matches the recorded digest' if t['digest_matches'] else 'NO recorded match'})"
                          for d, t in header["test_sets"].items())
    toolbox, machine = header["toolbox"], header["provenance"]
    tracks = "".join(f" Track `{name}`: toolbox {track['name']} ({track['fingerprint'][:12]}…), its entries named "
                     f"`<entry>-{name}`." for name, track in header["tracks"].items())
    hardware = machine["cuda_device"] or f"{machine['cpu_model']}, {machine['cpu_count']} CPUs"
    return [
        *lines,
        f"Frozen test sets: {test_sets}. Toolbox: {toolbox['metadata'].get('name', toolbox['name'])} "
        f"({toolbox['fingerprint'][:12]}…).{tracks} Learned entries trained on `{header['training_source']}`. "
        f"Aggregated at commit {machine['git_commit']}, torch {machine['torch']}, device {sweep.ctx.device} "
        f"({hardware}); every per-run file in `leaderboard/runs/` records the provenance of its own evaluation.",
        "",
        f"PSNR and SSIM: mean over runs (seeds) and test patches with its {round(100 * stats['confidence'])}% "
        f"stratified-bootstrap confidence interval over runs ({stats['reps']} replicates, seed {stats['seed']}; a "
        "deterministic entry has one run, so its interval is a point), and the interquartile mean (IQM). Gain: over "
        "the input. Oracle share: the entry's mean gain over the exhaustive oracle's with the same toolbox (single "
        "networks: the sweep's). GMACs: "
        "multiply-adds per patch actually executed (tools of the chain + the agent's network per decision; single "
        "networks: one pass; an oracle's search is not counted). ms/patch: measured wall time, **not "
        "deterministic**.",
        "",
    ]


def _difficulty_table(difficulty: str, rows: list[dict[str, Any]], confidence: float) -> list[str]:
    """The section of one difficulty: a line per row."""
    level = round(100 * confidence)
    lines = [f"## {difficulty}", "",
             f"| entry | toolbox | runs | PSNR (dB) [{level}% CI] | PSNR IQM | SSIM [{level}% CI] | gain (dB) "
             "| oracle share | tools/patch | parameters | GMACs/patch | ms/patch* |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        m = row["metrics"]
        psnr, ssim = m["psnr"], m["ssim"]
        share = "n/a" if m["oracle_gain_share"] is None else f"{100 * m['oracle_gain_share']:.0f}%"
        length = "n/a" if m["chain_length"] is None else f"{m['chain_length']:.2f}"
        lines.append(
            f"| {row['entry']} | {row['toolbox'] or '-'} | {len(row['seeds'])} | {psnr['mean']:.3f} "
            f"[{psnr['mean_ci'][0]:.3f}, {psnr['mean_ci'][1]:.3f}] | {psnr['iqm']:.3f} | {ssim['mean']:.4f} "
            f"[{ssim['mean_ci'][0]:.4f}, {ssim['mean_ci'][1]:.4f}] | {m['psnr_gain']['mean']:+.3f} | {share} | "
            f"{length} | {m['parameters']:,} | {m['macs_per_patch'] / 1e9:.3f} | "
            f"{1e3 * row['timing']['wall_seconds_per_patch']:.2f} |")
    return [*lines, ""]


def _notes(sweep: Sweep) -> list[str]:
    """What the outputs leave out or cannot say: the sweep's notes, untrained and unevaluated seeds, few seeds."""
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
    trained = {e.name: [s for s in e.seeds if (e.name, s) not in sweep.untrained] for e in sweep.entries}
    few = [e.name for e in sweep.entries if e.learned and 0 < len(trained[e.name]) < 3]
    if few:
        notes.append(f"fewer than 3 training seeds for {', '.join(few)}: their intervals are not meaningful")
    return notes

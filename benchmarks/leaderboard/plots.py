"""The leaderboard's plots, written atomically as PNG: PSNR per difficulty with its intervals
(:func:`plot_psnr`), the share of patches applying each tool at each step (:func:`plot_tool_usage`), a
gallery of restored test patches with their toolchains (:func:`plot_gallery`), rliable's performance profiles
of the gains over test patches (:func:`plot_performance_profiles`) and the learned entries' training curves
(:func:`plot_training_curves`). Matplotlib runs headless (Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.leaderboard.aggregate import Results
from benchmarks.leaderboard.kinds import KINDS
from benchmarks.leaderboard.store import gallery_indices
from benchmarks.leaderboard.sweep import Sweep
from restore_gym import metrics
from restore_gym.engine import MAX_TOOLS
from restore_gym.records import write_atomic
from restore_gym.toolbox import TOOL_SPECS


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_figure(fig: Any, path: Path) -> None:
    write_atomic(path, lambda handle: fig.savefig(handle, format="png", dpi=110, bbox_inches="tight"))
    _pyplot().close(fig)


def entry_colours(rows: list[dict[str, Any]]) -> dict[str, str]:
    """The colour of every entry in every plot, by its first appearance in ``rows`` (one of ten colours)."""
    return {entry: f"C{k % 10}" for k, entry in enumerate(dict.fromkeys(row["entry"] for row in rows))}


def plot_psnr(rows: list[dict[str, Any]], difficulties: list[str], confidence: float, path: Path) -> None:
    """PSNR per difficulty, one marker per entry with its ``confidence`` interval."""
    plt = _pyplot()
    colours = entry_colours(rows)
    entries = list(colours)
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
        # toolchain agents square, networks triangles: entries sharing one of the ten colours stay apart
        kind = next(row["kind"] for row in rows if row["entry"] == entry)
        ax.errorbar(x, means, yerr=errors, fmt=KINDS[kind].marker, color=colours[entry], capsize=3, label=entry)
    ax.set_xticks(np.arange(len(difficulties)), difficulties)
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(f"PSNR per difficulty (mean, {round(100 * confidence)}% CI over seeds)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    _save_figure(fig, path)


def plot_performance_profiles(profiles: dict[str, list[dict[str, Any]]], colours: dict[str, str], confidence: float,
                              path: Path) -> None:
    """One panel per difficulty: every entry's share of (seed, test patch) gains above each threshold, with its
    ``confidence`` interval over seeds as a band (each kind's ``line``: networks dashed, baselines dotted)."""
    plt = _pyplot()
    difficulties = list(profiles) or ["(no results)"]
    fig, axes = plt.subplots(1, len(difficulties), squeeze=False, figsize=(4.2 * len(difficulties), 4.2))
    for ax, difficulty in zip(axes[0], difficulties):
        for profile in profiles.get(difficulty, []):
            colour = colours.get(profile["entry"], "C0")
            ax.plot(profile["thresholds"], profile["profile"], KINDS[profile["kind"]].line, color=colour,
                    linewidth=1.3, label=profile["entry"])
            ax.fill_between(profile["thresholds"], *profile["profile_ci"], color=colour, alpha=0.2, linewidth=0)
        ax.set_title(difficulty, fontsize=10)
        ax.set_xlabel("PSNR gain over the input, tau (dB)")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("share of (seed, test patch) gains > tau")
    axes[0, -1].legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.suptitle(f"Performance profiles over the test patches (rliable's score distributions, "
                 f"{round(100 * confidence)}% CI over seeds)", fontsize=10)
    _save_figure(fig, path)


def plot_training_curves(curves: list[dict[str, Any]], colours: dict[str, str], confidence: float,
                         path: Path) -> None:
    """One panel per learned entry: its gain against training steps, the mean over seeds with its ``confidence``
    interval as a band (each kind's log says what its steps and gain are: the panel's labels)."""
    plt = _pyplot()
    columns = min(3, max(len(curves), 1))
    rows = max(1, -(-len(curves) // columns))
    fig, axes = plt.subplots(rows, columns, squeeze=False, figsize=(4.4 * columns, 3.2 * rows))
    for ax in axes.flat[len(curves):]:
        ax.axis("off")
    for ax, curve in zip(axes.flat, curves):
        colour = colours.get(curve["entry"], "C0")
        ax.plot(curve["steps"], curve["mean"], color=colour, linewidth=1.3)
        ax.fill_between(curve["steps"], *curve["ci"], color=colour, alpha=0.25, linewidth=0)
        unit, _, gain = curve["label"].partition("; ")
        seeds = len(curve["seeds"])
        ax.set_title(f"{curve['entry']} ({seeds} seed{'s' * (seeds > 1)})\n{gain}", fontsize=8)
        ax.set_xlabel(unit, fontsize=8)
        ax.set_ylabel("PSNR gain (dB)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle(f"Training curves: mean over seeds, {round(100 * confidence)}% CI", fontsize=10)
    fig.tight_layout()
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


def plot_gallery(sweep: Sweep, results: Results, path: Path) -> None:
    """Gallery patches of the gallery difficulty: input, each entry's restoration (first seed) with its chain
    (1-based tools) and PSNR, and the clean patch."""
    plt = _pyplot()
    difficulty = sweep.config["gallery"]["difficulty"]
    indices = gallery_indices(sweep.config["gallery"]["patches"], sweep.ctx.patches(difficulty))
    test_set = sweep.ctx.test_set(difficulty)
    # Entries whose first seed is published on this difficulty (with --no-train or --no-evaluate some are not).
    shown = [entry for entry in sweep.entries if sweep.published(entry.name, difficulty, entry.seeds[0])]
    columns = ["input", *(entry.name for entry in shown), "clean"]
    fig, axes = plt.subplots(len(indices), len(columns), squeeze=False,
                             figsize=(1.5 * len(columns), 1.75 * len(indices) + 0.5))
    first = {entry.name: results[entry.name, difficulty][0] for entry in shown}
    images = {entry.name: sweep.store.gallery_images(entry, difficulty, entry.seeds[0]) for entry in shown}
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



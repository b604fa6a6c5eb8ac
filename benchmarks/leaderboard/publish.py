"""The outputs of a sweep, rebuilt from its stored results and written atomically: ``OUT/leaderboard.md`` and, in
``OUT/leaderboard/``, ``leaderboard.json`` (the config, the entries, rows, comparison and provenance),
``leaderboard.csv``, ``runs.csv``, ``comparison.csv`` and the plots ``psnr.png``, ``tool_usage.png``,
``gallery.png``, ``performance_profiles.png`` and ``training_curves.png``."""

from __future__ import annotations

from typing import Any

from benchmarks.leaderboard.aggregate import (
    build_rows,
    load_results,
    paper_comparison,
    performance_profiles,
    training_curves,
)
from benchmarks.leaderboard.plots import (
    entry_colours,
    plot_gallery,
    plot_performance_profiles,
    plot_psnr,
    plot_tool_usage,
    plot_training_curves,
)
from benchmarks.leaderboard.sweep import Sweep
from benchmarks.leaderboard.tables import (
    COMPARISON_COLUMNS,
    ROW_COLUMNS,
    RUN_COLUMNS,
    comparison_record,
    csv_text,
    markdown,
    row_record,
    run_records,
)
from restore_gym.records import provenance, write_json_atomic, write_text_atomic


def _header(sweep: Sweep) -> dict[str, Any]:
    """What the numbers were computed on: test sets, toolbox, training images, machine."""
    ctx = sweep.ctx
    return {
        "test_sets": {d: {"patches": ctx.patches(d), "full_patches": len(ctx.test_set(d)),
                          "digest": ctx.test_set(d).digest, "digest_matches": ctx.test_set(d).digest_matches}
                      for d in sweep.config["difficulties"]},
        "max_patches": ctx.max_patches,
        "toolbox": {"name": sweep.config["toolbox"], "fingerprint": ctx.toolbox.fingerprint(),
                    "version": ctx.toolbox.version, "metadata": ctx.toolbox.metadata},
        "tracks": {track: {"name": ctx.toolbox_names[track], "fingerprint": toolbox.fingerprint(),
                           "version": toolbox.version, "metadata": toolbox.metadata}
                   for track, toolbox in ctx.tracks.items()},
        "training_source": ctx.source,
        "provenance": provenance(),
    }


def write_outputs(sweep: Sweep, counts: dict[str, int]) -> dict[str, Any]:
    """Aggregate the result files into JSON, CSV, Markdown and PNG outputs; returns the JSON (``counts``: the jobs
    run and results skipped)."""
    results = load_results(sweep)
    rows = build_rows(sweep, results)
    comparison = paper_comparison(sweep, results)
    folder = sweep.out / "leaderboard"
    header = _header(sweep)
    report = {
        "benchmark": "leaderboard", **header, "config": sweep.config,
        "entries": [{"name": e.name, "kind": e.kind, "seeds": e.seeds, "spec": e.public_spec,
                     "hyperparameters": {str(seed): e.hyperparameters(sweep.ctx, seed) for seed in e.seeds}}
                    for e in sweep.entries],
        "notes": sweep.notes, "untrained": sorted(sweep.untrained), "unevaluated": sorted(sweep.unevaluated),
        "rows": rows, "comparison": comparison, "sweep": counts,
    }
    write_json_atomic(folder / "leaderboard.json", report)
    write_text_atomic(folder / "leaderboard.csv", csv_text(ROW_COLUMNS, [row_record(row) for row in rows]))
    write_text_atomic(folder / "runs.csv", csv_text(RUN_COLUMNS, run_records(results)))
    write_text_atomic(folder / "comparison.csv",
                      csv_text(COMPARISON_COLUMNS, [comparison_record(r) for r in comparison]))
    confidence, colours = sweep.config["stats"]["confidence"], entry_colours(rows)
    plot_psnr(rows, sweep.config["difficulties"], confidence, folder / "psnr.png")
    plot_tool_usage(rows, sweep.config["difficulties"], folder / "tool_usage.png")
    plot_gallery(sweep, results, folder / "gallery.png")
    plot_performance_profiles(performance_profiles(sweep, results), colours, confidence,
                              folder / "performance_profiles.png")
    plot_training_curves(training_curves(sweep), colours, confidence, folder / "training_curves.png")
    write_text_atomic(sweep.out / "leaderboard.md", markdown(sweep, rows, comparison, header))
    return report

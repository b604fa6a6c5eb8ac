import json

import pytest

from benchmarks import throughput


def test_the_ceiling_counts_only_tools_and_new_patches():
    assert throughput.ceiling(1000.0, 0.0, 1e-3) == 1.0
    assert throughput.ceiling(1000.0, 0.5, 1e-3) == pytest.approx(1 / 1.5)


def test_the_benchmark_writes_rates_ratios_parts_and_precisions(tmp_path):
    assert throughput.main(["--seconds", "0.2", "--sizes", "2", "--pool-size", "8", "--no-psnr",
                            "--out", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "throughput.json").read_text())["bfloat16_psnr"] == {}
    assert throughput.main(["--psnr-only", "--psnr-patches", "2", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "throughput.json").read_text())
    assert result["startup_s"] > 0 and 0 < result["fresh_patch_s"] < 1 and 0 < result["pool_patch_s"] < 1
    rows = {(row["patches"], row["precision"]): row for row in result["vector"]}
    assert set(rows) == {(p, q) for p in ("fresh", "pool") for q in ("float32", "bfloat16")}
    for row in rows.values():
        assert row["num_envs"] == 2 and row["tools_per_s"] > 0 and row["raw_tools_per_s"] > 0
        assert row["episodes_per_tool"] >= 0 and 0 < row["ceiling"] <= 1
    for name in ("before", "after"):
        parts = result["fresh_patch_parts"][name]
        assert set(parts) == {*throughput.PARTS, "total"} and all(v > 0 for v in parts.values())
        assert parts["total"] == pytest.approx(sum(parts[p] for p in throughput.PARTS))
    assert result["fresh_patch_s"] == result["fresh_patch_parts"]["after"]["total"]
    assert {s["patches"] for s in result["speedups"]} == {"fresh", "pool"}
    psnr = result["bfloat16_psnr"]
    assert set(psnr) == {"mild", "moderate", "severe"} and all(r["patches"] == 2 for r in psnr.values())
    assert result["floors"] == []  # only a CPU run at N = 64 judges them
    assert result["library_default"] == {"prefetch": {"cpu": False, "cuda": True}, "autoreset": "next_step"}
    assert {(row["prefetch"], row["autoreset"]) for row in rows.values()} == {("default", "next_step")}
    text = (tmp_path / "throughput.md").read_text()
    assert "ceiling (tools and new patches only)" in text and "| blur |" in text and "bfloat16" in text


def test_floors_judge_the_cpu_rows_at_64_in_float32_and_mark_the_library_default():
    cpu64 = {"device": "cpu", "num_envs": 64, "precision": "float32"}
    rows = [{**cpu64, "patches": "pool", "prefetch": "default", "autoreset": "next_step", "tool_ratio": 0.96},
            {**cpu64, "patches": "pool", "prefetch": "on", "autoreset": "same_step", "tool_ratio": 0.97},
            {**cpu64, "patches": "fresh", "prefetch": "off", "autoreset": "next_step", "tool_ratio": 0.80},
            {**cpu64, "patches": "fresh", "prefetch": "on", "autoreset": "next_step", "tool_ratio": 0.86},
            {**cpu64, "precision": "bfloat16", "patches": "fresh", "prefetch": "default", "autoreset": "next_step",
             "tool_ratio": 0.99},
            {**cpu64, "num_envs": 16, "patches": "fresh", "prefetch": "default", "autoreset": "next_step",
             "tool_ratio": 0.99}]
    judged = [(f["patches"], f["prefetch"], f["autoreset"], f["library_default"], f["ratio"], f["floor"], f["met"])
              for f in throughput.floors(rows)]
    assert judged == [("pool", "default", "next_step", True, 0.96, 0.95, True),
                      ("pool", "on", "same_step", False, 0.97, 0.95, True),
                      ("fresh", "off", "next_step", True, 0.80, 0.85, False),  # no prefetching on the CPU by default
                      ("fresh", "on", "next_step", False, 0.86, 0.85, True)]


def test_each_prefetch_and_autoreset_combination_gets_its_row(tmp_path):
    assert throughput.main(["--seconds", "0.1", "--sizes", "2", "--patches", "fresh", "--precisions", "float32",
                            "--prefetch", "on,off", "--autoreset", "next_step,same_step", "--no-psnr",
                            "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "throughput.json").read_text())["vector"]
    assert [(r["prefetch"], r["autoreset"]) for r in rows] == [("on", "next_step"), ("on", "same_step"),
                                                              ("off", "next_step"), ("off", "same_step")]
    assert all(r["tools_per_s"] > 0 and r["episodes_per_tool"] > 0 for r in rows)
    assert "| cpu | 2 | fresh | float32 | off | same_step |" in (tmp_path / "throughput.md").read_text()


def test_bfloat16_rows_can_take_other_sizes(tmp_path):
    assert throughput.main(["--seconds", "0.1", "--sizes", "2,3", "--bfloat16-sizes", "2", "--patches", "fresh",
                            "--no-psnr", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "throughput.json").read_text())["vector"]
    assert [(r["num_envs"], r["precision"]) for r in rows] == [(2, "float32"), (2, "bfloat16"), (3, "float32")]


def test_unknown_modes_are_refused(tmp_path):
    with pytest.raises(SystemExit, match="--patches"):
        throughput.main(["--patches", "hdf5", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="--prefetch: expected a comma-separated subset of default, on, off"):
        throughput.main(["--prefetch", "auto", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="--autoreset: expected a comma-separated subset of next_step, same_step"):
        throughput.main(["--autoreset", "disabled", "--out", str(tmp_path)])

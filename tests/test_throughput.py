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
    assert result["floors"] == {}  # only a CPU run at N = 64 judges them
    text = (tmp_path / "throughput.md").read_text()
    assert "ceiling (tools and new patches only)" in text and "| blur |" in text and "bfloat16" in text


def test_floors_judge_the_cpu_rows_at_64_in_float32():
    rows = [{"device": "cpu", "num_envs": 64, "precision": "float32", "patches": "pool", "tool_ratio": 0.96},
            {"device": "cpu", "num_envs": 64, "precision": "float32", "patches": "fresh", "tool_ratio": 0.80},
            {"device": "cpu", "num_envs": 64, "precision": "bfloat16", "patches": "fresh", "tool_ratio": 0.99},
            {"device": "cpu", "num_envs": 16, "precision": "float32", "patches": "fresh", "tool_ratio": 0.99}]
    assert throughput.floors(rows) == {"pool": {"ratio": 0.96, "floor": 0.95, "met": True},
                                       "fresh": {"ratio": 0.80, "floor": 0.85, "met": False}}


def test_bfloat16_rows_can_take_other_sizes(tmp_path):
    assert throughput.main(["--seconds", "0.1", "--sizes", "2,3", "--bfloat16-sizes", "2", "--patches", "fresh",
                            "--no-psnr", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "throughput.json").read_text())["vector"]
    assert [(r["num_envs"], r["precision"]) for r in rows] == [(2, "float32"), (2, "bfloat16"), (3, "float32")]


def test_unknown_modes_are_refused(tmp_path):
    with pytest.raises(SystemExit, match="--patches"):
        throughput.main(["--patches", "hdf5", "--out", str(tmp_path)])

import json

import pytest

from benchmarks import throughput


def test_the_ceiling_counts_only_tools_and_fresh_patches():
    assert throughput.ceiling(1000.0, 0.0, 1e-3) == 1.0
    assert throughput.ceiling(1000.0, 0.5, 1e-3) == pytest.approx(1 / 1.5)


def test_the_benchmark_writes_rates_ratios_and_ceilings(tmp_path):
    assert throughput.main(["--seconds", "0.2", "--sizes", "2", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "throughput.json").read_text())
    assert result["startup_s"] > 0 and 0 < result["fresh_patch_s"] < 1
    (row,) = result["vector"]
    assert row["num_envs"] == 2 and row["tools_per_s"] > 0 and row["raw_tools_per_s"] > 0
    assert row["episodes_per_tool"] > 0 and 0 < row["ceiling"] < 1
    assert "ceiling (tools and fresh patches only)" in (tmp_path / "throughput.md").read_text()

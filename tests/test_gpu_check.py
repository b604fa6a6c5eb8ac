"""The GPU check's dry run: its script records every part and goes on past a failed one; its Python pieces run
on the CPU (the throughput benchmark's are in test_throughput.py, the CUDA tests run with
RESTORE_GYM_TEST_DEVICE=cpu)."""

import json
import os
import subprocess
import sys
from pathlib import Path

from benchmarks import agent_speed

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"


def _run(out: Path, python: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": python}
    env.pop("OUT", None)
    return subprocess.run(["bash", str(SCRIPT), "--device", "cpu", "--quick", "--out", str(out), *args],
                          capture_output=True, text=True, env=env, timeout=300)


def _summary(out: Path) -> dict[str, str]:
    lines = (out / "summary.tsv").read_text().splitlines()
    assert lines[0].split("\t") == ["part", "status", "seconds", "limit_s"]
    return {line.split("\t")[0]: line.split("\t")[1] for line in lines[1:]}


def test_the_dry_run_records_its_parts(tmp_path):
    done = _run(tmp_path, sys.executable, "--parts", "info")
    assert done.returncode == 0, done.stdout + done.stderr
    assert _summary(tmp_path) == {"info": "ok"}
    assert json.loads((tmp_path / "info.log").read_text())["device"] == "cpu"
    assert "| info | ok |" in (tmp_path / "summary.md").read_text()


def test_a_failed_part_is_recorded_and_the_next_parts_still_run(tmp_path):
    done = _run(tmp_path, "false")
    assert done.returncode == 1
    assert _summary(tmp_path) == {part: "failed (exit 1)" for part in ("info", "tests", "throughput", "agent")}


def test_the_agent_speed_run_counts_steps_and_updates(tmp_path):
    result = agent_speed.measure("cpu", steps=16, num_envs=2, out=tmp_path)
    assert result["agent_steps"] >= 16 and result["updates"] >= 1
    assert result["steps_per_s"] > 0 and result["updates_per_s"] > 0
    assert (tmp_path / "log.csv").is_file()

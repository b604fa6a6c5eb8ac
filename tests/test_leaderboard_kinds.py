import inspect
import json
from pathlib import Path

import pytest
from conftest import REPO_ROOT

from benchmarks import leaderboard as lb
from benchmarks.leaderboard.checks import check_mapping, check_seeds
from benchmarks.leaderboard.config import GENERAL
from benchmarks.leaderboard.kinds.base import policy_outcome
from restore_gym.evaluation import make_policy


class ToyEntry(lb.LearnedEntry):
    """A learned kind defined outside the package: it trains by counting to two and restores by stopping."""

    kind = "toy"
    section = "toys"
    model_name = "toy.json"
    marker = "D"

    @classmethod
    def validate(cls, value, where):
        section = check_mapping(value, where, {"seeds": [0]})
        section["seeds"] = check_seeds(section["seeds"], f"{where}.seeds")
        return section

    @classmethod
    def entries(cls, section):
        return [cls("toy", section["seeds"], {})]

    def check_model(self, ctx, seed, path):
        return json.loads(path.read_text())["steps"] >= 2

    def schedule(self, ctx, seed):
        return 2, 0.01

    def fit(self, ctx, seed, resume, advance):
        for _ in range(2):
            advance(1)
        self.run_dir(ctx, seed).mkdir(parents=True, exist_ok=True)
        self.model_file(ctx, seed).write_text(json.dumps({"steps": 2}))

    def evaluate(self, ctx, toolbox, difficulty, seed):
        policy = make_policy("stop", toolbox, difficulty, seed, device=ctx.device)
        return policy_outcome(policy, ctx, toolbox, difficulty, seed, 0, None)


@pytest.fixture
def toy_kind():
    lb.register(ToyEntry)
    yield ToyEntry
    del lb.KINDS[ToyEntry.kind]


def test_every_registered_kind_implements_the_protocol():
    assert list(lb.KINDS) == ["baseline", "official", "lstm-dqn", "single-network", "sb3"]
    config = lb.load_config(REPO_ROOT / "benchmarks" / "leaderboard.yml")
    entries = lb.build_entries(config, official_dir=Path("/official"))
    sections = [kind.section for kind in lb.KINDS.values()]
    assert len(set(sections)) == len(sections) and not set(sections) & set(GENERAL)
    for name, kind in lb.KINDS.items():
        assert issubclass(kind, lb.Entry) and not inspect.isabstract(kind) and kind.kind == name
        assert kind.learned == issubclass(kind, lb.LearnedEntry)
        assert kind.comparison_side in (None, "toolchain", "network") and kind.marker
        if kind.learned:
            assert kind.model_name and (kind.checkpoint_name is None or kind.progress_key), name
            assert kind.log_name and all(kind.curve_columns) and "; " in kind.curve_label, name  # a training curve
        assert [e for e in entries if isinstance(e, kind)], f"the repository's config has no {name} entry"
    assert {e.comparison_side for e in entries} == {None, "toolchain", "network"}


def test_a_kind_is_registered_once():
    with pytest.raises(ValueError, match="registered already"):
        lb.register(lb.KINDS["sb3"])


def test_a_registered_kind_runs_through_the_sweep_with_no_other_edit(toy_kind, tmp_path):
    config = lb.validate_config({"difficulties": ["moderate"], "max_patches": 2, "official": False,
                                 "stats": {"reps": 10}, "gallery": {"difficulty": "moderate", "patches": 1},
                                 "toys": {"seeds": [0, 1]}, "runs": str(tmp_path / "runs"),
                                 "out": str(tmp_path / "out")}, "toy.yml")
    plan = lb.run_leaderboard(config, dry_run=True)
    assert [job["label"] for job in plan["jobs"]] == ["train toy seed 0", "evaluate toy seed 0 on moderate",
                                                       "train toy seed 1", "evaluate toy seed 1 on moderate"]
    assert plan["estimated_seconds"] == pytest.approx(2 * (2 * 0.01 + 2 * 0.02))
    report = lb.run_leaderboard(config, progress=False)
    assert report["sweep"] == {"trained": 2, "evaluated": 2, "skipped": 0}
    (row,) = report["rows"]
    assert (row["entry"], row["kind"], row["seeds"]) == ("toy", "toy", [0, 1])
    assert row["metrics"]["psnr_gain"]["mean"] == 0.0  # it stops at once
    run = json.loads((tmp_path / "out" / "leaderboard" / "runs" / "toy" / "moderate-seed1.json").read_text())
    assert run["inputs"]["spec"]["source"] == "builtin" and run["inputs"]["model"]
    assert "| toy | pretrained | 2 |" in (tmp_path / "out" / "leaderboard.md").read_text()
    assert (tmp_path / "out" / "leaderboard" / "training_curves.png").is_file()  # a kind without a log: no curve
    assert lb.run_leaderboard(config, progress=False)["sweep"] == {"trained": 0, "evaluated": 0, "skipped": 2}
    with pytest.raises(lb.ConfigError, match=r"toy.yml: toys.seeds lists a seed twice"):
        lb.validate_config({"toys": {"seeds": [0, 0]}}, "toy.yml")


def test_an_unregistered_kind_is_an_unknown_key():
    with pytest.raises(lb.ConfigError, match="unknown key.s. toys"):
        lb.validate_config({"toys": {"seeds": [0]}}, "toy.yml")

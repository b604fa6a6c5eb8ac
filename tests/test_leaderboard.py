import csv
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import OFFICIAL_DIR, REPO_ROOT

from agents import lstm_dqn, single_network
from benchmarks import leaderboard as lb
from benchmarks.leaderboard import aggregate, macs, store
from benchmarks.leaderboard import sweep as lb_sweep
from benchmarks.leaderboard.context import build_context
from restore_gym.data import load_test_set
from restore_gym.lstm_dqn import QNetwork
from restore_gym.toolbox import TOOL_SPECS

SMOKE = REPO_ROOT / "benchmarks" / "leaderboard-smoke.yml"
DIFFICULTIES = ["mild", "moderate", "severe"]


def smoke_config(root: Path) -> dict:
    """The smoke config of the repository with its runs and results under ``root``."""
    return lb.validate_config({**yaml.safe_load(SMOKE.read_text()), "runs": str(root / "runs"),
                               "out": str(root / "out")})


def _mtimes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    """The smoke leaderboard run twice from scratch in two folders."""
    first, second = tmp_path_factory.mktemp("first"), tmp_path_factory.mktemp("second")
    return (first, lb.run_leaderboard(smoke_config(first), progress=False)), \
        (second, lb.run_leaderboard(smoke_config(second), progress=False))


# ---- configuration ------------------------------------------------------------------------------------


def test_the_repository_configs_validate():
    config = lb.load_config(REPO_ROOT / "benchmarks" / "leaderboard.yml")
    assert config["difficulties"] == DIFFICULTIES and config["source"] == "auto" and config["max_patches"] is None
    entries = lb.build_entries(config, official_dir=Path("/official"))
    assert [e.name for e in entries] == ["random", "stop", "best-tool", "best-chain", "greedy-oracle",
                                         "exhaustive-oracle", "official", "lstm-dqn", "dncnn", "vdsr", "vdsr-s",
                                         "sb3-ppo", "sb3-dqn"]
    seeds = {e.name: e.seeds for e in entries}
    assert seeds["random"] == seeds["lstm-dqn"] == seeds["vdsr"] == [0, 1, 2] and seeds["stop"] == [0]
    assert config["tracks"]["authors"]["toolbox"] == "official"
    authors = [e for e in lb.build_entries(config, None, tracks=["authors"]) if e.track == "authors"]
    assert [(e.name, e.seeds) for e in authors] == [
        ("best-tool-authors", [0]), ("greedy-oracle-authors", [0]), ("exhaustive-oracle-authors", [0]),
        ("lstm-dqn-authors", [0, 1, 2]), ("sb3-dqn-authors", [0, 1, 2])]
    assert all(len(e.seeds) >= 3 for e in entries if e.learned)
    assert config["lstm_dqn"]["preset"] == config["single_networks"]["preset"] == "cpu"
    smoke = lb.load_config(SMOKE)
    assert smoke["max_patches"] == 4 and smoke["official"] is False


@pytest.mark.parametrize(("change", "message"), [
    ({"colour": 1}, "unknown key(s) colour; known keys: difficulties"),
    ({"difficulties": ["hard"]}, "difficulties: unknown name(s) hard; known: mild, moderate, severe"),
    ({"difficulties": []}, "difficulties must be a non-empty list"),
    ({"max_patches": 0}, "max_patches must be an integer of at least 1"),
    ({"baselines": {"names": ["stop", "oracle"]}}, "baselines.names: unknown name(s) oracle; known: random"),
    ({"baselines": {"names": ["stop"], "runs": 3}}, "baselines: unknown key(s) runs"),
    ({"baselines": {"seeds": [0, 0]}}, "baselines.seeds lists a seed twice"),
    ({"baselines": {"seeds": [-1]}}, "baselines.seeds item must be an integer of at least 0"),
    ({"lstm_dqn": {"overrides": {"epochs": 3}}}, "lstm_dqn.overrides: unknown or sweep-controlled field(s) epochs"),
    ({"lstm_dqn": {"overrides": {"seed": 3}}}, "unknown or sweep-controlled field(s) seed"),
    ({"lstm_dqn": {"preset": "fast"}}, "lstm_dqn: unknown preset 'fast'"),
    ({"lstm_dqn": {"overrides": {"num_envs": 0}}}, "lstm_dqn: invalid config: num_envs=0"),
    ({"single_networks": {"archs": ["unet"]}}, "single_networks.archs: unknown name(s) unet; known: dncnn"),
    ({"single_networks": {"overrides": {"patch_size": 99}}}, "single_networks: invalid single-network config"),
    ({"gallery": {"difficulty": "mild"}, "difficulties": ["severe"]}, "gallery.difficulty 'mild' is not among"),
    ({"stats": {"confidence": 95}}, "stats.confidence must be a number in (0, 1)"),
    ({"official": "/nonexistent"}, "official must be 'auto'"),
    ({"toolbox": "/nonexistent.pt"}, "toolbox file /nonexistent.pt does not exist"),
    ({"source": "/nonexistent"}, "source folder /nonexistent does not exist"),
    ({"sb3": [{"algo": "sac"}]}, "sb3[0]: algo must be one of"),
    ({"sb3": [{"algo": "ppo"}, {"algo": "ppo"}]}, "entry name(s) sb3-ppo appear twice"),
    ({"baselines": None, "lstm_dqn": None, "single_networks": None}, "defines no entry"),
])
def test_bad_configs_are_refused_with_a_clear_message(change, message):
    base = {"baselines": {"names": ["stop"]}}
    with pytest.raises(lb.ConfigError) as error:
        lb.validate_config({**base, **change}, "test.yml")
    assert message in str(error.value) and str(error.value).startswith("test.yml")


@pytest.mark.parametrize("name", ["../../../x", "a/b", "Sb3-PPO", "-x", "_x", ".hidden", 5])
def test_entry_names_are_plain_names(name):
    # an entry's name is a folder under the runs and results: no path may leave them
    with pytest.raises(lb.ConfigError) as error:
        lb.validate_config({"sb3": [{"algo": "ppo", "name": name}]}, "test.yml")
    assert str(error.value).startswith(f"test.yml: the sb3 entry name {name!r} is not a plain name")
    assert "must match [a-z0-9][a-z0-9_-]*" in str(error.value)


def test_bad_files_and_arguments(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="leaderboard config .* does not exist"):
        lb.load_config(tmp_path / "missing.yml")
    broken = tmp_path / "broken.yml"
    broken.write_text("baselines: [stop\n")
    with pytest.raises(lb.ConfigError, match="is not valid YAML"):
        lb.load_config(broken)
    with pytest.raises(SystemExit) as exit_info:
        lb.main(["--config", str(SMOKE), "--max-patches", "0"])
    assert exit_info.value.code == 2 and "max_patches must be an integer of at least 1" in capsys.readouterr().err


# ---- small parts --------------------------------------------------------------------------------------


def test_agent_costs_and_gallery_indices():
    # 4 convolutions on the 32, 16, 8 and 4 grids, FC 384->32, the LSTM cell (44 + 50 inputs, 200 gates), FC 50->13
    convs = 32 * 32 * 32 * 3 * 81 + 16 * 16 * 24 * 32 * 25 + 8 * 8 * 24 * 24 * 25 + 4 * 4 * 24 * 24 * 25
    assert macs.qnetwork_macs(QNetwork()) == convs + 384 * 32 + 94 * 200 + 50 * 13
    assert [macs._decisions(chain) for chain in ([], [3], [1, 2], [1, 2, 3])] == [1, 2, 3, 3]
    assert store.gallery_indices(4, 164) == [0, 54, 109, 163] and store.gallery_indices(4, 2) == [0, 1]


def test_training_source_auto_falls_back_to_builtin():
    assert lb.resolve_training_source("auto") == "builtin"  # the test cache holds no corpus
    assert lb.resolve_training_source("/some/folder") == "/some/folder"


def test_the_official_entry_is_skipped_with_a_note_when_absent(tmp_path):
    folder, note = lb.official_folder(str(tmp_path / "nowhere"))
    assert folder is None and "skipped, their release is not at" in note
    assert lb.official_folder(False)[1].startswith("the authors' agent: switched off")
    if OFFICIAL_DIR.is_dir():
        assert lb.official_folder("auto") == (OFFICIAL_DIR, None)


# ---- the tiny end-to-end sweep ---------------------------------------------------------------------------


def test_the_sweep_writes_every_output_atomically(sweeps):
    root, report = sweeps[0]
    out = root / "out"
    folder = out / "leaderboard"
    for name in ("leaderboard.json", "leaderboard.csv", "runs.csv", "comparison.csv", "psnr.png", "tool_usage.png",
                 "gallery.png", "performance_profiles.png", "training_curves.png"):
        assert (folder / name).is_file() and (folder / name).stat().st_size > 0, name
    assert not [p for p in out.rglob("*.tmp")]  # no temp file of an atomic write is left behind
    assert (folder / "psnr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report["sweep"] == {"trained": 3, "evaluated": 24, "skipped": 0}
    assert json.loads((folder / "leaderboard.json").read_text())["rows"] == report["rows"]
    hardware = {"cpu_model", "cpu_count", "memory_gib", "cuda_device"}
    assert {"packages", "torch", "cuda", "git_commit", *hardware} <= report["provenance"].keys()
    assert report["max_patches"] == 4 and report["training_source"] == "builtin"
    for difficulty in DIFFICULTIES:
        assert report["test_sets"][difficulty]["digest"] == load_test_set(difficulty).digest
        assert report["test_sets"][difficulty]["patches"] == 4
    assert report["config"]["lstm_dqn"]["seeds"] == [0, 1] and report["config"]["lstm_dqn"]["preset"] == "smoke"
    assert [(e["name"], e["seeds"]) for e in report["entries"]] == [
        ("random", [0, 1]), ("stop", [0]), ("best-tool", [0]), ("greedy-oracle", [0]), ("lstm-dqn", [0, 1]),
        ("vdsr-s", [0])]
    # the learned entries were trained where the sweep keeps them
    assert (root / "runs" / "lstm-dqn" / "seed1" / "agent.pt").is_file()
    assert (root / "runs" / "single" / "vdsr-s" / "seed0" / "network.pt").is_file()

    markdown = (out / "leaderboard.md").read_text()
    assert "LIMITED RUN: only the first 4 patches" in markdown and "not deterministic" in markdown
    assert markdown.count("| random | pretrained | 2 |") == 3
    assert "![PSNR per difficulty](leaderboard/psnr.png)" in markdown
    assert "fewer than 3 training seeds for lstm-dqn, vdsr-s" in markdown
    rows = list(csv.DictReader((folder / "leaderboard.csv").open()))
    assert len(rows) == 6 * 3 and {r["patches"] for r in rows} == {"4"}
    runs = list(csv.DictReader((folder / "runs.csv").open()))
    assert len(runs) == 24

    run = json.loads((folder / "runs" / "lstm-dqn" / "moderate-seed1.json").read_text())
    assert run["inputs"]["seed"] == 1 and run["inputs"]["max_patches"] == 4 and run["inputs"]["model"]
    assert run["report"]["test_set"]["limited_to"] == 4 and len(run["macs_per_patch"]) == 4
    assert run["parameters"] == 436_068 + 88_063
    assert run["hyperparameters"]["seed"] == 1 and run["hyperparameters"]["total_timesteps"] == 64
    assert run["hyperparameters"]["source"] == "builtin"
    assert report["entries"][-1]["hyperparameters"]["0"]["arch"] == "vdsr-s"
    chains = run["report"]["per_patch"]["chain"]
    tools = [sum(TOOL_SPECS[t].macs for t in chain) for chain in chains]
    assert run["macs_per_patch"] == [m + run["decision_macs"] * macs._decisions(c) for m, c in zip(tools, chains)]
    with np.load(folder / "runs" / "lstm-dqn" / "moderate-seed0.npz") as gallery:
        assert gallery["images"].shape == (2, 63, 63, 3) and gallery["indices"].tolist() == [0, 3]
    assert not (folder / "runs" / "lstm-dqn" / "moderate-seed1.npz").exists()  # the gallery shows seed 0


def test_rows_hold_the_statistics(sweeps):
    rows = {(r["entry"], r["difficulty"]): r for r in sweeps[0][1]["rows"]}
    stop, random_, network = rows["stop", "mild"], rows["random", "mild"], rows["vdsr-s", "severe"]
    assert stop["metrics"]["psnr_gain"]["mean"] == 0.0 and stop["metrics"]["parameters"] == 0
    assert stop["metrics"]["psnr"]["mean"] == pytest.approx(stop["metrics"]["psnr_input"])
    psnr = random_["metrics"]["psnr"]
    assert psnr["runs"] == 2 and psnr["tasks"] == 4 and psnr["mean_ci"][0] <= psnr["mean"] <= psnr["mean_ci"][1]
    assert network["metrics"]["chain_length"] is None and network["tool_usage_per_step"] is None
    assert network["metrics"]["parameters"] == 168_227 and network["metrics"]["oracle_gain_share"] is None
    assert rows["best-tool", "moderate"]["metrics"]["chain_length"] == 1.0
    assert rows["best-tool", "moderate"]["metrics"]["parameters"] in {spec.params for spec in TOOL_SPECS}
    assert all(row["timing"]["deterministic"] is False for row in rows.values())


def test_the_paper_comparison_sets_each_toolchain_against_each_network(sweeps):
    root, report = sweeps[0]
    rows = {(r["entry"], r["difficulty"]): r for r in report["rows"]}
    records = report["comparison"]
    assert [(r["difficulty"], r["toolchain"], r["network"]) for r in records] == [
        (d, "lstm-dqn", "vdsr-s") for d in DIFFICULTIES]
    for record in records:
        chain, network = rows["lstm-dqn", record["difficulty"]], rows["vdsr-s", record["difficulty"]]
        means = chain["metrics"]["psnr"]["mean"], network["metrics"]["psnr"]["mean"]
        assert record["difference"] == pytest.approx(means[0] - means[1])
        low, high = record["difference_ci"]
        assert low <= record["difference"] <= high and record["runs"] == [2, 1] and record["tasks"] == 4
        assert 0.0 <= record["probability_of_improvement_ci"][0] <= record["probability_of_improvement"] \
            <= record["probability_of_improvement_ci"][1] <= 1.0
        assert record["macs_share"] == pytest.approx(chain["metrics"]["macs_per_patch"]
                                                     / network["metrics"]["macs_per_patch"])
        assert record["verdict"] == aggregate._verdict(low, high)
    assert [aggregate._verdict(*ci) for ci in ([0.1, 0.3], [-0.3, -0.1], [-0.1, 0.1])] == [
        "toolchain ahead", "network ahead", "no clear difference"]
    table = list(csv.DictReader((root / "out" / "leaderboard" / "comparison.csv").open()))
    assert len(table) == 3 and float(table[1]["difference_ci_low"]) == records[1]["difference_ci"][0]
    markdown = (root / "out" / "leaderboard.md").read_text()
    assert "## The paper's comparison: toolchains against single networks" in markdown
    assert markdown.count("| lstm-dqn | vdsr-s |") == 3


def _published_sweep(root: Path) -> tuple[lb_sweep.Sweep, aggregate.Results]:
    """The smoke sweep of ``root`` as its outputs were published, and its results."""
    config = smoke_config(root)
    sweep = lb_sweep.Sweep(config, Path(config["out"]), build_context(config), None, None)
    sweep.plan()
    return sweep, aggregate.load_results(sweep)


def test_performance_profiles_are_the_share_of_gains_above_each_threshold(sweeps):
    root, report = sweeps[0]
    sweep, results = _published_sweep(root)
    profiles = aggregate.performance_profiles(sweep, results)
    assert list(profiles) == DIFFICULTIES
    rows = {(r["entry"], r["difficulty"]): r for r in report["rows"]}
    for difficulty, entries in profiles.items():
        assert [p["entry"] for p in entries] == [e.name for e in sweep.entries]
        pooled = np.concatenate([aggregate._gains(results[p["entry"], difficulty]).ravel() for p in entries])
        for profile in entries:
            taus, share = np.array(profile["thresholds"]), np.array(profile["profile"])
            assert [taus[0], taus[-1]] == pytest.approx(np.quantile(pooled, aggregate.PROFILE_RANGE).tolist())
            assert len(taus) == aggregate.PROFILE_THRESHOLDS
            gains = aggregate._gains(results[profile["entry"], difficulty])
            assert share.tolist() == [(gains > tau).mean() for tau in taus]
            low, high = np.array(profile["profile_ci"])
            assert (low <= share + 1e-12).all() and (share <= high + 1e-12).all()
            if len(rows[profile["entry"], difficulty]["seeds"]) == 1:  # nothing to resample
                assert low.tolist() == high.tolist() == share.tolist()
        stop = next(p for p in entries if p["entry"] == "stop")  # gains all zero: all above a negative tau only
        assert stop["profile"] == [float(tau < 0) for tau in stop["thresholds"]]


def test_training_curves_are_the_mean_log_over_seeds(sweeps):
    root = sweeps[0][0]
    sweep, _ = _published_sweep(root)
    curves = {c["entry"]: c for c in aggregate.training_curves(sweep)}
    assert list(curves) == ["lstm-dqn", "vdsr-s"]  # the learned entries of the smoke config
    network = curves["vdsr-s"]
    log = list(csv.DictReader((root / "runs" / "single" / "vdsr-s" / "seed0" / "log.csv").open()))
    assert network["seeds"] == [0] and network["steps"] == [float(r["iteration"]) for r in log]
    assert network["mean"] == [float(r["val_gain"]) for r in log] == network["ci"][0] == network["ci"][1]
    agent = curves["lstm-dqn"]
    assert agent["seeds"] == [0, 1] and agent["label"].startswith("agent steps; ")
    logs = [list(csv.DictReader((root / "runs" / "lstm-dqn" / f"seed{s}" / "log.csv").open())) for s in (0, 1)]
    steps = np.array(agent["steps"])
    assert (np.diff(steps) > 0).all() and len(steps) >= 2
    expected = np.mean([np.interp(steps, [float(r["step"]) for r in rows], [float(r["mean_psnr_gain"]) for r in rows])
                        for rows in logs], axis=0)
    assert agent["mean"] == pytest.approx(expected.tolist(), abs=1e-12)
    low, high = np.array(agent["ci"])
    assert (low <= expected + 1e-12).all() and (expected <= high + 1e-12).all() and (low < high).any()


def test_two_sweeps_from_scratch_give_identical_numbers(sweeps):
    (_, first), (_, second) = sweeps
    assert [(r["entry"], r["difficulty"]) for r in first["rows"]] == [(r["entry"], r["difficulty"])
                                                                       for r in second["rows"]]
    for a, b in zip(first["rows"], second["rows"]):
        assert a["metrics"] == b["metrics"], (a["entry"], a["difficulty"])
        assert a["tool_usage_per_step"] == b["tool_usage_per_step"]
    assert first["comparison"] == second["comparison"]


def test_a_rerun_skips_finished_results_and_redoes_stale_ones(sweeps):
    root = sweeps[0][0]
    results = root / "out" / "leaderboard" / "runs"
    before = _mtimes(results)
    report = lb.run_leaderboard(smoke_config(root), progress=False)
    assert report["sweep"] == {"trained": 0, "evaluated": 0, "skipped": 24}
    assert _mtimes(results) == before
    assert [r["metrics"] for r in report["rows"]] == [r["metrics"] for r in sweeps[0][1]["rows"]]

    (results / "stop" / "severe-seed0.json").unlink()  # an interrupted evaluation
    stale = results / "best-tool" / "mild-seed0.json"
    stored = json.loads(stale.read_text())
    stale.write_text(json.dumps({**stored, "fingerprint": "0" * 64}))  # inputs that changed since
    report = lb.run_leaderboard(smoke_config(root), progress=False)
    assert report["sweep"] == {"trained": 0, "evaluated": 2, "skipped": 22}
    assert json.loads(stale.read_text())["fingerprint"] == stored["fingerprint"]


def test_more_patches_invalidate_results_and_the_dry_run_plans(sweeps, capsys, tmp_path):
    root = sweeps[0][0]
    config = {**smoke_config(root), "max_patches": 5}
    plan = lb.run_leaderboard(config, dry_run=True)
    assert plan["skipped"] == 0 and len(plan["jobs"]) == 24
    assert all(job["label"].startswith("evaluate") for job in plan["jobs"])  # the trained models are kept
    path = tmp_path / "smoke.yml"
    path.write_text(yaml.safe_dump({**yaml.safe_load(SMOKE.read_text()), "runs": str(root / "runs"),
                                    "out": str(root / "out")}))
    assert lb.main(["--config", str(path), "--dry-run"]) == 0
    assert "0 jobs, about 0.0 h; 24 finished results kept" in capsys.readouterr().out


def test_a_model_trained_with_another_config_is_never_overwritten(sweeps):
    root = sweeps[0][0]
    config = smoke_config(root)
    config["lstm_dqn"]["overrides"] = {"learning_rate": 0.5}
    with pytest.raises(RuntimeError, match=r"agent.pt was trained with another config \(learning_rate: 0.0001 "
                                           r"there, 0.5 here\); delete .*seed0 to train it anew"):
        lb.run_leaderboard(config, dry_run=True)


def test_training_tells_the_progress_bar_as_it_goes_and_a_resume_costs_what_is_left(tmp_path):
    config = smoke_config(tmp_path)
    ctx = lb.build_context(config)
    for entry in (e for e in lb.build_entries(config, None) if e.kind in ("lstm-dqn", "single-network")):
        from_scratch = entry.train_cost(ctx, 0)
        units, per_unit = entry.schedule(ctx, 0)
        assert from_scratch > 0 and from_scratch == pytest.approx(units * per_unit), entry.name
        if entry.kind == "lstm-dqn":  # an interrupted run: its checkpoint at about half the steps
            lstm_dqn.train(replace(entry.lstm_config(ctx, 0), total_timesteps=units // 2), entry.run_dir(ctx, 0),
                           ctx.toolbox, progress=False)
            key = "global_step"
        else:
            single_network.train(replace(entry.network_config(ctx, 0), iterations=units // 2), entry.run_dir(ctx, 0),
                                 progress=False)
            key = "iteration"
        done = torch.load(entry.run_dir(ctx, 0) / "checkpoint.pt", weights_only=True)[key]
        left = entry.train_cost(ctx, 0)
        assert units // 2 <= done < units and left == pytest.approx((units - done) * per_unit), entry.name
        told: list[float] = []
        entry.train(ctx, 0, told.append)
        assert len(told) > 1 and sum(told) == pytest.approx(left), entry.name
        assert entry.trained(ctx, 0) and entry.train_cost(ctx, 0) == 0, entry.name
    agent = next(e for e in lb.build_entries(config, None) if e.kind == "lstm-dqn")
    (agent.run_dir(ctx, 0) / lstm_dqn.CHECKPOINT_FILE).write_bytes(b"cut short")
    with pytest.raises(RuntimeError, match="checkpoint .*seed0.checkpoint.pt cannot be read .*delete it to train "
                                           "lstm-dqn seed 0 anew"):
        agent.train_cost(ctx, 0)


def test_a_real_sweep_plan_trains_every_seed(tmp_path):
    config = lb.validate_config({**lb.load_config(REPO_ROOT / "benchmarks" / "leaderboard.yml"),
                                 "runs": str(tmp_path / "runs"), "out": str(tmp_path / "out"), "official": False,
                                 "baselines": {"names": ["stop"]}})
    plan = lb.run_leaderboard(config, dry_run=True)
    trainings = [job["label"] for job in plan["jobs"] if job["label"].startswith("train")]
    names = ("lstm-dqn", "dncnn", "vdsr", "vdsr-s", "sb3-ppo", "sb3-dqn")
    assert trainings == [f"train {name} seed {s}" for name in names for s in range(3)]
    assert len(plan["jobs"]) == 18 + 3 * (1 + 6 * 3)
    assert 8 * 3600 < plan["estimated_seconds"] < 14 * 3600  # ~2 hours per agent, ~25 minutes per network


def test_the_device_must_exist(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(RuntimeError):
        lb.run_leaderboard({**smoke_config(tmp_path), "device": "cuda"}, progress=False)


def test_multiply_adds_of_recurrent_and_dense_layers():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Flatten(), torch.nn.Linear(4 * 5 * 5, 7))
    assert macs.forward_macs(net, lambda: net(torch.zeros(1, 3, 5, 5))) == 5 * 5 * 4 * 3 * 9 + 100 * 7
    lstm = torch.nn.LSTM(6, 8, num_layers=2)  # per step and layer: 4 gates x 8 units x (inputs + 8)
    assert macs.forward_macs(lstm, lambda: lstm(torch.zeros(3, 1, 6))) == 3 * (32 * (6 + 8) + 32 * (8 + 8))


@pytest.mark.skipif(not OFFICIAL_DIR.is_dir(), reason="the authors' released weights are not in ../shared/reference")
def test_the_authors_agent_with_their_toolbox(tmp_path):
    config = lb.validate_config({"difficulties": ["moderate"], "max_patches": 3, "official": "auto",
                                 "baselines": {"names": ["stop"]}, "stats": {"reps": 50},
                                 "runs": str(tmp_path / "runs"), "out": str(tmp_path / "out")})
    report = lb.run_leaderboard(config, progress=False)
    official = next(row for row in report["rows"] if row["entry"] == "official")
    assert official["metrics"]["parameters"] == 436_068 + 88_063
    assert official["metrics"]["psnr_gain"]["mean"] > 1.0 and official["metrics"]["agent_macs_per_decision"] > 0
    run = json.loads((tmp_path / "out" / "leaderboard" / "runs" / "official" / "moderate-seed0.json").read_text())
    assert run["inputs"]["toolbox"] != report["toolbox"]["fingerprint"]  # their tools, not the shipped ones
    assert run["report"]["toolbox"]["metadata"]["provenance"].startswith("RL-Restore official release")


def test_no_train_leaves_out_untrained_seeds_and_names_them(sweeps, tmp_path):
    config = smoke_config(sweeps[0][0])
    config["lstm_dqn"]["seeds"] = [0, 1, 5]  # seeds 0 and 1 are trained by the smoke sweep, seed 5 is not
    config["single_networks"]["seeds"] = [7]  # nothing trained
    config["out"] = str(tmp_path / "out")
    plan = lb.run_leaderboard(config, dry_run=True, train=False)
    assert not [job for job in plan["jobs"] if job["label"].startswith("train")]
    result = lb.run_leaderboard(config, progress=False, train=False)
    assert [tuple(pair) for pair in result["untrained"]] == [("lstm-dqn", 5), ("vdsr-s", 7)]
    rows = {(row["entry"], row["difficulty"]): row for row in result["rows"]}
    assert rows["lstm-dqn", "moderate"]["seeds"] == [0, 1] and ("vdsr-s", "moderate") not in rows
    markdown = (tmp_path / "out" / "leaderboard.md").read_text()
    assert "lstm-dqn: seed(s) 5 not trained yet" in markdown and "vdsr-s: seed(s) 7 not trained yet" in markdown


def test_no_evaluate_runs_nothing_and_publishes_the_valid_results(sweeps, tmp_path):
    root = sweeps[0][0]
    out = tmp_path / "out"
    shutil.copytree(root / "out", out)
    results = out / "leaderboard" / "runs"
    (results / "random" / "mild-seed1.json").unlink()
    (results / "best-tool" / "moderate-seed0.json").unlink()  # the gallery's difficulty and seed
    config = {**smoke_config(root), "out": str(out)}
    config["lstm_dqn"]["seeds"] = [0, 1, 5]  # seed 5 is not trained
    before = _mtimes(results)
    report = lb.run_leaderboard(config, progress=False, evaluate=False)
    assert _mtimes(results) == before and report["sweep"]["trained"] == report["sweep"]["evaluated"] == 0
    assert [tuple(item) for item in report["unevaluated"]] == [("best-tool", "moderate", 0), ("random", "mild", 1)]
    assert [tuple(item) for item in report["untrained"]] == [("lstm-dqn", 5)]
    rows = {(row["entry"], row["difficulty"]): row for row in report["rows"]}
    assert rows["random", "mild"]["seeds"] == [0] and rows["random", "severe"]["seeds"] == [0, 1]
    assert ("best-tool", "moderate") not in rows and rows["best-tool", "mild"]["seeds"] == [0]
    markdown = (out / "leaderboard.md").read_text()
    assert "random on mild: seed(s) 1 not evaluated yet" in markdown
    assert "best-tool on moderate: seed(s) 0 not evaluated yet" in markdown
    assert (out / "leaderboard" / "gallery.png").stat().st_size > 0
    assert lb.build_parser().parse_args(["--no-evaluate"]).no_evaluate


class RecordingBar:
    """Stands in for tqdm: records the totals and updates of the sweep's progress bar."""

    bars: list["RecordingBar"] = []

    def __init__(self, total: float, **_) -> None:
        self.total, self.updates = total, []
        RecordingBar.bars.append(self)

    def update(self, amount: float) -> None:
        self.updates.append(amount)

    def set_postfix_str(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


def test_parallel_training_gives_the_numbers_of_the_serial_sweep_and_tells_the_bar(sweeps, tmp_path, monkeypatch):
    monkeypatch.setattr(lb_sweep, "tqdm", RecordingBar)
    monkeypatch.setattr(RecordingBar, "bars", [])
    report = lb.run_leaderboard(smoke_config(tmp_path), progress=True, jobs=2)
    (bar,) = RecordingBar.bars
    assert sum(bar.updates) == pytest.approx(bar.total, abs=1e-3)  # the bar's total is rounded
    # the trainings tell the bar as they go, not only when they end: more updates than jobs
    assert len([u for u in bar.updates if u > 0]) > report["sweep"]["trained"] + report["sweep"]["evaluated"]
    serial = sweeps[0][1]
    assert report["sweep"] == {**serial["sweep"], "trained": 3}
    assert [(r["entry"], r["difficulty"], r["metrics"]) for r in report["rows"]] == \
        [(r["entry"], r["difficulty"], r["metrics"]) for r in serial["rows"]]
    with pytest.raises(ValueError, match="jobs must be at least 1"):
        lb.run_leaderboard(smoke_config(tmp_path), jobs=0)


def test_an_agent_trained_with_another_toolbox_is_never_reused(sweeps, tmp_path):
    from restore_gym.toolbox import Toolbox

    other = Toolbox.pretrained()
    other.metadata = {**other.metadata, "note": "retrained"}
    other.save(tmp_path / "other.pt")
    config = {**smoke_config(sweeps[0][0]), "toolbox": str(tmp_path / "other.pt")}
    with pytest.raises(RuntimeError, match=r"agent.pt was trained with another toolbox .*; delete .*seed0"):
        lb.run_leaderboard(config, dry_run=True)


def test_an_sb3_entry_trains_evaluates_and_is_never_reused_with_another_toolbox(tmp_path):
    from restore_gym.toolbox import Toolbox

    hyperparams = tmp_path / "a2c.yml"
    hyperparams.write_text(yaml.safe_dump({"RLRestore-v0": {
        "n_timesteps": 32, "n_envs": 2, "n_steps": 8, "policy": "MultiInputPolicy",
        "env_kwargs": {"observation": "uint8"},
        "policy_kwargs": {"net_arch": [8], "features_extractor_kwargs": {"cnn_output_dim": 8}}}}))
    config = lb.validate_config({"difficulties": ["moderate"], "runs": str(tmp_path / "runs"),
                                 "out": str(tmp_path / "out"), "max_patches": 2, "official": False,
                                 "stats": {"reps": 10}, "gallery": {"difficulty": "moderate", "patches": 1},
                                 "sb3": [{"algo": "a2c", "seeds": [0], "hyperparams": str(hyperparams)}]})
    report = lb.run_leaderboard(config, progress=False)
    assert report["sweep"] == {"trained": 1, "evaluated": 1, "skipped": 0}
    (row,) = report["rows"]
    assert row["entry"] == "sb3-a2c" and row["difficulty"] == "moderate"
    assert lb.run_leaderboard(config, progress=False)["sweep"] == {"trained": 0, "evaluated": 0, "skipped": 1}

    other = Toolbox.pretrained()
    other.metadata = {**other.metadata, "note": "retrained"}
    other.save(tmp_path / "other.pt")
    with pytest.raises(RuntimeError, match=r"model.zip was trained with another toolbox .*; delete .*seed0"):
        lb.run_leaderboard({**config, "toolbox": str(tmp_path / "other.pt")}, dry_run=True)


# ---- tracks: entries with a toolbox of their own ----------------------------------------------------------


def _track_config(tmp_path: Path, toolbox: str, names: list[str]) -> dict:
    return lb.validate_config({
        "difficulties": ["mild"], "max_patches": 1, "official": False, "stats": {"reps": 20},
        "gallery": {"difficulty": "mild", "patches": 1}, "baselines": {"names": ["stop", *names]},
        "tracks": {"other": {"toolbox": toolbox, "baselines": {"names": names}}},
        "runs": str(tmp_path / "runs"), "out": str(tmp_path / "out")})


def test_a_track_runs_its_entries_with_its_own_toolbox_and_its_own_oracle(tmp_path):
    from restore_gym.toolbox import Toolbox

    config = _track_config(tmp_path, "joint", ["greedy-oracle", "exhaustive-oracle"])
    report = lb.run_leaderboard(config, progress=False)
    rows = {row["entry"]: row for row in report["rows"]}
    assert list(rows) == ["stop", "greedy-oracle", "exhaustive-oracle", "greedy-oracle-other",
                          "exhaustive-oracle-other"]
    assert rows["greedy-oracle-other"]["toolbox"] == "joint" and rows["greedy-oracle"]["toolbox"] == "pretrained"
    joint = Toolbox.pretrained(variant="joint").fingerprint()
    assert report["tracks"] == {"other": {**report["tracks"]["other"], "name": "joint", "fingerprint": joint}}
    run = json.loads((tmp_path / "out" / "leaderboard" / "runs" / "exhaustive-oracle-other" / "mild-seed0.json")
                     .read_text())
    assert run["inputs"]["toolbox"] == joint != report["toolbox"]["fingerprint"]
    # each oracle share is against the exhaustive oracle of the row's own toolbox
    assert rows["exhaustive-oracle-other"]["metrics"]["oracle_gain_share"] == pytest.approx(1.0)
    assert rows["greedy-oracle-other"]["metrics"]["oracle_gain_share"] == pytest.approx(
        rows["greedy-oracle-other"]["metrics"]["psnr_gain"]["mean"]
        / rows["exhaustive-oracle-other"]["metrics"]["psnr_gain"]["mean"])
    assert rows["exhaustive-oracle-other"]["metrics"]["psnr_gain"]["mean"] != pytest.approx(
        rows["exhaustive-oracle"]["metrics"]["psnr_gain"]["mean"])
    table = (tmp_path / "out" / "leaderboard.md").read_text()
    assert "| greedy-oracle-other | joint | 1 |" in table and "Track `other`: toolbox joint" in table
    assert "toolbox" in (tmp_path / "out" / "leaderboard" / "leaderboard.csv").read_text().splitlines()[0]


def test_a_track_whose_toolbox_is_not_here_is_skipped_and_said_so(tmp_path, monkeypatch):
    monkeypatch.setenv("RESTORE_GYM_CACHE", str(tmp_path / "empty-cache"))
    report = lb.run_leaderboard(_track_config(tmp_path, "official", ["greedy-oracle"]), progress=False)
    assert [row["entry"] for row in report["rows"]] == ["stop", "greedy-oracle"]
    assert report["tracks"] == {}
    (note,) = [n for n in report["notes"] if n.startswith("track other")]
    assert "skipped" in note and "import-official" in note
    assert "track other (toolbox official): skipped" in (tmp_path / "out" / "leaderboard.md").read_text()


@pytest.mark.parametrize("tracks, message", [
    ({"a": {"baselines": {"names": ["stop"]}}}, "needs a toolbox"),
    ({"a": {"toolbox": "joint"}}, "defines no entry"),
    ({"a": {"toolbox": "joint", "single_networks": {}}}, "unknown key(s) single_networks"),
    ({"A b": {"toolbox": "joint", "baselines": {}}}, "a track name must match"),
    ({"a": {"toolbox": "no/such/file.pt", "baselines": {}}}, "toolbox file no/such/file.pt does not exist"),
    ({"a": {"toolbox": "joint", "baselines": {"names": ["nope"]}}}, "unknown name(s) nope"),
    ([], "must be a mapping of track names"),
])
def test_bad_tracks_are_refused_with_a_clear_message(tracks, message):
    with pytest.raises(lb.ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        lb.validate_config({"baselines": {"names": ["stop"]}, "tracks": tracks})


def test_track_entry_names_must_not_collide():
    with pytest.raises(lb.ConfigError, match="stop-a appear twice"):
        lb.validate_config({"sb3": [{"algo": "dqn", "name": "stop-a"}],
                            "tracks": {"a": {"toolbox": "joint", "baselines": {"names": ["stop"]}}}})
# ---- the sweep on Ray ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_sweep(tmp_path_factory):
    """The smoke leaderboard from scratch as Ray tasks on a local instance of 2 CPUs, the run folders travelling
    between the driver and the tasks (as on a cluster without shared storage); its root, report and bar."""
    pytest.importorskip("ray")
    root = tmp_path_factory.mktemp("ray")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(lb_sweep, "tqdm", RecordingBar)
        patch.setattr(RecordingBar, "bars", [])
        report = lb.run_leaderboard(smoke_config(root), progress=True,
                                    ray=lb_sweep.RayOptions(cpus=2, shared_runs=False))
        (bar,) = RecordingBar.bars
    return root, report, bar


def test_a_sweep_on_ray_gives_the_serial_sweeps_numbers_and_files_and_one_progress_bar(sweeps, ray_sweep):
    (serial_root, serial), (root, report, bar) = sweeps[0], ray_sweep
    assert report["sweep"] == serial["sweep"] == {"trained": 3, "evaluated": 24, "skipped": 0}
    assert [(r["entry"], r["difficulty"], r["metrics"], r["tool_usage_per_step"]) for r in report["rows"]] == \
        [(r["entry"], r["difficulty"], r["metrics"], r["tool_usage_per_step"]) for r in serial["rows"]]
    assert report["comparison"] == serial["comparison"]
    # every result holds the fingerprint of the serial one: same inputs, the same model files
    results, serial_results = root / "out" / "leaderboard" / "runs", serial_root / "out" / "leaderboard" / "runs"
    names = sorted(str(p.relative_to(results)) for p in results.rglob("*") if p.is_file())
    assert names == sorted(str(p.relative_to(serial_results)) for p in serial_results.rglob("*") if p.is_file())
    for name in (n for n in names if n.endswith(".json")):
        assert json.loads((results / name).read_text())["fingerprint"] == \
            json.loads((serial_results / name).read_text())["fingerprint"], name
    # the trained models came back to the driver's runs folder, checkpoints too (a run may be extended later)
    for run in ("lstm-dqn/seed0", "lstm-dqn/seed1", "single/vdsr-s/seed0"):
        assert {p.name for p in (root / "runs" / run).iterdir()} == \
            {p.name for p in (serial_root / "runs" / run).iterdir()}, run
    assert not list(root.rglob("*.tmp"))
    assert sum(bar.updates) == pytest.approx(bar.total, abs=1e-3)
    assert len([u for u in bar.updates if u > 0]) > 27  # the trainings told the bar as they went


def test_a_sweep_on_ray_resumes_as_the_serial_one_training_in_the_shared_runs_folder(sweeps, ray_sweep, capsys):
    root = ray_sweep[0]
    results = root / "out" / "leaderboard" / "runs"
    (root / "runs" / "single" / "vdsr-s" / "seed0" / "network.pt").unlink()  # its checkpoint stays: resumed
    (results / "stop" / "severe-seed0.json").unlink()
    kept = {name: mtime for name, mtime in _mtimes(results).items() if not name.startswith("vdsr-s")}
    config = root / "smoke.yml"
    config.write_text(yaml.safe_dump({**yaml.safe_load(SMOKE.read_text()), "runs": str(root / "runs"),
                                      "out": str(root / "out")}))
    assert lb.main(["--config", str(config), "--ray", "--jobs", "2", "--no-progress"]) == 0
    assert "1 trainings, 4 evaluations run; 20 finished results kept" in capsys.readouterr().out
    assert {name: mtime for name, mtime in _mtimes(results).items() if name in kept} == \
        {name: mtime for name, mtime in kept.items() if name != "stop/severe-seed0.json"}
    report = json.loads((root / "out" / "leaderboard" / "leaderboard.json").read_text())
    assert [r["metrics"] for r in report["rows"]] == [r["metrics"] for r in sweeps[0][1]["rows"]]


@pytest.mark.parametrize(("argv", "message"), [
    (["--storage", "/shared/runs"], "--storage is the runs folder of a Ray cluster: give it with --ray ADDRESS"),
    (["--ray", "--storage", "/shared/runs"], "on this machine the runs folder (--runs) is shared already"),
    (["--ray", "head:6379", "--storage", "/a", "--runs", "/b"], "give --storage or --runs, not both"),
    (["--ray", "head:6379", "--jobs", "2"], "--jobs sets the tasks run at once by a Ray instance on this machine"),
    (["--ray", "--device", "cuda:1"], "on Ray, name the device cuda, not cuda:1"),
    (["--ray", "--gpus-per-task", "0"], "GPUs per Ray task must be more than 0"),
])
def test_bad_ray_arguments_are_refused_with_a_clear_message(argv, message, capsys):
    if "cuda:1" in argv and torch.cuda.device_count() > 1:
        pytest.skip("cuda:1 exists here")
    with pytest.raises(SystemExit) as exit_info:
        lb.main(["--config", str(SMOKE), *argv])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_ray_tasks_asking_for_more_than_any_node_has_are_an_error(tmp_path):
    pytest.importorskip("ray")
    with pytest.raises(RuntimeError, match=r"each Ray task asks for 3 CPU\(s\) and 0 GPU\(s\), which no node of "
                                           r"the Ray cluster has \(its nodes: 2 CPU and 0 GPU\)"):
        lb.run_leaderboard(smoke_config(tmp_path), progress=False, ray=lb_sweep.RayOptions(cpus=2, threads=3))

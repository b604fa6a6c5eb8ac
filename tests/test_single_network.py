import csv
import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import leave_a_killed_run_then_fill_the_disk, read_scalars

from agents import single_network as sn
from restore_gym import evaluation, networks
from restore_gym.data import load_test_set
from restore_gym.toolbox import TOOL_SPECS, count_macs, count_parameters

TOOLBOX_PARAMETERS = 436_068


def test_parameter_counts_and_costs():
    assert sum(spec.params for spec in TOOL_SPECS) == TOOLBOX_PARAMETERS
    dncnn, vdsr, small = (networks.build_network(arch) for arch in ("dncnn", "vdsr", "vdsr-s"))
    assert count_parameters(dncnn) == 428_123  # depth 17, width 56: within 2% of the toolbox
    assert abs(count_parameters(dncnn) - TOOLBOX_PARAMETERS) / TOOLBOX_PARAMETERS < 0.02
    assert count_parameters(vdsr) == 668_227  # 20 layers of 64 channels, 3 in and out
    assert count_parameters(small) == 168_227  # 20 layers of 32 channels
    assert sum(isinstance(m, torch.nn.Conv2d) for m in vdsr.modules()) == 20
    assert sum(isinstance(m, torch.nn.Conv2d) for m in dncnn.modules()) == 17
    three_large_tools = 3 * max(spec.macs for spec in TOOL_SPECS)
    assert 0.9 * three_large_tools < count_macs(small) < 1.2 * three_large_tools
    biases = 19 * 64 + 3
    assert count_macs(vdsr) == 63 * 63 * (668_227 - biases)  # every weight once per pixel (SAME padding)


@pytest.mark.parametrize("arch", list(networks.ARCHITECTURES))
def test_networks_keep_the_shape_and_are_residual(arch):
    torch.manual_seed(0)
    network = networks.build_network(arch).eval()
    x = torch.rand(2, 3, 21, 21)
    with torch.no_grad():
        body = network.body(x)
        out = network(x)
    assert out.shape == x.shape
    sign = -1.0 if arch == "dncnn" else 1.0
    torch.testing.assert_close(out, x + sign * body)


def test_presets_and_config_checks():
    for arch in networks.ARCHITECTURES:
        cfg = sn.preset("cpu", arch)
        assert cfg.iterations == sn.CPU_ITERATIONS[arch] and cfg.batch_size == 16 and cfg.patch_size == 41
        assert 20 * 60 <= cfg.iterations * sn.seconds_per_iteration(cfg) <= 30 * 60
    assert sn.preset("smoke", "vdsr", seed=3).seed == 3
    assert sn.preset("paper", "dncnn").patch_size == 63
    with pytest.raises(ValueError, match="unknown preset 'fast'"):
        sn.preset("fast", "dncnn")
    with pytest.raises(ValueError, match="unknown architecture 'unet'; choose one of dncnn, vdsr, vdsr-s"):
        sn.preset("cpu", "unet")
    with pytest.raises(ValueError, match=r"unknown single-network config field\(s\) \['epochs'\]"):
        sn.preset("cpu", "vdsr", epochs=3)
    with pytest.raises(ValueError, match="patch_size=64"):
        sn.NetworkConfig(patch_size=64)
    with pytest.raises(ValueError, match="iterations=0"):
        sn.NetworkConfig(iterations=0)
    with pytest.raises(ValueError, match="unknown difficulty"):
        sn.NetworkConfig(difficulty="hard")


def test_training_batches_are_degraded_crops_of_the_train_split():
    from restore_gym.data import BuiltinImages

    rng = np.random.default_rng(0)
    degraded, clean = sn.sample_batch(BuiltinImages("train"), "moderate", 3, 17, rng)
    assert degraded.shape == clean.shape == (3, 3, 17, 17) and degraded.dtype == torch.float32
    assert not torch.equal(degraded, clean)
    again = sn.sample_batch(BuiltinImages("train"), "moderate", 3, 17, np.random.default_rng(0))
    assert torch.equal(again[0], degraded)


@pytest.fixture(scope="module")
def smoke_config():
    return sn.preset("smoke", "vdsr-s", iterations=4, checkpoint_every=2)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, smoke_config):
    out = tmp_path_factory.mktemp("vdsr-s")
    network = sn.train(smoke_config, out, progress=False)
    return out, network


def test_training_writes_its_files(trained, smoke_config):
    out, network = trained
    assert {p.name for p in out.iterdir()} == {"config.json", "log.csv", "checkpoint.pt", "network.pt", "tensorboard"}
    assert json.loads((out / "config.json").read_text())["arch"] == "vdsr-s"
    rows = list(csv.DictReader((out / "log.csv").open()))
    assert [int(r["iteration"]) for r in rows] == [2, 4]
    assert float(rows[-1]["val_psnr_in"]) > 0
    loaded, payload = networks.load_network(out / "network.pt")
    assert payload["iteration"] == 4 and payload["config"]["seed"] == smoke_config.seed
    for a, b in zip(loaded.state_dict().values(), network.state_dict().values()):
        assert torch.equal(a, b)


def test_tensorboard_holds_every_iteration_and_every_validation(trained):
    out, _ = trained
    scalars = read_scalars(out / "tensorboard")
    assert set(scalars) == {"losses/mse", "charts/learning_rate", "eval/psnr", "eval/psnr_gain"}
    assert [step for step, _ in scalars["losses/mse"]] == [step for step, _ in scalars["charts/learning_rate"]] \
        == [1, 2, 3, 4]
    rows = list(csv.DictReader((out / "log.csv").open()))
    assert [step for step, _ in scalars["eval/psnr_gain"]] == [int(r["iteration"]) for r in rows]
    assert [value for _, value in scalars["eval/psnr_gain"]] == pytest.approx([float(r["val_gain"]) for r in rows],
                                                                               abs=1e-4)  # the CSV's 4 decimals
    assert [value for _, value in scalars["eval/psnr"]] == pytest.approx([float(r["val_psnr_out"]) for r in rows],
                                                                          abs=1e-4)
    assert scalars["losses/mse"][-1][1] == pytest.approx(float(rows[-1]["loss"]), rel=1e-5)


def test_an_interrupted_run_resumes_exactly(tmp_path, trained, smoke_config):
    class Interrupt(Exception):
        pass

    calls = []

    def interrupt_after_three() -> None:
        calls.append(1)
        if len(calls) == 3:
            raise Interrupt

    with pytest.raises(Interrupt):
        sn.train(smoke_config, tmp_path, progress=False, on_iteration=interrupt_after_three)
    assert not (tmp_path / "network.pt").exists()
    checkpoint_seconds = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["seconds"]
    with pytest.raises(FileExistsError, match="resume it or choose another output folder"):
        sn.train(smoke_config, tmp_path, progress=False)
    with pytest.raises(ValueError, match="batch_size: 2 there, 3 here"):
        sn.train(replace(smoke_config, batch_size=3), tmp_path, resume=True, progress=False)
    resumed = sn.train(smoke_config, tmp_path, resume=True, progress=False)
    for a, b in zip(resumed.state_dict().values(), trained[1].state_dict().values()):
        assert torch.equal(a, b)
    rows = list(csv.DictReader((tmp_path / "log.csv").open()))
    assert [r["iteration"] for r in rows] == ["2", "4"]
    assert float(rows[0]["seconds"]) <= round(checkpoint_seconds, 1) <= float(rows[1]["seconds"])
    # the interrupted run logged iteration 3 after its checkpoint; the resumed run's curves hold it once
    assert read_scalars(tmp_path / "tensorboard") == read_scalars(trained[0] / "tensorboard")
    with pytest.raises(FileNotFoundError, match="cannot resume: there is no"):
        sn.train(smoke_config, tmp_path / "elsewhere", resume=True, progress=False)


def test_foreign_files_are_refused(tmp_path):
    bogus = tmp_path / "network.pt"
    torch.save({"weights": torch.zeros(2)}, bogus)
    with pytest.raises(ValueError, match="is not a single-network file"):
        networks.load_network(bogus)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        networks.load_network(tmp_path / "missing.pt")


def test_evaluation_in_one_pass(trained):
    network, _ = networks.load_network(trained[0] / "network.pt")
    result = evaluation.run_network(network, "severe", max_patches=5, details={"seed": 0})
    report = result.report
    test_set = load_test_set("severe")
    assert report["patches"] == 5 and result.images.shape == (5, 63, 63, 3)
    assert report["test_set"]["limited_to"] == 5 and report["test_set"]["patches"] == len(test_set)
    assert report["test_set"]["digest"] == test_set.digest
    assert report["agent"] == {"name": "single-network", "parameters": 168_227, "seed": 0}
    metrics = report["metrics"]
    assert metrics["chain_length"] is None and report["tool_usage"] is None and report["toolbox"] is None
    assert metrics["macs_per_patch"] == count_macs(network)
    assert metrics["psnr"] == pytest.approx(np.mean(report["per_patch"]["psnr"]))
    assert metrics["psnr_input"] == pytest.approx(np.mean(report["per_patch"]["psnr_input"]))
    json.dumps(report)


def test_command_lines(trained, tmp_path, capsys):
    out = tmp_path / "run"
    assert sn.main(["train", "--arch", "vdsr-s", "--preset", "smoke", "--out", str(out), "--no-progress"]) == 0
    assert (out / "network.pt").is_file() and f"network written to {out / 'network.pt'}" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        sn.main(["train", "--arch", "unet", "--out", str(out)])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit):
        sn.main(["train", "--arch", "vdsr", "--out", str(out), "--source", str(tmp_path / "missing")])
    assert "does not exist" in capsys.readouterr().err
    assert evaluation.main(["--agent", "single-network", "--difficulty", "mild", "--max-patches", "3",
                            "--checkpoint", str(trained[0] / "network.pt")]) == 0
    printed = capsys.readouterr().out
    assert "single-network on mild (3 patches" in printed and "the first 3 only" in printed and "n/a" in printed
    with pytest.raises(SystemExit):
        evaluation.main(["--agent", "single-network", "--difficulty", "mild"])
    assert "agent 'single-network' needs --checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["truncated", "flipped"])
def test_a_damaged_checkpoint_is_an_error_naming_it(tmp_path, trained, smoke_config, damage):
    shutil.copytree(trained[0], tmp_path, dirs_exist_ok=True)
    path, data = tmp_path / "checkpoint.pt", (tmp_path / "checkpoint.pt").read_bytes()
    middle = len(data) // 2
    path.write_bytes(data[:middle] if damage == "truncated" else
                     data[:middle] + bytes(b ^ 0xFF for b in data[middle:middle + 200]) + data[middle + 200:])
    message = {"truncated": "is not a readable single-network checkpoint", "flipped": "is damaged"}[damage]
    with pytest.raises(ValueError, match=rf"{path} {message}.*delete it to train the network anew"):
        sn.train(smoke_config, tmp_path, resume=True, progress=False)


def test_a_run_starts_by_removing_stale_temporaries(tmp_path, monkeypatch, smoke_config):
    leave_a_killed_run_then_fill_the_disk(tmp_path, monkeypatch)
    with pytest.raises(OSError, match="disk full"):
        sn.train(smoke_config, tmp_path, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]
    assert (tmp_path / "config.json").read_text() == "{\"earlier\": true}"

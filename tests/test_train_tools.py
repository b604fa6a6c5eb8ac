import csv
import os

import numpy as np
import pytest
import torch
from conftest import read_scalars

from restore_gym import records
from restore_gym import train_tools as tt
from restore_gym.data import BuiltinImages
from restore_gym.metrics import psnr_batch
from restore_gym.toolbox import TOOL_SPECS, Toolbox


def test_parse_tool_list():
    assert tt.parse_tool_list("1,5-8") == [0, 4, 5, 6, 7]
    assert tt.parse_tool_list("1-12") == list(range(12))
    for bad in ("0", "13", "3-1", "x"):
        with pytest.raises(ValueError):
            tt.parse_tool_list(bad)


def test_learning_rate_schedule():
    config = tt.PRESETS["cpu"]
    assert tt.learning_rate(config, 0, 100) == pytest.approx(config.lr)
    assert tt.learning_rate(config, 100, 100) == pytest.approx(config.final_lr)


def test_training_runs_logs_resumes_and_assembles(tmp_path):
    config = tt.PRESETS["smoke"]
    path = tt.train_toolbox(tmp_path, [0, 2], "builtin", config, progress=False)
    toolbox = Toolbox.load(path)
    assert toolbox.metadata["tools_trained"] == [1, 3]
    rows = list(csv.DictReader((tmp_path / "train_log.csv").open()))
    assert {int(r["tool"]) for r in rows} == {1, 3}
    assert all(np.isfinite(float(r["val_gain"])) for r in rows)
    assert not list(tmp_path.glob("*.ckpt.pt")) and not list(tmp_path.glob("*.tmp"))
    assert sorted(p.name for p in (tmp_path / "tensorboard").iterdir()) == ["tool01", "tool03"]
    for tool in (1, 3):  # one folder of events per tool (tools may train in parallel processes)
        scalars = read_scalars(tmp_path / "tensorboard" / f"tool{tool:02d}")
        assert set(scalars) == {"losses/mse", "charts/learning_rate", "eval/psnr", "eval/psnr_gain"}
        iterations = config.small_iterations if TOOL_SPECS[tool - 1].size == "small" else config.large_iterations
        assert [step for step, _ in scalars["losses/mse"]] == list(range(1, iterations + 1))
        mine = [r for r in rows if int(r["tool"]) == tool]
        assert [step for step, _ in scalars["eval/psnr_gain"]] == [int(r["iteration"]) for r in mine]
        assert [v for _, v in scalars["eval/psnr_gain"]] == pytest.approx([float(r["val_gain"]) for r in mine],
                                                                           abs=1e-4)
    untrained = Toolbox()
    for i in (0, 2):
        trained = dict(toolbox.tools[i].named_parameters())
        assert any(not torch.equal(p, trained[n]) for n, p in untrained.tools[i].named_parameters())


def interrupt_after_the_last_checkpoint(monkeypatch) -> None:
    """Make training stop with a KeyboardInterrupt where it would write its final weights."""
    real_save = tt.atomic_torch_save

    def crash_at_the_end(obj, path):
        if not str(path).endswith(".ckpt.pt"):
            raise KeyboardInterrupt
        real_save(obj, path)

    monkeypatch.setattr(tt, "atomic_torch_save", crash_at_the_end)


def test_resume_from_checkpoint_matches_uninterrupted_run(tmp_path, monkeypatch):
    config = tt.PRESETS["smoke"]
    spec, source, cpu = TOOL_SPECS[0], BuiltinImages("train"), torch.device("cpu")
    (tmp_path / "full").mkdir()
    (tmp_path / "cut").mkdir()
    full = tt.train_tool(spec, source, source, tmp_path / "full", config, cpu, progress=False)

    interrupt_after_the_last_checkpoint(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        tt.train_tool(spec, source, source, tmp_path / "cut", config, cpu, progress=False)
    assert (tmp_path / "cut" / "tool01.ckpt.pt").exists()
    monkeypatch.undo()
    resumed = tt.train_tool(spec, source, source, tmp_path / "cut", config, cpu, progress=False)
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b)
    # the cut run logged its last iteration after its last checkpoint; the resumed curves hold it once
    cut, whole = (read_scalars(tmp_path / run / "tensorboard" / "tool01") for run in ("cut", "full"))
    assert {tag: [s for s, _ in curve] for tag, curve in cut.items()} == \
        {tag: [s for s, _ in curve] for tag, curve in whole.items()}
    for tag, curve in whole.items():
        assert [v for _, v in cut[tag]] == pytest.approx([v for _, v in curve], rel=1e-5), tag


def test_warm_start_continues_from_the_init_toolbox(tmp_path):
    config = tt.PRESETS["smoke"]
    first = tt.train_toolbox(tmp_path / "a", [4], "builtin", config, progress=False)
    tt.train_toolbox(tmp_path / "b", [4], "builtin", tt.TrainConfig(**{**config.__dict__, "small_iterations": 0}),
                     init=first, progress=False, warm_start=True)
    resumed = Toolbox.load(tmp_path / "b" / "toolbox.pt")
    for a, b in zip(Toolbox.load(first).tools[4].parameters(), resumed.tools[4].parameters()):
        torch.testing.assert_close(a, b)
    assert resumed.metadata["warm_start"] == "toolbox.pt"
    with pytest.raises(ValueError, match="warm_start needs init"):
        tt.train_toolbox(tmp_path / "c", [4], "builtin", config, progress=False, warm_start=True)


@pytest.mark.parametrize("tool", [0, 11])
def test_a_fresh_tool_starts_as_the_identity_unless_asked_otherwise(tmp_path, tool):
    untrained = tt.TrainConfig(**{**tt.PRESETS["smoke"].__dict__, "small_iterations": 0, "large_iterations": 0})
    x = torch.rand(2, 3, 17, 17)
    identity = tt.train_toolbox(tmp_path / "zero", [tool], "builtin", untrained, progress=False)
    torch.testing.assert_close(Toolbox.load(identity).tools[tool](x), x)
    default_init = tt.TrainConfig(**{**untrained.__dict__, "zero_init_output": False})
    plain = tt.train_toolbox(tmp_path / "plain", [tool], "builtin", default_init, progress=False)
    assert not torch.allclose(Toolbox.load(plain).tools[tool](x), x)


def test_parallel_training_gives_the_weights_of_serial_training(tmp_path):
    config = tt.PRESETS["smoke"]
    serial = Toolbox.load(tt.train_toolbox(tmp_path / "serial", [0, 5], "builtin", config, progress=False))
    parallel = Toolbox.load(tt.train_toolbox(tmp_path / "parallel", [0, 5], "builtin", config, progress=False, jobs=2))
    for index in (0, 5):
        for a, b in zip(serial.tools[index].parameters(), parallel.tools[index].parameters()):
            torch.testing.assert_close(a, b)
    rows = list(csv.DictReader((tmp_path / "parallel" / "train_log.csv").open()))
    assert sorted({int(r["tool"]) for r in rows}) == [1, 6]


def test_a_checkpoint_resumes_only_under_its_own_config(tmp_path, monkeypatch):
    config, spec, source = tt.PRESETS["smoke"], TOOL_SPECS[0], BuiltinImages("train")
    interrupt_after_the_last_checkpoint(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        tt.train_tool(spec, source, source, tmp_path, config, torch.device("cpu"), progress=False)
    monkeypatch.undo()
    other = tt.TrainConfig(**{**config.__dict__, "lr": 0.5})
    with pytest.raises(ValueError, match=r"tool01.ckpt.pt: it was trained with another config \(lr: 0.001 there, "
                                         r"0.5 here\)"):
        tt.train_tool(spec, source, source, tmp_path, other, torch.device("cpu"), progress=False)
    longer = tt.TrainConfig(**{**config.__dict__, "small_iterations": config.small_iterations + 2})
    tt.train_tool(spec, source, source, tmp_path, longer, torch.device("cpu"), progress=False)
    assert (tmp_path / "tool01.pt").exists()


def test_the_draw_is_recorded_and_resuming_under_another_draw_is_refused(tmp_path, monkeypatch):
    config, spec, source = tt.PRESETS["smoke"], TOOL_SPECS[1], BuiltinImages("train")
    path = tt.train_toolbox(tmp_path / "done", [1], "builtin", config, progress=False)
    recorded = Toolbox.load(path).metadata["config"]
    assert (recorded["context"], recorded["slight_prob"], recorded["prior_toolbox"]) == ("mdp", 0.15, "v2")
    assert tuple(recorded["level_sums"]) == (9, 20) and recorded["balance_difficulties"] is False
    interrupt_after_the_last_checkpoint(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        tt.train_tool(spec, source, source, tmp_path, config, torch.device("cpu"), progress=False)
    monkeypatch.undo()
    slight = tt.TrainConfig(**{**config.__dict__, "context": "slight"})
    with pytest.raises(ValueError, match=r"another config \(context: 'mdp' there, 'slight' here\)"):
        tt.train_tool(spec, source, source, tmp_path, slight, torch.device("cpu"), progress=False)
    balanced = tt.TrainConfig(**{**config.__dict__, "balance_difficulties": True})
    assert balanced.draw().balance_difficulties
    with pytest.raises(ValueError, match=r"another config \(balance_difficulties: False there, True here\)"):
        tt.train_tool(spec, source, source, tmp_path, balanced, torch.device("cpu"), progress=False)


def test_a_finished_tool_is_reused_only_under_its_own_config(tmp_path):
    config = tt.PRESETS["smoke"]
    tt.train_toolbox(tmp_path, [0], "builtin", config, progress=False)
    finished = (tmp_path / "tool01.pt").read_bytes()
    tt.train_toolbox(tmp_path, [0], "builtin", tt.TrainConfig(**{**config.__dict__, "large_iterations": 9}),
                     progress=False)  # a small tool: the large tools' count is not its own
    assert (tmp_path / "tool01.pt").read_bytes() == finished
    for change, message in [({"lr": 0.5}, r"lr: 0.001 there, 0.5 here"),
                            ({"seed": 1}, r"seed: 0 there, 1 here"),
                            ({"small_iterations": 5}, r"iterations: 3 there, 5 here")]:
        other = tt.TrainConfig(**{**config.__dict__, **change})
        with pytest.raises(ValueError, match=rf"cannot reuse .*tool01.pt: it was trained under another config "
                                             rf"\({message}\); restore that config"):
            tt.train_toolbox(tmp_path, [0], "builtin", other, progress=False)
    assert (tmp_path / "tool01.pt").read_bytes() == finished
    torch.save(Toolbox().tools[0].state_dict(), tmp_path / "tool01.pt")  # as written before the record
    with pytest.raises(ValueError, match=r"tool01.pt holds no record of the config that trained it.*delete it"):
        tt.train_toolbox(tmp_path, [0], "builtin", config, progress=False)


def test_a_run_starts_by_removing_stale_temporaries_and_writes_its_config_atomically(tmp_path, monkeypatch):
    stale, other = tmp_path / ".tool01.ckpt.pt.abcdefgh.tmp", tmp_path / "notes.tmp"
    for path in (stale, other):
        path.write_bytes(b"left by a killed run")
        os.utime(path, (records._started - 60, records._started - 60))
    (tmp_path / "config.json").write_text("{\"earlier\": true}")

    def disk_full(fd):
        raise OSError("disk full")

    monkeypatch.setattr(records.os, "fsync", disk_full)
    with pytest.raises(OSError, match="disk full"):
        tt.train_toolbox(tmp_path, [0], "builtin", tt.PRESETS["smoke"], progress=False)
    assert not stale.exists() and other.exists()
    assert (tmp_path / "config.json").read_text() == "{\"earlier\": true}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "notes.tmp"]


def test_the_psnr_loss_is_minus_the_mean_patch_psnr_and_weighs_patches_alike_in_db():
    clean = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    output = clean.clone()
    output[0] += 0.1  # 20 dB
    output[1] += 0.01  # 40 dB
    assert float(tt.restoration_loss(output, clean, "psnr")) == pytest.approx(-30.0, abs=1e-4)
    assert float(tt.restoration_loss(output, clean, "psnr")) == pytest.approx(
        -float(psnr_batch(output, clean).mean()), abs=1e-4)
    assert float(tt.restoration_loss(output, clean)) == pytest.approx((0.01 + 0.0001) / 2, rel=1e-4)
    # Halving the error of the 40 dB patch gains as much loss as halving the 20 dB patch's; under MSE, 100x less.
    for loss, ratio in (("psnr", 1.0), ("mse", 100.0)):
        gains = []
        for row in (0, 1):
            better = output.clone()
            better[row] = clean[row] + (output[row] - clean[row]) / 2
            gains.append(float(tt.restoration_loss(output, clean, loss) - tt.restoration_loss(better, clean, loss)))
        assert gains[0] / gains[1] == pytest.approx(ratio, rel=1e-3)
    with pytest.raises(ValueError, match="unknown loss 'l1'; choose one of mse, psnr"):
        tt.restoration_loss(output, clean, "l1")
    with pytest.raises(ValueError, match="unknown loss 'l1'"):
        tt.TrainConfig(loss="l1")


def test_the_loss_is_recorded_and_runs_recorded_before_it_resume_as_mse(tmp_path, monkeypatch):
    config, spec, source = tt.PRESETS["smoke"], TOOL_SPECS[0], BuiltinImages("train")
    psnr = tt.TrainConfig(**{**config.__dict__, "loss": "psnr"})
    path = tt.train_toolbox(tmp_path / "done", [0], "builtin", psnr, progress=False)
    assert Toolbox.load(path).metadata["config"]["loss"] == "psnr"
    scalars = read_scalars(tmp_path / "done" / "tensorboard" / "tool01")
    assert "losses/psnr" in scalars and all(value < 0 for _, value in scalars["losses/psnr"])
    interrupt_after_the_last_checkpoint(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        tt.train_tool(spec, source, source, tmp_path, config, torch.device("cpu"), progress=False)
    monkeypatch.undo()
    checkpoint = tmp_path / "tool01.ckpt.pt"
    state = torch.load(checkpoint, weights_only=False)
    del state["config"]["loss"]  # as a run recorded before the option existed
    torch.save(state, checkpoint)
    with pytest.raises(ValueError, match=r"another config \(loss: 'mse' there, 'psnr' here\)"):
        tt.train_tool(spec, source, source, tmp_path, psnr, torch.device("cpu"), progress=False)
    tt.train_tool(spec, source, source, tmp_path, config, torch.device("cpu"), progress=False)
    assert (tmp_path / "tool01.pt").exists()


def test_a_toolbox_is_assembled_from_several_runs_with_its_model_card(tmp_path):
    config = tt.PRESETS["smoke"]
    v2 = tmp_path / "v2.pt"
    Toolbox.pretrained(variant="v2").save(v2)
    tt.train_toolbox(tmp_path / "first", [0, 8], "builtin", config, progress=False, init=v2, warm_start=True)
    later = tt.TrainConfig(**{**config.__dict__, "loss": "psnr"})
    tt.train_toolbox(tmp_path / "second", [8], "builtin", later, progress=False)
    toolbox = tt.assemble_toolbox([tmp_path / "first", tmp_path / "second"], tmp_path / "out.pt", name="test-box")
    loaded = Toolbox.load(tmp_path / "out.pt")
    expected = {0: tmp_path / "first" / "tool01.pt", 8: tmp_path / "second" / "tool09.pt"}
    base = Toolbox.pretrained(variant="v3")  # not the base: tools 2-8 and 10-12 must be v2's
    v2_tools = Toolbox.pretrained(variant="v2")
    for index in range(12):
        want = (torch.load(expected[index], weights_only=True)["state_dict"] if index in expected
                else v2_tools.tools[index].state_dict())
        for name, value in loaded.tools[index].state_dict().items():
            assert torch.equal(value, want[name]), (index, name)
    assert not torch.equal(loaded.tools[1].conv1.weight, base.tools[1].conv1.weight)
    card = loaded.metadata
    assert card == toolbox.metadata and card["name"] == "test-box" and card["base"] == "restore-gym-cpu-v2"
    first, second = card["rounds"]
    assert (first["run"], first["tools"], first["init"], first["warm_start"]) == ("first", [1, 9], "v2.pt", True)
    assert first["config"]["loss"] == "mse" and first["iterations"] == {"1": 3, "9": 3}
    assert (second["tools"], second["config"]["loss"], second["warm_start"]) == ([9], "psnr", False)


def test_assembling_refuses_what_is_not_a_finished_run(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty is not a run folder of restore_gym.train_tools: it has no config"):
        tt.assemble_toolbox([tmp_path / "empty"], tmp_path / "out.pt")
    (tmp_path / "empty" / "config.json").write_text("{}")
    with pytest.raises(ValueError, match=r"empty holds no finished tool \(toolNN.pt\)"):
        tt.assemble_toolbox([tmp_path / "empty"], tmp_path / "out.pt")
    assert not (tmp_path / "out.pt").exists()
    with pytest.raises(SystemExit):
        tt.main(["--assemble", str(tmp_path / "out.pt")])

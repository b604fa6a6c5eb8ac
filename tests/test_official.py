import hashlib
import json
import shutil

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import REFERENCE, sample_batches

from restore_gym import official_import
from restore_gym.evaluation import main as evaluate_main
from restore_gym.lstm_dqn import LSTMDQNPolicy, greedy_chain
from restore_gym.metrics import psnr_batch
from restore_gym.official import converted_file, official_dir
from restore_gym.tf_checkpoint import CheckpointError
from restore_gym.toolbox import Toolbox


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RESTORE_GYM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def converted(official, cache):
    return official_import.import_official(official)


def _sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_conversion_records_sources_outputs_licence_and_layout(official, converted, cache):
    folder = cache / "official"
    assert official_dir() == folder
    assert {p.name for p in folder.iterdir()} == {"MANIFEST.json", "toolbox.pt", "agent.pt"}
    manifest = json.loads((folder / "MANIFEST.json").read_text())
    assert manifest["copyright"] == "Copyright (c) 2018 Ke YU" and manifest["licence"] == "MIT License"
    assert "transposed" in manifest["layout"]
    assert len(manifest["sources"]["toolbox"]) == 24 and len(manifest["sources"]["agent"]) == 2
    assert manifest["sources"]["toolbox"]["toolbox/tool07.index"]["sha256"] == _sha256(official / "toolbox" /
                                                                                          "tool07.index")
    assert manifest["sources"]["agent"]["agent/model.index"]["sha256"] == _sha256(official / "models" / "model.index")
    for name in ("toolbox.pt", "agent.pt"):
        assert manifest["converted"][name] == _sha256(folder / name)
    assert converted["changed"]


def test_a_second_import_of_the_same_release_changes_nothing(official, converted, cache):
    stamps = {p.name: p.stat().st_mtime_ns for p in (cache / "official").iterdir()}
    again = official_import.import_official(official)
    assert not again["changed"]
    assert {p.name: p.stat().st_mtime_ns for p in (cache / "official").iterdir()} == stamps


def test_a_release_of_one_part_converts_that_part(official, cache):
    manifest = official_import.import_official(official / "toolbox")
    assert set(manifest["converted"]) == {"toolbox.pt"}
    with pytest.raises(FileNotFoundError, match="the authors' agent is not converted.*import-official DIR"):
        LSTMDQNPolicy.resolve("official")


def test_official_through_gym_make_reproduces_the_reference_single_tool_psnrs(official, converted):
    env = gym.make("RLRestore-v0", toolbox="official")
    inputs, targets = sample_batches(official)
    for row, (key, (_, _, _, reference_tools)) in enumerate(REFERENCE.items()):
        for tool in range(12):
            env.reset(options={"degraded": inputs[row].permute(1, 2, 0).numpy(),
                               "clean": targets[row].permute(1, 2, 0).numpy()})
            _, _, _, _, info = env.step(tool)
            assert abs(info["psnr"] - reference_tools[tool]) < 0.01, (key, tool + 1)


def test_the_official_agent_by_name_reproduces_its_reference_chains(official, converted):
    policy, toolbox = LSTMDQNPolicy.resolve("official"), Toolbox.resolve("official")
    inputs, targets = sample_batches(official)
    chains, images = greedy_chain(policy.network, toolbox, inputs)
    final = psnr_batch(images[-1], targets)
    for row, (key, (_, chain, psnr_out, _)) in enumerate(REFERENCE.items()):
        assert [t + 1 for t in chains[row]] == chain and abs(float(final[row]) - psnr_out) < 0.01, key


def test_evaluate_takes_the_official_agent_and_toolbox_by_name(converted, capsys):
    assert evaluate_main(["--agent", "official", "--toolbox", "official", "--difficulty", "mild",
                          "--max-patches", "3"]) == 0
    assert "official on mild" in capsys.readouterr().out


def test_a_missing_conversion_says_which_command_to_run(cache):
    for name in ("toolbox", "agent"):
        with pytest.raises(FileNotFoundError, match=r"not converted.*python -m restore_gym import-official DIR"):
            converted_file(name)
    with pytest.raises(FileNotFoundError, match="import-official"):
        gym.make("RLRestore-v0", toolbox="official")


def test_a_damaged_conversion_is_refused(converted, cache):
    path = cache / "official" / "toolbox.pt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="differs from what .*MANIFEST.json records.*import-official"):
        Toolbox.resolve("official")
    (cache / "official" / "MANIFEST.json").write_text("{not json")
    with pytest.raises(ValueError, match="MANIFEST.json is damaged"):
        LSTMDQNPolicy.resolve("official")


def test_an_incomplete_or_damaged_release_is_refused_naming_the_file(official, tmp_path, cache):
    release = tmp_path / "release"
    shutil.copytree(official / "toolbox", release / "toolbox")
    (release / "toolbox" / "tool07.index").unlink()
    with pytest.raises(FileNotFoundError, match="lacks tool07.index"):
        official_import.import_official(release)
    shutil.copy(official / "toolbox" / "tool07.index", release / "toolbox" / "tool07.index")
    data = release / "toolbox" / "tool03.data-00000-of-00001"
    damaged = bytearray(data.read_bytes())
    damaged[100] ^= 0xFF
    data.write_bytes(bytes(damaged))
    with pytest.raises(CheckpointError, match="tool03"):
        official_import.import_official(release)
    with pytest.raises(FileNotFoundError, match="holds neither the tools"):
        official_import.import_official(tmp_path)
    assert not (cache / "official").exists()


def test_the_converted_weights_equal_a_direct_import(official, converted):
    direct = Toolbox.from_official(official / "toolbox")
    for a, b in zip(Toolbox.resolve("official").state_dict().values(), direct.state_dict().values()):
        assert torch.equal(a, b)
    x = torch.rand(2, 3, 63, 63)
    np.testing.assert_array_equal(LSTMDQNPolicy.resolve("official").network(x, torch.zeros(2, 12))[0].detach(),
                                  LSTMDQNPolicy.from_official(official / "models").network(x, torch.zeros(2, 12))[0]
                                  .detach())

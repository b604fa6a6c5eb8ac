import os
import warnings

import numpy as np
import pytest
import torch

from restore_gym import records
from restore_gym.resumable import (
    TrainingLog,
    check_checkpoint,
    check_config,
    config_changes,
    restore_rngs,
    rng_states,
    start_run,
)

COLUMNS = ("step", "loss")


def test_a_run_folder_is_prepared_and_its_checkpoint_guarded(tmp_path):
    with pytest.raises(FileNotFoundError, match="cannot resume: there is no .*run/checkpoint.pt"):
        start_run(tmp_path / "run", "checkpoint.pt", resume=True)
    assert not (tmp_path / "run").exists()
    assert start_run(tmp_path / "run", "checkpoint.pt", resume=False) == tmp_path / "run" / "checkpoint.pt"
    stale = tmp_path / "run" / ".checkpoint.pt.abcdefgh.tmp"
    stale.write_bytes(b"left by a killed run")
    os.utime(stale, (records._started - 60, records._started - 60))
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"a checkpoint")
    with pytest.raises(FileExistsError, match="checkpoint.pt exists: resume it or choose another output folder"):
        start_run(tmp_path / "run", "checkpoint.pt", resume=False)
    assert stale.exists()  # nothing is touched before the checks pass
    start_run(tmp_path / "run", "checkpoint.pt", resume=True)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["checkpoint.pt"]


def test_a_config_check_names_every_change_but_the_growable_fields(tmp_path):
    saved, path = {"lr": 0.1, "steps": 10, "seed": 0}, tmp_path / "checkpoint.pt"
    check_config(saved, {**saved, "steps": 20}, path, ("steps",))
    assert config_changes(saved, {"lr": 0.2, "steps": 20, "seed": 0, "new": 1}, ("steps",)) == [
        "lr: 0.1 there, 0.2 here", "new: None there, 1 here"]
    message = (f"cannot resume {path}: it was trained with another config (lr: 0.1 there, 0.2 here; seed: 0 there, "
               "1 here); only steps may change: restore that config, or delete it")
    with pytest.raises(ValueError) as error:
        check_config(saved, {"lr": 0.2, "steps": 10, "seed": 1}, path, ("steps",), "delete it")
    assert str(error.value) == message
    with pytest.raises(ValueError, match=r"\(steps: 10 there, 20 here\); nothing may change: restore that config, "
                                         "or train in another output folder"):
        check_config(saved, {**saved, "steps": 20}, path)


def test_a_checkpoint_must_hold_its_keys(tmp_path):
    check_checkpoint({"a": 1, "b": 2}, {"a"}, tmp_path, "hint")
    with pytest.raises(KeyError, match=r"is not a training checkpoint \(no b, c\); a network file cannot be resumed"):
        check_checkpoint({"a": 1}, {"a", "b", "c"}, tmp_path, "a network file cannot be resumed", KeyError)
    with pytest.raises(ValueError, match=r"\(no a\)"):
        check_checkpoint(torch.zeros(2), {"a"}, tmp_path, "hint")


def test_random_states_are_restored_under_their_keys():
    rng = np.random.default_rng(3)
    states = rng_states(rng)
    assert set(states) == {"numpy", "torch", "cuda"}
    expected = (rng.random(4), torch.rand(4))
    restore_rngs(states, rng)
    np.testing.assert_array_equal(rng.random(4), expected[0])
    assert torch.equal(torch.rand(4), expected[1])

    flat = rng_states(rng, ("numpy",), suffix="_rng")
    assert set(flat) == {"numpy_rng"}
    drawn, torch_drawn = rng.random(2), torch.rand(2)
    restore_rngs(flat, rng, suffix="_rng")  # torch's generator is left where it is
    np.testing.assert_array_equal(rng.random(2), drawn)
    assert not torch.equal(torch.rand(2), torch_drawn)
    with pytest.raises(ValueError, match="unknown random streams \\['python'\\]"):
        rng_states(rng, ("python",))


def test_a_log_is_created_appended_and_rewritten_whole(tmp_path):
    log = TrainingLog(tmp_path / "log.csv", COLUMNS)
    log.append({"step": 1, "loss": "0.5"})  # creates the log first
    log.append({"step": 2, "loss": "0.25"})
    assert (tmp_path / "log.csv").read_text() == "step,loss\n1,0.5\n2,0.25\n"
    log.create()  # an existing log is kept
    assert (tmp_path / "log.csv").read_text().count("\n") == 3
    log.create(replace=True)
    assert (tmp_path / "log.csv").read_text() == "step,loss\n"
    log.write([{"step": 4, "loss": 1}])
    assert (tmp_path / "log.csv").read_text() == "step,loss\n4,1\n"
    windows = TrainingLog(tmp_path / "tools.csv", COLUMNS, line_end="\r\n")
    windows.append({"step": 1, "loss": 2})
    assert (tmp_path / "tools.csv").read_bytes() == b"step,loss\r\n1,2\r\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.csv", "tools.csv"]  # no temp file left


def test_a_row_after_a_torn_line_stands_on_its_own_line(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("step,loss\n1,0.5\n2,0.2")  # killed in the middle of a row
    TrainingLog(path, COLUMNS).append({"step": 3, "loss": "0.1"})
    assert path.read_text() == "step,loss\n1,0.5\n2,0.2\n3,0.1\n"


@pytest.mark.parametrize(("content", "line"), [
    ("1,0.5\n2,0.25\ngarbage\n3,0.2\n", 4), ("1,0.5\n2,0.25\n\n3,0.2\n", 4),
    ("1,0.5\n2,0.25\n4,0.1,extra\n", 4), ("1,0.5\nx,0.3\n2,0.25\n", 3), ("1,0.5\n2,0.25\n3,0.2\n2,0", 5),
])
def test_truncating_drops_later_rows_and_damaged_lines_with_a_warning(tmp_path, content, line):
    path = tmp_path / "log.csv"
    path.write_text("step,loss\n" + content)
    with pytest.warns(UserWarning, match=rf"training log {path} has damaged lines \(line {line}: not rows of step, "
                                         r"loss\); dropping them"):
        TrainingLog(path, COLUMNS).truncate(2)
    assert path.read_text() == "step,loss\n1,0.5\n2,0.25\n"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TrainingLog(path, COLUMNS).truncate(1)
        TrainingLog(tmp_path / "absent.csv", COLUMNS).truncate(1)
    assert path.read_text() == "step,loss\n1,0.5\n"
    assert (tmp_path / "absent.csv").read_text() == "step,loss\n"

"""Fault injection: tool trainings killed at random points, and damaged copies of every kind of file the library
reads (toolbox, tool checkpoints and finished tools, the test-set cache, the corpus manifest). A kill must not
change the weights a run ends with; a damaged file must give an error naming it, or a rebuild with a warning.

The library reads no ``config.json`` (the tool training only writes one), so there is none to damage here.
"""

import json
import multiprocessing
import os
import random
import signal
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from PIL import Image

import restore_gym  # noqa: F401  (registers the environments)
from restore_gym import records
from restore_gym import train_tools as tt
from restore_gym.corpus import MANIFEST, default_out_dir
from restore_gym.data import BuiltinImages, cache_dir, load_test_set
from restore_gym.sources import resolve_source
from restore_gym.toolbox import TOOL_SPECS, Toolbox

CONFIG = tt.PRESETS["smoke"]
TOOLS = [0, 2]  # a small and a large tool


class Killed(BaseException):
    """A kill in the middle of a write: no ``except Exception`` handler catches it."""


def flip(path: Path, count: int = 2000) -> None:
    """Invert ``count`` bytes in the middle of ``path`` (all of them if it is shorter)."""
    data = bytearray(path.read_bytes())
    start = max(0, len(data) // 2 - count // 2)
    data[start:start + count] = bytes(b ^ 0xFF for b in data[start:start + count])
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGE = {"flipped": flip, "truncated": truncate}


def assert_same_trained_tools(a: Toolbox, b: Toolbox) -> None:
    for index in TOOLS:  # the others are initialised afresh in every run
        for (name, x), y in zip(a.tools[index].state_dict().items(), b.tools[index].state_dict().values()):
            assert torch.equal(x, y), f"tool {index + 1}: {name}"


def temporaries(folder: Path) -> set[str]:
    return {path.name for path in folder.glob(".*.tmp")}


def run_killed_in_write(out: Path, write: int | None) -> tuple[bool, set[str]]:
    """Run the training in a forked process, SIGKILLed as soon as its ``write``-th atomic write is seen under way
    (never if None); whether it was killed, and the temp files it left."""
    earlier = temporaries(out)  # a killed run's leftovers, until this run removes them
    child = multiprocessing.get_context("fork").Process(target=tt.train_toolbox, args=(out, TOOLS, "builtin", CONFIG),
                                                        kwargs={"progress": False})
    child.start()
    seen: set[str] = set()
    while write is not None and child.is_alive() and len(seen) < write:
        seen |= temporaries(out) - earlier
        time.sleep(0.0002)
    if write is not None and child.is_alive():
        os.kill(child.pid, signal.SIGKILL)
    child.join()
    assert child.exitcode in (0, -signal.SIGKILL)
    return child.exitcode != 0, temporaries(out)


def test_a_training_killed_at_random_points_ends_with_the_weights_of_an_uninterrupted_run(tmp_path):
    uninterrupted = Toolbox.load(tt.train_toolbox(tmp_path / "uninterrupted", TOOLS, "builtin", CONFIG, progress=False))
    run, rng = tmp_path / "killed", random.Random(24)
    kills, left = 0, set()
    while kills < 4:  # each run is killed in one of its first writes (config.json, checkpoints, weights)
        killed, leftovers = run_killed_in_write(run, rng.randrange(1, 5))
        if not killed:
            break
        kills, left = kills + 1, left | leftovers
    else:
        assert not run_killed_in_write(run, None)[0]
    assert kills >= 2 and left  # killed mid-write: partial temp files were left
    assert_same_trained_tools(Toolbox.load(run / "toolbox.pt"), uninterrupted)
    assert not temporaries(run) and not list(run.glob("*.ckpt.pt"))  # the last run removed the leftovers


def dying_save(after: int):
    """``torch.save`` that writes ``after - 1`` files, then half of one before it is killed."""
    real_save, left = torch.save, [after]

    def save(obj, handle):
        left[0] -= 1
        if left[0] == 0:
            handle.write(b"PK\x03\x04 half a file")
            raise Killed
        real_save(obj, handle)

    return save


# ------------------------------------------------------------------------------------------- damaged files


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_toolbox_is_an_error_naming_it(tmp_path, damage):
    path = tmp_path / "toolbox.pt"
    Toolbox().save(path)
    DAMAGE[damage](path)
    message = {"flipped": r"toolbox.pt is damaged: archive member '.*' fails its CRC check.*restore it",
               "truncated": r"toolbox.pt is not a readable toolbox file .*restore it"}[damage]
    with pytest.raises(ValueError, match=message):
        Toolbox.load(path)
    with pytest.raises(ValueError, match=message):
        gym.make("RLRestore-v0", toolbox=str(path))


def test_a_toolbox_with_2000_flipped_bytes_no_longer_loads(tmp_path):
    # The case: the shipped toolbox with 2,000 bytes flipped in the middle loaded, one weight off by 1e4.
    path = tmp_path / "toolbox.pt"
    path.write_bytes((records.WEIGHTS_DIR / "toolbox.pt").read_bytes())
    flip(path)
    with pytest.raises(ValueError, match=r"toolbox.pt is damaged: archive member .* fails its CRC check"):
        Toolbox.load(path)


@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("file", ["tool01.ckpt.pt", "tool01.pt"])
def test_a_damaged_tool_checkpoint_or_finished_tool_is_an_error_naming_it(tmp_path, monkeypatch, file, damage):
    spec, source, cpu = TOOL_SPECS[0], BuiltinImages("train"), torch.device("cpu")
    if file.endswith(".ckpt.pt"):  # killed where the final weights would be written: the checkpoint stays
        monkeypatch.setattr(torch, "save", dying_save(CONFIG.small_iterations))
        with pytest.raises(Killed):
            tt.train_tool(spec, source, source, tmp_path, CONFIG, cpu, progress=False)
        monkeypatch.undo()
    else:
        tt.train_tool(spec, source, source, tmp_path, CONFIG, cpu, progress=False)
    DAMAGE[damage](tmp_path / file)
    with pytest.raises(ValueError, match=rf"{file.replace('.', '[.]')} (is damaged|is not a readable).*delete it to "
                                         "train the tool anew"):
        tt.train_tool(spec, source, source, tmp_path, CONFIG, cpu, progress=False)


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_test_set_cache_is_rebuilt_with_a_warning_naming_it(tmp_path, monkeypatch, damage):
    monkeypatch.setenv("RESTORE_GYM_CACHE", str(tmp_path))
    first = load_test_set("mild")
    cached = next((cache_dir() / "testsets").glob("*mild*.npz"))
    DAMAGE[damage](cached)
    with pytest.warns(UserWarning, match=rf"cached mild test set {cached} is damaged \(BadZipFile: .*rebuilding it"):
        rebuilt = load_test_set("mild")
    assert rebuilt.digest == first.digest and rebuilt.digest_matches
    np.testing.assert_array_equal(load_test_set("mild").degraded, first.degraded)  # the cache is sound again


def test_a_damaged_corpus_manifest_is_an_error_naming_it(tmp_path, monkeypatch):
    monkeypatch.setenv("RESTORE_GYM_CACHE", str(tmp_path))
    corpus = default_out_dir()
    corpus.mkdir()
    for i in range(3):
        pixels = np.random.default_rng(i).integers(0, 256, (100, 100, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(corpus / f"photo{i}.png")
    (corpus / MANIFEST).write_text(json.dumps({"images": [{"file": f"photo{i}.png"} for i in range(3)]}))
    assert len(resolve_source("corpus", "train").images()) == 2
    flip(corpus / MANIFEST, 8)
    with pytest.raises(FileNotFoundError, match=rf"{corpus / MANIFEST} is not a readable corpus manifest"):
        resolve_source("corpus", "train")

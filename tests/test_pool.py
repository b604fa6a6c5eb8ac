import gymnasium as gym
import numpy as np
import pytest

from restore_gym import pool as pool_module
from restore_gym.data import BuiltinImages
from restore_gym.engine import PatchSupply
from restore_gym.pool import PatchPool, load_pool


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RESTORE_GYM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_each_pool_patch_is_the_fresh_draw_of_its_generator(cache):
    source = BuiltinImages("train")
    pool = load_pool(source, "moderate", size=20, seed=3, jobs=1, progress=False)
    assert len(pool) == 20
    for k in (0, 7, 19):
        fresh = source.sample_patch("moderate", np.random.default_rng([3, k]))
        row = pool.patch(k)
        np.testing.assert_array_equal(row.degraded, fresh.degraded)
        np.testing.assert_array_equal(row.clean, fresh.clean)
        assert row.degraded.dtype == np.float32 and row.params == fresh.params
        assert (row.image_id, row.scale, row.top, row.left) == (fresh.image_id, fresh.scale, fresh.top, fresh.left)


def test_a_pool_is_built_once_and_the_same_with_worker_processes(cache, monkeypatch):
    monkeypatch.setattr(pool_module, "CHUNK", 8)
    source = BuiltinImages("train")
    serial = load_pool(source, "mild", size=20, seed=0, jobs=1, progress=False)
    folders = list((cache / "pools").iterdir())
    assert folders == [serial.folder]
    built = []
    monkeypatch.setattr(pool_module, "build_pool", lambda *a, **k: built.append(1))
    again = load_pool(source, "mild", size=20, seed=0, progress=False)
    assert not built and again.meta == serial.meta
    monkeypatch.undo()
    monkeypatch.setattr(pool_module, "CHUNK", 8)
    parallel_folder = cache / "other"
    parallel = pool_module.build_pool(source, "mild", 20, 0, parallel_folder, jobs=2, source_spec="builtin",
                                      progress=False)
    for name in pool_module._ARRAYS:
        np.testing.assert_array_equal(parallel.arrays[name], serial.arrays[name])
    assert parallel.meta["digest"] == serial.meta["digest"]


def test_other_parameters_are_other_pools(cache):
    source = BuiltinImages("train")
    a = load_pool(source, "mild", size=4, seed=0, jobs=1, progress=False)
    b = load_pool(source, "mild", size=4, seed=1, jobs=1, progress=False)
    c = load_pool(source, "severe", size=4, seed=0, jobs=1, progress=False)
    assert len({a.folder, b.folder, c.folder}) == 3
    assert not np.array_equal(a.arrays["degraded"], b.arrays["degraded"])


def test_a_damaged_pool_is_rebuilt_with_a_warning_naming_it(cache):
    source = BuiltinImages("train")
    pool = load_pool(source, "moderate", size=6, seed=0, jobs=1, progress=False)
    digest = pool.meta["digest"]
    path = pool.folder / "degraded.npy"
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match=f"patch pool {pool.folder} is damaged"):
        rebuilt = load_pool(source, "moderate", size=6, seed=0, jobs=1, progress=False)
    assert rebuilt.meta["digest"] == digest
    (rebuilt.folder / "pool.json").write_text("{")
    with pytest.warns(UserWarning, match="is damaged"):
        load_pool(source, "moderate", size=6, seed=0, jobs=1, progress=False)


def test_the_environment_samples_the_pool_with_its_np_random(cache):
    env = gym.make("RLRestore-v0", patches="pool", pool_size=8, pool_seed=1)
    pool = env.unwrapped.supply.pool
    assert isinstance(pool, PatchPool) and len(pool) == 8
    rows = [pool.patch(k).degraded for k in range(8)]
    seen = []
    for seed in (0, 0, 5):
        _, info = env.reset(seed=seed)
        image = env.unwrapped.batch.inputs[0].permute(1, 2, 0).numpy()
        seen.append(next(k for k, row in enumerate(rows) if np.array_equal(row, image)))
        assert info["degradation"]["levels"] == list(pool.patch(seen[-1]).params.levels)
    assert seen[0] == seen[1]
    vec = gym.make_vec("RLRestore-v0", num_envs=2, patches="pool", pool_size=8, pool_seed=1)
    vec.reset(seed=0)
    np.testing.assert_array_equal(vec.unwrapped.batch.inputs[0].permute(1, 2, 0).numpy(), rows[seen[0]])


@pytest.mark.parametrize("kwargs, error, match", [
    ({"patches": "hdf5"}, ValueError, "unknown patches='hdf5'"),
    ({"patches": "pool", "split": "test"}, ValueError, "is for the train split"),
    ({"patches": "pool", "pool_size": 0}, ValueError, "pool_size must be a positive integer"),
    ({"patches": "pool", "pool_size": 2.5}, ValueError, "pool_size must be a positive integer"),
])
def test_bad_pool_arguments_are_refused(cache, kwargs, error, match):
    with pytest.raises(error, match=match):
        PatchSupply("builtin", kwargs.pop("split", "train"), "moderate", **kwargs)


import hashlib
import warnings

import numpy as np
import pytest
from conftest import write_decompression_bomb
from PIL import Image

from restore_gym import data
from restore_gym.data import BuiltinImages, FolderImages, TestSetDigestWarning, folder_split, load_test_set
from restore_gym.degrade import allowed_triples


def pixels_hash(image: np.ndarray) -> str:
    return hashlib.sha256(image.tobytes()).hexdigest()


def write_image(path, size=(120, 140), mode="RGB", seed=0):
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    array = rng.integers(0, 256, (size[0], size[1], channels), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.squeeze(-1) if channels == 1 else array, mode=mode).save(path)
    return array


def test_builtin_splits_never_share_an_image():
    train, test = BuiltinImages("train").images(), BuiltinImages("test").images()
    assert {i for i, _ in train}.isdisjoint({i for i, _ in test})
    assert {pixels_hash(a) for _, a in train}.isdisjoint({pixels_hash(a) for _, a in test})
    for _, image in train + test:
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


def test_scales_and_patch_grid():
    source = BuiltinImages("test")
    scales = {(i, s) for i, s, _ in source.scaled_images()}
    assert {s for _, s in scales} == set(data.SCALES)
    for index, top, left in source.grid_positions():
        image = source.scaled_images()[index][2]
        assert top >= data.MARGIN and left >= data.MARGIN
        assert top + 63 + data.MARGIN <= image.shape[0] and left + 63 + data.MARGIN <= image.shape[1]
        assert (top - data.MARGIN) % 63 == 0 and (left - data.MARGIN) % 63 == 0


def test_sample_patch_is_deterministic_and_in_range():
    source = BuiltinImages("train")
    a = source.sample_patch("moderate", np.random.default_rng(3))
    b = source.sample_patch("moderate", np.random.default_rng(3))
    assert a.degraded.tobytes() == b.degraded.tobytes() and a.params == b.params
    assert a.degraded.shape == a.clean.shape == (63, 63, 3)
    assert a.degraded.dtype == np.float32 and a.degraded.min() >= 0 and a.degraded.max() <= 1


def test_folder_split_is_disjoint_deterministic_and_stable():
    paths = [f"img{i:03d}.png" for i in range(40)]
    split = folder_split(paths, 0.1)
    assert set(split["train"]).isdisjoint(split["test"])
    assert set(split["train"]) | set(split["test"]) == set(paths)
    assert len(split["test"]) == 4
    assert folder_split(list(reversed(paths)), 0.1) == split
    grown = folder_split(paths + ["zzz_new.png"], 0.1)
    assert set(split["train"]) - {p for p in grown["test"]} <= set(grown["train"])


def test_folder_images_recursive_with_grayscale_and_alpha(tmp_path):
    for i in range(6):
        write_image(tmp_path / f"sub{i % 2}" / f"rgb{i}.png", seed=i)
    gray = write_image(tmp_path / "deep" / "er" / "gray.png", mode="L", seed=10)
    write_image(tmp_path / "alpha.png", mode="RGBA", seed=11)
    Image.fromarray(write_image(tmp_path / "x.png", seed=12)).save(tmp_path / "x.jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    train, test = FolderImages(tmp_path, "train"), FolderImages(tmp_path, "test")
    everything = train.files + test.files
    assert len(everything) == 10 and set(train.files).isdisjoint(test.files)
    loaded = dict(train.images() + test.images())
    assert all(a.shape[2] == 3 for a in loaded.values())
    np.testing.assert_array_equal(loaded["deep/er/gray.png"][..., 1], gray[..., 0])
    assert train.sample_patch("mild", np.random.default_rng(0)).degraded.shape == (63, 63, 3)


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        FolderImages(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        FolderImages(tmp_path / "empty")
    small = tmp_path / "small"
    for i in range(4):
        write_image(small / f"s{i}.png", size=(40 + i, 70), seed=i)
    source = FolderImages(small, "train")
    with pytest.raises(ValueError, match=r"small.*too small.*largest short side is 4\d px.*at least 95x95"):
        source.images()


def test_truncated_files_are_skipped_with_a_warning_naming_them(tmp_path):
    for i in range(4):
        write_image(tmp_path / f"ok{i}.png", seed=i)
    good = (tmp_path / "ok0.png").read_bytes()
    for i in range(4):
        (tmp_path / f"broken{i}.png").write_bytes(good[: len(good) // 3])
    sources = [FolderImages(tmp_path, split) for split in ("train", "test")]
    broken = [f for s in sources for f in s.files if f.startswith("broken")]
    with pytest.warns(UserWarning, match=r"unreadable or truncated.*broken"):
        loaded = [name for s in sources for name, _ in s.images()]
    assert not set(broken) & set(loaded)


def test_a_decompression_bomb_is_skipped_with_a_warning_naming_it(tmp_path):
    for i in range(4):
        write_image(tmp_path / f"ok{i}.png", seed=i)
    write_decompression_bomb(tmp_path / "bomb.png")
    sources = [FolderImages(tmp_path, split) for split in ("train", "test")]
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable or truncated image\(s\).*bomb.png \(Image size "
                                         r"\(400000000 pixels\) exceeds limit"):
        loaded = [name for s in sources for name, _ in s.images()]
    assert sorted(loaded) == [f"ok{i}.png" for i in range(4)]


def test_bad_split_and_generator():
    with pytest.raises(ValueError, match="unknown split 'val'"):
        BuiltinImages("val")
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        BuiltinImages("train").sample_patch("mild", 42)
    with pytest.raises(ValueError, match="unknown difficulty"):
        load_test_set("extreme")


@pytest.mark.parametrize("difficulty", ["mild", "moderate", "severe"])
def test_frozen_test_sets_match_their_recorded_digests(difficulty):
    with warnings.catch_warnings():
        warnings.simplefilter("error", TestSetDigestWarning)
        ts = load_test_set(difficulty)
    assert ts.digest_matches and ts.digest == data.expected_digests()[difficulty]
    assert ts.degraded.shape == ts.clean.shape == (len(ts), 63, 63, 3) and len(ts) > 100
    assert ts.degraded.dtype == ts.clean.dtype == np.float32
    assert ts.degraded.min() >= 0.0 and ts.degraded.max() <= 1.0
    assert len(ts.params) == len(ts) and len({p.levels for p in ts.params}) > 10
    assert {p.levels for p in ts.params} <= set(allowed_triples(difficulty))


def test_test_set_is_rebuilt_identically_and_cache_is_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("RESTORE_GYM_CACHE", str(tmp_path))
    first = load_test_set("mild")
    cached = next((tmp_path / "testsets").glob("*mild*.npz"))
    second = load_test_set("mild")
    np.testing.assert_array_equal(first.degraded, second.degraded)
    assert first.params == second.params and first.sources == second.sources
    cached.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match=rf"cached mild test set {cached} is damaged .*rebuilding it"):
        assert load_test_set("mild").digest == first.digest
    assert not list((tmp_path / "testsets").glob("*.tmp"))


def test_digest_mismatch_warns_loudly(monkeypatch):
    monkeypatch.setattr(data, "expected_digests", lambda: {"severe": "0" * 64})
    with pytest.warns(TestSetDigestWarning, match="not the recorded 0000"):
        ts = load_test_set("severe")
    assert not ts.digest_matches and ts.expected_digest == "0" * 64

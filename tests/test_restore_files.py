"""``restore-gym restore``: outputs, records, references, and every kind of bad input (restore_gym.restore_files)."""

import json

import numpy as np
import pytest
from PIL import Image

from restore_gym import cli, image_io
from restore_gym.metrics import psnr_ssim

RNG = np.random.default_rng(0)


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    clean = RNG.integers(0, 256, (70, 90, 3), dtype=np.uint8)
    noisy = np.clip(clean + RNG.normal(0, 20, clean.shape), 0, 255).astype(np.uint8)
    Image.fromarray(noisy).save(folder / "noisy.png")
    Image.fromarray(clean).save(folder / "clean.png")
    Image.fromarray(noisy[..., 0]).save(folder / "gray.jpg", quality=90)
    return folder


def run(*args: str) -> int:
    return cli.main(["restore", *args, "--no-progress"])


def test_restores_each_input_with_its_record(photos, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(str(photos / "noisy.png"), str(photos / "gray.jpg"), "--out", str(out), "--mode", "tiles") == 0
    record = json.loads((out / "noisy.json").read_text())
    assert record["mode"] == "tiles" and record["size"] == [70, 90] and record["agent"] == {"name": "shipped"}
    assert len(record["toolbox"]["fingerprint"]) == 64 and record["tiles"]["patches"] == 2 * 2
    assert record["input_form"] == {"grayscale": False, "alpha": False, "bit_depth": 8, "exif_orientation": 1}
    with Image.open(out / "noisy.png") as restored, Image.open(out / "gray.png") as gray:
        assert restored.mode == "RGB" and restored.size == (90, 70)
        assert gray.mode == "L" and gray.size == (90, 70)
    assert "noisy.png -> noisy.png (tiles" in capsys.readouterr().out


def test_vote_mode_with_a_reference_and_a_side_by_side(photos, tmp_path):
    out = tmp_path / "out"
    assert run(str(photos / "noisy.png"), "--out", str(out), "--reference",
               str(photos / "clean.png"), "--side-by-side") == 0
    record = json.loads((out / "noisy.json").read_text())
    assert record["vote"]["grid"] == [1, 1] and 1 <= len(record["vote"]["steps"]) <= 3
    written = image_io.read_photo(out / "noisy.png").rgb
    clean = image_io.read_photo(photos / "clean.png").rgb
    assert record["reference"]["psnr"] == pytest.approx(psnr_ssim(written, clean)[0])
    assert record["reference"]["psnr_input"] < 30
    with Image.open(out / "noisy-side-by-side.png") as side:
        assert side.size == (3 * 90 + 2 * 8, 70)


def test_bad_inputs_are_named_and_skipped_and_the_others_restored(photos, tmp_path, capsys):
    data = (photos / "noisy.png").read_bytes()
    (photos / "truncated.png").write_bytes(data[: len(data) // 2])
    (photos / "text.png").write_text("not an image")
    Image.fromarray(RNG.integers(0, 256, (40, 90, 3), dtype=np.uint8)).save(photos / "small.png")
    out = tmp_path / "out"
    names = ("truncated.png", "text.png", "small.png", "noisy.png")
    assert run(*(str(photos / n) for n in names), "--out", str(out)) == 1
    err = capsys.readouterr().err
    assert "skipped" in err and all(n in err for n in names[:3]) and "smaller than one 63x63 patch" in err
    assert sorted(p.name for p in out.iterdir()) == ["noisy.json", "noisy.png"]


def test_a_reference_of_another_size_is_refused(photos, tmp_path, capsys):
    Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(photos / "other.png")
    assert run(str(photos / "noisy.png"), "--out", str(tmp_path / "o"), "--reference", str(photos / "other.png")) == 1
    assert "is 64x64 pixels but the input is 70x90" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["overwrite", "same name", "references"])
def test_plans_that_would_lose_files_are_refused_before_anything_runs(photos, tmp_path, capsys, case):
    before = (photos / "noisy.png").read_bytes()
    args = {"overwrite": [str(photos / "noisy.png"), "--out", str(photos)],
            "same name": [str(photos / "gray.jpg"), str(tmp_path / "gray.png"), "--out", str(tmp_path / "o")],
            "references": [str(photos / "noisy.png"), "--out", str(tmp_path / "o"), "--reference", "a", "--reference",
                           "b"]}[case]
    with pytest.raises(SystemExit) as stop:
        run(*args)
    assert stop.value.code == 2
    message = capsys.readouterr().err
    assert {"overwrite": "would overwrite the input", "same name": "separate --out folders",
            "references": "one clean image per input"}[case] in message
    assert (photos / "noisy.png").read_bytes() == before


def test_an_interrupted_write_leaves_the_earlier_output_whole(photos, tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert run(str(photos / "noisy.png"), "--out", str(out)) == 0
    before = (out / "noisy.png").read_bytes()

    def broken_save(self, handle, **kwargs):
        handle.write(b"half a PNG")
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        run(str(photos / "noisy.png"), "--out", str(out))
    assert (out / "noisy.png").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["noisy.json", "noisy.png"]  # no temp file left


def test_an_unknown_agent_is_a_usage_error(photos, tmp_path, capsys):
    with pytest.raises(SystemExit):
        run(str(photos / "noisy.png"), "--out", str(tmp_path / "o"), "--agent", str(tmp_path / "none.pt"))
    assert "does not exist" in capsys.readouterr().err

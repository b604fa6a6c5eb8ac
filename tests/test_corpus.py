"""Tests of restore_gym.corpus that need neither apt nor the network: fake unpacked packages in tmp_path."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from conftest import write_decompression_bomb
from PIL import Image

from restore_gym import corpus
from restore_gym.corpus import (
    CorpusError,
    ExtractedPackage,
    PackageSource,
    blockiness,
    build_corpus,
    content_problem,
    downscale,
    fingerprint,
    held_out_fingerprints,
    jpeg_quality,
    licence_of,
    package_candidates,
    parse_copyright,
    picture_similarity,
    select,
    write_corpus,
)

FAKE = PackageSource("fake-photos", "usr/share/fake", ("nature/*", "data/*"))
COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: fake

Files: *
Copyright: 2020, Somebody
License: Expat

Files: nature/*
       data/*.png
Copyright: 2008, A. Photographer <a@example.org>
           2009, B. Photographer
License: GPL-2+
 This program is free software.
"""


def photo(seed: int, height: int = 640, width: int = 800) -> np.ndarray:
    """A photo-like RGB image: smooth random colours at two scales plus fine noise."""
    rng = np.random.default_rng(seed)
    layers = []
    for cells in (8, 40):
        grid = rng.integers(0, 256, (max(2, height * cells // width), cells, 3), dtype=np.uint8)
        layers.append(np.asarray(Image.fromarray(grid).resize((width, height), Image.Resampling.BICUBIC), float))
    image = 0.6 * layers[0] + 0.4 * layers[1] + rng.normal(0.0, 3.0, (height, width, 3))
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def builtin(name: str) -> np.ndarray:
    with Image.open(corpus.skimage_data_dir() / name) as image:
        return np.asarray(image.convert("RGB"))


def save(path: Path, pixels: np.ndarray, **options) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, **options)


def resized(pixels: np.ndarray, scale: float) -> np.ndarray:
    height, width = pixels.shape[:2]
    size = (round(width * scale), round(height * scale))
    return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.LANCZOS))


def fake_package(root: Path, files: dict[str, np.ndarray], version: str = "1.0-1") -> ExtractedPackage:
    """An unpacked package (dpkg-deb -x layout) holding ``files`` under FAKE.root and a DEP-5 copyright."""
    tree = root / "tree"
    for relative, pixels in files.items():
        options = {"quality": 95} if relative.endswith(".jpg") else {}
        save(tree / FAKE.root / relative, pixels, **options)
    copyright_file = tree / "usr/share/doc/fake-photos/copyright"
    copyright_file.parent.mkdir(parents=True, exist_ok=True)
    copyright_file.write_text(COPYRIGHT)
    return ExtractedPackage(FAKE, tree, version)


def reasons(skipped: list[dict]) -> dict[str, str]:
    return {Path(entry["path"]).name: entry["reason"] for entry in skipped}


# ------------------------------------------------------------------------------------------------ rules


def test_a_photo_passes_the_content_rules():
    assert content_problem(photo(0, 300, 400)) is None


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: photo(1, 200, 400), "too small"),
        (lambda: np.repeat(photo(2, 300, 400)[..., :1], 3, axis=2), "grayscale"),
        (lambda: np.full((300, 400, 3), (30, 90, 200), np.uint8), "flat"),
        (lambda: np.where(np.arange(400)[None, :, None] < 300, np.uint8(200), photo(3, 300, 400)), "flat"),
        (lambda: np.random.default_rng(4).choice(np.arange(16, 256, 16), (300, 400, 3)).astype(np.uint8), "synthetic"),
    ],
    ids=["small", "grayscale", "flat", "mostly-flat", "few-colours"],
)
def test_content_rules_reject(make, expected):
    assert content_problem(make()).startswith(expected)


@pytest.mark.parametrize("quality", [30, 60, 75, 95])
def test_jpeg_quality_is_estimated_from_the_quantisation_table(tmp_path, quality):
    save(tmp_path / "a.jpg", photo(5, 64, 64), quality=quality)
    save(tmp_path / "a.png", photo(5, 64, 64))
    with Image.open(tmp_path / "a.jpg") as jpeg, Image.open(tmp_path / "a.png") as png:
        assert abs(jpeg_quality(jpeg) - quality) <= 2
        assert jpeg_quality(png) is None


def blocky(height: int = 1024, width: int = 1024) -> np.ndarray:
    """8x8 blocks of constant colour on top of fine noise: a visible JPEG-like grid."""
    rng = np.random.default_rng(6)
    blocks = rng.integers(40, 216, (height // 8, width // 8, 3)).repeat(8, axis=0).repeat(8, axis=1)
    return np.clip(blocks + rng.normal(0, 2, blocks.shape), 0, 255).astype(np.uint8)


def test_blockiness_sees_a_grid_and_not_a_photo():
    gray = blocky()[..., 0].astype(float)
    assert blockiness(gray, 8) > 2.0
    assert abs(blockiness(photo(7, 512, 512)[..., 0].astype(float), 8) - 1.0) < 0.05


def test_downscale_doubles_while_the_jpeg_grid_shows():
    grid = Image.fromarray(blocky())
    assert downscale(grid, 2, is_jpeg=False)[1] == 2
    reduced, factor = downscale(grid, 2, is_jpeg=True)
    assert factor == 8 and reduced.size == (128, 128)
    reduced, factor = downscale(Image.fromarray(photo(8, 1001, 1200)), 2, is_jpeg=True)
    assert factor == 2 and reduced.size == (600, 500)


def test_fingerprint_matches_copies_of_a_picture_and_not_other_pictures():
    chelsea = builtin("chelsea.png")
    reference = fingerprint(Image.fromarray(chelsea))
    copies = [resized(chelsea, 0.4), resized(chelsea, 2.0), chelsea[:, ::-1], chelsea.mean(axis=2).astype(np.uint8)]
    for copy in copies:
        assert picture_similarity(fingerprint(Image.fromarray(copy)), reference) >= corpus.SAME_PICTURE
    for other in (builtin("coffee.png"), photo(9)):
        assert picture_similarity(fingerprint(Image.fromarray(other)), reference) < 0.7


# --------------------------------------------------------------------------------------- packages


def test_parse_copyright_and_last_matching_stanza_wins():
    stanzas = parse_copyright(COPYRIGHT)
    assert stanzas[1] == (
        ("nature/*", "data/*.png"),
        "GPL-2+",
        "2008, A. Photographer <a@example.org>; 2009, B. Photographer",
    )
    assert licence_of(stanzas, "nature/a.jpg")[0] == "GPL-2+"
    assert licence_of(stanzas, "data/b.jpg") == ("Expat", "2020, Somebody")
    assert licence_of(stanzas[1:], "other/c.jpg") is None


def test_only_listed_photos_are_candidates(tmp_path):
    package = fake_package(tmp_path, {"nature/a.png": photo(10), "abstract/b.png": photo(11)})
    candidates, others = package_candidates(package, 2)
    assert [c.path for c in candidates] == ["usr/share/fake/nature/a.png"] and others == 1
    assert candidates[0].license == "GPL-2+" and candidates[0].version == "1.0-1"
    assert candidates[0].copyright_file == "usr/share/doc/fake-photos/copyright"


def test_test_images_are_excluded_in_any_size_or_form(tmp_path, caplog):
    chelsea, coffee = builtin("chelsea.png"), builtin("coffee.png")
    package = fake_package(
        tmp_path,
        {
            "nature/cat_small.png": resized(chelsea, 0.5),
            "nature/cat_large.jpg": resized(chelsea, 2.0),
            "nature/cup_mirrored.png": resized(coffee, 1.5)[:, ::-1],
            "nature/good.png": photo(12),
        },
    )
    with caplog.at_level(logging.WARNING, logger="restore_gym.corpus"):
        kept, skipped = select(package_candidates(package, 2)[0], held_out_fingerprints())
    assert [Path(k.candidate.path).name for k in kept] == ["good.png"]
    why = reasons(skipped)
    assert why["cat_small.png"].startswith("test image: chelsea.png")
    assert why["cat_large.jpg"].startswith("test image: chelsea.png")
    assert why["cup_mirrored.png"].startswith("test image: coffee.png")
    assert sum("EXCLUDED" in record.message for record in caplog.records) == 3


def test_duplicates_keep_the_first(tmp_path):
    original = photo(13, 800, 1000)
    package = fake_package(
        tmp_path,
        {
            "nature/a.png": original,
            "nature/b_copy.png": original,
            "nature/c_resized.jpg": resized(original, 0.7),
            "nature/d_other.png": photo(14, 800, 1000),
        },
    )
    kept, skipped = select(package_candidates(package, 2)[0], held_out_fingerprints())
    assert [Path(k.candidate.path).name for k in kept] == ["a.png", "d_other.png"]
    why = reasons(skipped)
    assert why["b_copy.png"] == "duplicate: identical pixels to usr/share/fake/nature/a.png"
    assert why["c_resized.jpg"].startswith("duplicate: same picture as usr/share/fake/nature/a.png")


# ------------------------------------------------------------------------------------------ output


def corpus_package(tmp_path: Path) -> ExtractedPackage:
    return fake_package(
        tmp_path,
        {
            "nature/tree.jpg": photo(15, 700, 1000),
            "data/butterfly.png": photo(16, 600, 600),
            "nature/butterfly.png": photo(17, 520, 800),
            "data/tiny.png": photo(18, 300, 300),
        },
    )


def test_corpus_files_and_manifest(tmp_path):
    out = write_corpus(tmp_path / "out", [corpus_package(tmp_path)], 2)
    manifest = json.loads((out / "MANIFEST.json").read_text())
    files = [entry["file"] for entry in manifest["images"]]
    assert files == sorted(files)
    assert {"fake-photos__butterfly.png", "fake-photos__nature-butterfly.png", "fake-photos__tree.png"} <= set(files)
    assert sorted(p.name for p in out.glob("*.png")) == files
    builtin_files = [f"scikit-image__{Path(n).stem}.png" for n in corpus.BUILTIN_SPLITS["train"]]
    assert set(builtin_files) <= set(files)
    for entry in manifest["images"]:
        with Image.open(out / entry["file"]) as image:
            assert image.mode == "RGB" and list(image.size) == entry["size"]
        assert entry["sha256"] == hashlib.sha256((out / entry["file"]).read_bytes()).hexdigest()
        if entry["source"] == "fake-photos":
            assert entry["downscale"] >= 2 and entry["license"] == "GPL-2+" and entry["version"] == "1.0-1"
            assert entry["size"][0] == entry["original_size"][0] // entry["downscale"]
        else:
            assert entry["source"] == "scikit-image" and entry["downscale"] == 1
    assert reasons(manifest["skipped"])["tiny.png"].startswith("too small")
    assert manifest["sources"]["fake-photos"]["kept"] == 3
    assert (out / "licenses/fake-photos.copyright").read_text() == COPYRIGHT
    assert not set(manifest["rules"]["test_images"]) & set(corpus.BUILTIN_SPLITS["train"])


def test_corpus_is_deterministic(tmp_path):
    package = corpus_package(tmp_path)
    first = write_corpus(tmp_path / "first", [package], 2)
    second = write_corpus(tmp_path / "second", [package], 2)
    names = sorted(p.relative_to(first).as_posix() for p in first.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(second).as_posix() for p in second.rglob("*") if p.is_file())
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_an_interrupted_write_leaves_no_half_corpus(tmp_path, monkeypatch):
    package = corpus_package(tmp_path)
    out = tmp_path / "out"

    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(corpus, "_manifest", fail)
    with pytest.raises(KeyboardInterrupt):
        write_corpus(out, [package], 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tree"]
    monkeypatch.undo()
    write_corpus(out, [package], 2)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    monkeypatch.setattr(corpus, "_manifest", fail)
    with pytest.raises(KeyboardInterrupt):
        write_corpus(out, [package], 2)
    assert corpus.corpus_is_complete(out)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "tree"]


def test_a_failed_rename_puts_the_old_corpus_back(tmp_path, monkeypatch):
    package = corpus_package(tmp_path)
    out = write_corpus(tmp_path / "out", [package], 2)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    replace = corpus.os.replace

    def refuse_staging(source, target):  # the last move: the new manifest into place
        if Path(source).parent.name.startswith(".out.partial-") and Path(source).name == "MANIFEST.json":
            raise OSError("refused")
        replace(source, target)

    monkeypatch.setattr(corpus.os, "replace", refuse_staging)
    with pytest.raises(OSError, match="refused"):
        write_corpus(out, [package], 2)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "tree"]


def test_build_corpus_reports_a_complete_corpus_unless_forced(tmp_path, monkeypatch):
    package = corpus_package(tmp_path)
    fetched = []

    def fake_fetch(source: PackageSource, workdir: Path, apt_update: bool) -> ExtractedPackage:
        fetched.append(source.package)
        return package

    monkeypatch.setattr(corpus, "PACKAGE_SOURCES", (FAKE,))
    monkeypatch.setattr(corpus, "fetch_package", fake_fetch)
    out = tmp_path / "out"
    assert build_corpus(out) == out and fetched == ["fake-photos"]
    (out / "marker").write_text("kept")
    assert build_corpus(out) == out and fetched == ["fake-photos"] and (out / "marker").exists()
    build_corpus(out, force=True)
    assert fetched == ["fake-photos"] * 2 and (out / "marker").read_text() == "kept"
    assert corpus.corpus_is_complete(out)


def test_build_corpus_refuses_foreign_folders_and_bad_factors(tmp_path):
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"not ours")
    with pytest.raises(CorpusError, match=r"photos is not empty and holds no complete corpus.*MANIFEST.json does "
                                          r"not exist.*--force"):
        build_corpus(foreign)
    with pytest.raises(CorpusError, match="inside the restore_gym package"):
        build_corpus(Path(corpus.__file__).parent / "corpus")
    with pytest.raises(ValueError, match="min_downscale"):
        build_corpus(tmp_path / "out", min_downscale=3)


def fake_corpus(folder: Path, files: list[str], listed: list[str] | None = None) -> Path:
    """A corpus-like folder: ``files`` (a few bytes each), licenses/ and a manifest listing ``listed``."""
    (folder / "licenses").mkdir(parents=True)
    (folder / "licenses" / "fake-photos.copyright").write_text(COPYRIGHT)
    for name in files:
        (folder / name).write_text(f"{folder.name}: {name}")
    entries = [{"file": name} for name in (files if listed is None else listed)]
    (folder / "MANIFEST.json").write_text(json.dumps({"images": entries}))
    return folder


def test_the_builder_never_deletes_what_it_did_not_write(tmp_path):
    out = fake_corpus(tmp_path / "paper", ["old.png"], listed=["old.png", "gone.png", "../outside.txt"])
    (out / "paper.tex").write_text("\\documentclass{article}")
    (out / "notes.png").write_text("the user's")
    (tmp_path / "outside.txt").write_text("the user's")
    with pytest.raises(CorpusError, match=r"paper is not empty and holds no complete corpus \(1 image\(s\) .*missing"):
        build_corpus(out)  # refused before anything is fetched
    staging = fake_corpus(tmp_path / ".paper.partial-x", ["new.png", "old.png"])
    corpus._publish(staging, out)
    assert corpus.corpus_is_complete(out) and (out / "old.png").read_text() == ".paper.partial-x: old.png"
    assert sorted(p.name for p in out.iterdir()) == ["MANIFEST.json", "licenses", "new.png", "notes.png", "old.png",
                                                     "paper.tex"]
    assert (out / "notes.png").read_text() == "the user's" and (tmp_path / "outside.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outside.txt", "paper"]  # no staging or retired folder
    (out / "MANIFEST.json").write_bytes(b"\xff damaged")  # which files are the corpus's is no longer known
    with pytest.raises(CorpusError, match=r"MANIFEST.json is not a readable corpus manifest"):
        build_corpus(out)
    staging = fake_corpus(tmp_path / ".paper.partial-y", ["new.png"])
    with pytest.raises(CorpusError, match=r"1 file\(s\) in .*paper that the corpus would replace were not written "
                                          r"by it \(as far as its manifest says\), e.g. new.png"):
        corpus._publish(staging, out)
    assert (out / "new.png").read_text() == ".paper.partial-x: new.png" and (staging / "new.png").exists()


def test_apt_get_update_runs_only_when_asked(tmp_path, monkeypatch):
    commands = []

    def fake_run(command, cwd=None):
        commands.append(command[:2])
        return corpus.subprocess.CompletedProcess(command, 100, "", "E: Unable to locate package fake-photos")

    monkeypatch.setattr(corpus.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(corpus, "_run", fake_run)
    with pytest.raises(CorpusError, match=r"fake-photos: E: Unable to locate.*run again with --apt-update"):
        corpus.fetch_package(FAKE, tmp_path / "a")
    assert ["apt-get", "update"] not in commands
    with pytest.raises(CorpusError, match="could not download Debian package fake-photos") as error:
        corpus.fetch_package(FAKE, tmp_path / "b", apt_update=True)
    assert commands[1:] == [["apt-get", "download"], ["apt-get", "update"], ["apt-get", "download"]]
    assert "--apt-update" not in str(error.value)


def test_a_decompression_bomb_is_skipped_as_unreadable(tmp_path):
    package = fake_package(tmp_path, {"nature/good.png": photo(19)})
    write_decompression_bomb(package.tree / FAKE.root / "nature" / "bomb.png")
    kept, skipped = select(package_candidates(package, 2)[0], held_out_fingerprints())
    assert [Path(k.candidate.path).name for k in kept] == ["good.png"]
    assert reasons(skipped)["bomb.png"].startswith("unreadable: Image size (400000000 pixels) exceeds limit")


def test_default_destination_is_the_user_cache():
    assert corpus.default_out_dir() == corpus.cache_dir() / "corpus"


def test_main_names_the_package_and_the_fallback_when_apt_is_missing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(corpus.shutil, "which", lambda name: None)
    assert corpus.main(["--out", str(tmp_path / "out")]) == 1
    message = capsys.readouterr().out
    assert "apt-get" in message and "mate-backgrounds" in message and "--source builtin" in message
    assert not (tmp_path / "out").exists()

import os

from restore_gym import records


def test_only_stale_temporaries_of_the_projects_own_pattern_are_removed(tmp_path):
    stale = [".tool01.ckpt.pt.k2_x9q0a.tmp", ".config.json.abcdefgh.tmp"]
    kept = ["notes.tmp", ".x.tmp", "tool01.pt.abcdefgh.tmp", ".tool01.pt.ABCDEFGH.tmp", ".tool01.pt.abcdefg.tmp",
            "tool01.pt", ".tool01.pt.abcdefgh.tmp.bak"]
    for name in stale + kept:
        (tmp_path / name).write_bytes(b"partial")
    (tmp_path / ".folder.abcdefgh.tmp").mkdir()
    (tmp_path / ".link.abcdefgh.tmp").symlink_to(tmp_path / "tool01.pt")
    before = records._started - 60
    for path in tmp_path.iterdir():
        os.utime(path, (before, before), follow_symlinks=False)
    (tmp_path / ".toolbox.pt.abcdefgh.tmp").write_bytes(b"being written now")  # newer than this process
    removed = records.remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in removed) == sorted(stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [*kept, ".folder.abcdefgh.tmp", ".link.abcdefgh.tmp", ".toolbox.pt.abcdefgh.tmp"])
    assert records.remove_stale_temporaries(tmp_path / "absent") == []


def test_the_pattern_is_the_one_write_atomic_uses(tmp_path, monkeypatch):
    names = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda source, target: names.append(os.path.basename(source))
                        or real_replace(source, target))
    records.write_text_atomic(tmp_path / "config.json", "{}")
    assert len(names) == 1 and records._TEMPORARY.fullmatch(names[0])

"""Convert the authors' released tools and agent once: ``python -m restore_gym import-official DIR``.

``DIR`` is the authors' release: a folder holding ``toolbox/`` (``tool01`` .. ``tool12`` TensorFlow bundles)
and ``models/`` (``model.index`` + data), or either of those folders alone. Every bundle is checked (CRCs of
its blocks and tensors, the variables and shapes of the architecture, all 12 tools; an error names the
missing or damaged file), converted without TensorFlow (:meth:`Toolbox.from_official`,
:meth:`QNetwork.from_official`) and written atomically to :func:`restore_gym.official.official_dir` with
``MANIFEST.json``. Running it again with the same source files changes nothing; a part missing from ``DIR``
keeps what an earlier conversion wrote.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from restore_gym.lstm_dqn import QNetwork, agent_payload
from restore_gym.official import MANIFEST_FILE, OFFICIAL, PART_FILES, official_dir, read_manifest
from restore_gym.records import file_sha256, write_json_atomic
from restore_gym.toolbox import NUM_TOOLS, Toolbox, atomic_torch_save

COPYRIGHT = "Copyright (c) 2018 Ke YU"
LICENCE = "MIT License"
AGENT_CONFIG = {"provenance": "RL-Restore official release (Yu et al., CVPR 2018), trained by its authors, "
                              "converted by restore_gym.official_import"}
LAYOUT = (
    "The authors' data loader swapped the two spatial axes, so their released tools and agent take patches "
    "transposed (H and W swapped). The converted files take images in on-disk orientation: conv kernels are "
    "transposed spatially (HWIO to OIHW with H and W swapped), the agent's fully connected rows are reordered "
    "over the transposed 4x4 grid, its LSTM gates go from TensorFlow's (i, j, f, o) to PyTorch's (i, f, g, o) "
    "and BasicLSTMCell's forget bias of +1 is folded into the bias."
)


def release_parts(release: str | Path) -> dict[str, Path]:
    """The parts found in ``release``: ``"toolbox"`` -> the folder of ``tool01..12``, ``"agent"`` -> the folder
    of ``model.index``. FileNotFoundError naming what is missing when neither is there."""
    release = Path(release)
    if not release.is_dir():
        raise FileNotFoundError(f"{release} is not a folder; give the folder of the authors' release")
    parts = {}
    for part, marker, sub in (("toolbox", "tool01.index", "toolbox"), ("agent", "model.index", "models")):
        for folder in (release / sub, release):
            if (folder / marker).is_file():
                parts[part] = folder
                break
    if not parts:
        raise FileNotFoundError(f"{release} holds neither the tools (toolbox/tool01.index .. tool12) nor the agent "
                                "(models/model.index) of the authors' release")
    if "toolbox" in parts:
        missing = [f"tool{k:02d}.{ext}" for k in range(1, NUM_TOOLS + 1) for ext in ("index", "data-00000-of-00001")
                   if not (parts["toolbox"] / f"tool{k:02d}.{ext}").is_file()]
        if missing:
            raise FileNotFoundError(f"{parts['toolbox']} lacks {', '.join(missing)}: all 12 tools are needed")
    return parts


def source_files(part: str, folder: Path) -> list[Path]:
    """The checkpoint files of ``part`` in ``folder``."""
    prefixes = [f"tool{k:02d}" for k in range(1, NUM_TOOLS + 1)] if part == "toolbox" else ["model"]
    return [folder / f"{prefix}.{ext}" for prefix in prefixes for ext in ("index", "data-00000-of-00001")]


def import_official(release: str | Path, out: Path | None = None) -> dict[str, Any]:
    """Convert the parts of the authors' release in ``release`` into ``out`` (default the user cache) and
    return the manifest; parts whose source files are unchanged since the last conversion are not rewritten."""
    out = out or official_dir()
    parts = release_parts(release)
    manifest = read_manifest(out) or {"converted": {}, "sources": {}}
    changed = False
    for part in ("toolbox", "agent"):
        if part not in parts:
            continue
        sources = {f"{part}/{p.name}": {"sha256": file_sha256(p), "bytes": p.stat().st_size}
                   for p in source_files(part, parts[part])}
        name = PART_FILES[part]
        current = (manifest["sources"].get(part) == sources and (out / name).is_file()
                   and file_sha256(out / name) == manifest["converted"].get(name))
        if current:
            continue
        if part == "toolbox":
            toolbox = Toolbox.from_official(parts[part])
            toolbox.metadata["name"] = OFFICIAL
            toolbox.save(out / name)
        else:
            # The agent file records the toolbox it acts with: the authors' (their tools, by name).
            trained_with = Toolbox(metadata={"name": OFFICIAL})
            atomic_torch_save(agent_payload(QNetwork.from_official(parts[part]), AGENT_CONFIG, trained_with, 0),
                              out / name)
        manifest["sources"][part] = sources
        manifest["converted"][name] = file_sha256(out / name)
        changed = True
    if changed:
        manifest.update(format="restore-gym-official-v1", converted_by="restore_gym.official_import",
                        copyright=COPYRIGHT, licence=LICENCE, layout=LAYOUT)
        write_json_atomic(out / MANIFEST_FILE, manifest)
    return {**manifest, "changed": changed}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; a missing or damaged release exits with status 2 and a message naming the file."""
    parser = argparse.ArgumentParser(prog="restore-gym import-official", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("release", help="the authors' release: a folder with toolbox/ and models/, or one of them")
    args = parser.parse_args(argv)
    try:
        manifest = import_official(args.release)
    except (FileNotFoundError, ValueError) as error:
        parser.error(str(error))
    state = "converted" if manifest["changed"] else "already converted, unchanged"
    print(f"{state}: {', '.join(sorted(manifest['converted']))} in {official_dir()}")
    return 0

"""The image source a user names: the built-in photos, the tools' corpus, a folder, or an ImageSource."""

from __future__ import annotations

import os

from restore_gym.data import BuiltinImages, FolderImages, ImageSource

CORPUS_SOURCE = "corpus"


def resolve_source(source: str | os.PathLike | ImageSource, split: str) -> ImageSource:
    """``"builtin"``, ``"corpus"`` (the tools' training corpus in the user cache, built by
    ``python -m restore_gym.corpus``), a folder path (a string or a path object), or an :class:`ImageSource`
    (whose split must then match ``split``)."""
    if isinstance(source, ImageSource):
        if source.split != split:
            raise ValueError(f"the image source is the {source.split!r} split but the environment's split is {split!r}")
        return source
    if isinstance(source, os.PathLike):
        return FolderImages(source, split)
    if not isinstance(source, str):
        raise TypeError(f"source must be 'builtin', 'corpus', a folder path or an ImageSource, got "
                        f"{type(source).__name__}")
    if not source:
        raise ValueError("source is an empty string; pass 'builtin', 'corpus' or the path of a folder of images")
    if source == "builtin":
        return BuiltinImages(split)
    if source == CORPUS_SOURCE:
        from restore_gym.corpus import corpus_problem, default_out_dir  # its imports are only needed here

        problem = corpus_problem(default_out_dir())
        if problem:
            raise FileNotFoundError(f"source 'corpus' needs the corpus in {default_out_dir()} ({problem}); build it "
                                    "with `python -m restore_gym.corpus` (about a minute)")
        return FolderImages(default_out_dir(), split)
    return FolderImages(source, split)

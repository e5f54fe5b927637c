"""Weight file formats, in one place: safetensors hold data only; pickle-based formats can run code when loaded.

``fetch`` refuses to download pickle files unless ``--allow-pickle``; ``serve`` never loads them. Both ask here.
"""

from __future__ import annotations

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def is_pickle(name: str) -> bool:
    """Whether a file name (or path) has a pickle-based weight suffix, in any letter case."""
    return name.lower().endswith(PICKLE_SUFFIXES)


__all__ = ["PICKLE_SUFFIXES", "is_pickle"]

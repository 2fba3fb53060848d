"""Checkpoints: plain dicts of tensors and primitive types, written atomically, read with weights_only=True."""

from __future__ import annotations

from pathlib import Path

import torch

from emotk.errors import EmotkError
from emotk.fileio import atomic_path


def save_checkpoint(state: dict, path: str | Path) -> None:
    """``torch.save`` to a temporary name beside ``path``, renamed when complete."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise EmotkError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # a truncated or foreign file: torch raises many different types
        raise EmotkError(f"{path}: cannot load checkpoint: {e}".splitlines()[0]) from None

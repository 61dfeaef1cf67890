"""Atomic checkpoints: write ``<path>.tmp`` then ``os.replace`` it, so a killed run never leaves a torn file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from mtkd.errors import MtkdError


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint IO, made atomic; loads with ``weights_only=True``."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(checkpoint, tmp)
        os.replace(tmp, path)

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        return load_checkpoint(path, map_location or "cpu")


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """``torch.load(weights_only=True)`` with one clear line for a missing or unreadable file."""
    path = Path(path)
    if not path.is_file():
        raise MtkdError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means "not an mtkd checkpoint"
        raise MtkdError(f"cannot read checkpoint {path}: {type(err).__name__}: {str(err).splitlines()[0]}") from None

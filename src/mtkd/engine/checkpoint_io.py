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


def read_training_checkpoint(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """The checkpoint and its hyper-parameters (``config``, ``task_channels``); other checkpoints are refused."""
    ckpt = load_checkpoint(path)
    hparams = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not hparams or "config" not in hparams or "task_channels" not in hparams:
        raise MtkdError(f"{path} is not an mtkd training checkpoint (no mtkd config inside)")
    return ckpt, hparams


def load_model(path: str | os.PathLike) -> tuple[Any, dict[str, Any]]:
    """The ``MultiTaskModel`` stored in an mtkd training checkpoint, and the run config it was trained with."""
    from mtkd.models import build_model_from_config

    ckpt, hparams = read_training_checkpoint(path)
    config, task_channels = hparams["config"], hparams["task_channels"]
    model = build_model_from_config({**config["model"], "pretrained": False}, task_channels)  # weights: below
    weights = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise MtkdError(f"{path} does not match its own model config: {str(err).splitlines()[0]}") from None
    return model, config

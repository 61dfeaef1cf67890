"""Checkpoint reading and writing, below the engine (the engine, distillers, report, export and predict use it).

Atomic checkpoints (:mod:`mtkd.atomic`: a temporary file beside it, fsynced, then ``os.replace``), so a killed
run never leaves a torn file; loading with ``weights_only=True``."""

from __future__ import annotations

import os
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from mtkd.atomic import atomic_path
from mtkd.errors import MtkdError, first_line


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint IO, made atomic; loads with ``weights_only=True``."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        return load_checkpoint(path, map_location or "cpu")


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """``torch.load(weights_only=True)`` with one clear line for a missing or unreadable file."""
    path = Path(path)
    if not path.is_file():
        raise MtkdError(f"checkpoint {path} does not exist")
    if path.stat().st_size == 0:
        raise MtkdError(f"checkpoint {path} is empty (0 bytes): its write was cut short; use another checkpoint")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols on stderr: the one line below says it
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:  # torch's message advises weights_only=False: never the right advice here
        raise MtkdError(f"cannot read checkpoint {path}: not a torch checkpoint, or one holding Python objects "
                        "beyond tensors and plain data (mtkd never unpickles those)") from None
    except Exception as err:  # noqa: BLE001 - any other failure means a corrupt or foreign file
        raise MtkdError(f"cannot read checkpoint {path}: corrupt or not a torch checkpoint "
                        f"({type(err).__name__}: {first_line(err).split('. ')[0]})") from None


def state_dict_mismatch(err: BaseException, shown: int = 4) -> str:
    """torch's ``load_state_dict`` error as one line that names the keys: missing, unexpected, wrong shapes."""
    parts = []
    for line in str(err).splitlines()[1:] or [first_line(err)]:
        line = line.strip().rstrip(".")
        if not line:
            continue
        head, _, rest = line.partition(": ")
        keys = re.findall(r'"([^"]+)"', rest)
        if keys:
            more = f" (+{len(keys) - shown} more)" if len(keys) > shown else ""
            line = f"{head.lower()}: {', '.join(keys[:shown])}{more}"
        parts.append(line)
    sizes = [p for p in parts if p.startswith("size mismatch")]
    if len(sizes) > 2:
        parts = [p for p in parts if not p.startswith("size mismatch")] + sizes[:2] + [f"+{len(sizes) - 2} more size mismatches"]
    return "; ".join(parts) or first_line(err)


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
        raise MtkdError(f"{path} does not match its own model config: {state_dict_mismatch(err)}") from None
    return model, config

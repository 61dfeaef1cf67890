"""The image size a run trains on, read from its data config (for FLOP counts, latency and prediction)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mtkd.data.datamodule import ROOMS_DEFAULTS
from mtkd.data.folder import read_npy_header
from mtkd.errors import MtkdError


def input_size(data: dict[str, Any]) -> tuple[int, int]:
    """``(H, W)``: the rendered size for ``rooms``, else the size of the first image of the folder's test split
    (``val/image/0.npy``, or ``train/`` when there is no test split); only the ``.npy`` header is read."""
    if data["dataset"] == "rooms":
        rooms = {**ROOMS_DEFAULTS, **(data.get("rooms") or {})}
        return int(rooms["height"]), int(rooms["width"])
    if not data.get("root"):
        raise MtkdError("data.root is not set: cannot tell the input size of a folder dataset")
    root = Path(data["root"]).expanduser()
    for split in ("val", "train"):
        first = root / split / "image" / "0.npy"
        if first.is_file():
            shape, _ = read_npy_header(first)
            return int(shape[0]), int(shape[1])
    raise MtkdError(f"{root}: no image/0.npy in val/ or train/ to read the input size from")

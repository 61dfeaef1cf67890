"""NYUD-v2 multi-task release (ASTMT / Multi-Task-Learning-PyTorch / ATRC ``NYUD_MT``, and InvPT's PNG variant).

Layout read: ``images/<id>.jpg|.png``, ``segmentation/<id>.png`` (0 = ignore, 1..40 = the 40 classes),
``depth/<id>.npy`` (metres, 0 invalid), ``normals/<id>.npy`` (H x W x 3 in [-1, 1]) or ``.png``
(n = 2p/255 - 1), ``edge/<id>.npy`` ({0, 1}) or ``.png`` (/255), ``gt_sets/{train,val}.txt`` (795 / 654 ids).
The file type is detected per folder and per sample (``.npy`` first, then ``.png``).

Written: ``train`` and ``val`` with image, label (0..39, -1 ignore; ``classes=13`` maps through Couprie's 40 -> 13),
depth (H x W x 1), normal (unit vectors, zero = invalid), edge ({0, 1}, binarised at 0.5).
Resizing (``size``): bilinear image, nearest for everything else (edges may lose pixels when shrinking).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from mtkd.data.folder import read_npy
from mtkd.datasets.convert import (
    Plan,
    check_labels,
    check_same_size,
    find_file,
    parse_size,
    read_image,
    read_lines,
    read_png,
    resize_image,
    resize_nearest,
    run_plan,
    unit_normals,
)
from mtkd.datasets.nyud_raw import nyu40_to_13
from mtkd.errors import MtkdError


def _depth(path: Path) -> np.ndarray:
    d = read_npy(path) if path.suffix == ".npy" else read_png(path).astype(np.float32)
    d = np.squeeze(np.asarray(d, dtype=np.float32))
    if d.ndim != 2:
        raise MtkdError(f"{path}: depth must be H x W, got shape {d.shape}")
    return np.where(np.isfinite(d) & (d > 0), d, 0).astype(np.float32)


def _normals(path: Path) -> np.ndarray:
    if path.suffix == ".npy":
        n = read_npy(path).astype(np.float32)
    else:
        n = read_png(path, modes=("RGB",)).astype(np.float32) * (2.0 / 255.0) - 1.0
    if n.ndim != 3 or n.shape[-1] != 3:
        raise MtkdError(f"{path}: normals must be H x W x 3, got shape {n.shape}")
    return unit_normals(n)


def _edge(path: Path) -> np.ndarray:
    if path.suffix == ".npy":
        e = np.squeeze(read_npy(path)).astype(np.float32)
    else:
        e = read_png(path).astype(np.float32) / 255.0
        if e.ndim == 3:
            e = e[..., 0]
    if e.ndim != 2:
        raise MtkdError(f"{path}: edges must be H x W, got shape {e.shape}")
    if e.min() < 0 or e.max() > 1:
        raise MtkdError(f"{path}: edge values outside [0, 1] ({e.min()}..{e.max()})")
    return (e >= 0.5).astype(np.float32)


def convert_nyud_mt(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    size: Any = None,
    progress: bool = True,
    classes: int = 40,
) -> Path:
    """Convert the NYUD multi-task release at ``src`` (see module doc). ``classes``: 40 (as released) or 13."""
    src = Path(src)
    hw = parse_size(size)
    if int(classes) not in (13, 40):
        raise MtkdError(f"classes={classes}: choose 40 or 13")
    classes = int(classes)
    names40, lut13, names13 = nyu40_to_13()
    lut = np.arange(41) - 1 if classes == 40 else lut13 - 1  # png value 0..40 -> id, 0 -> -1
    splits = {s: read_lines(src / "gt_sets" / f"{s}.txt") for s in ("train", "val")}
    for s, ids in splits.items():  # fail before writing anything when the split names a missing image
        for sid in ids:
            find_file(src / "images", sid, (".jpg", ".png", ".jpeg"))

    def load(split: str, i: int, sid: str) -> dict[str, np.ndarray]:
        ip = find_file(src / "images", sid, (".jpg", ".png", ".jpeg"))
        img = read_image(ip)
        sp = find_file(src / "segmentation", sid, (".png",))
        seg = read_png(sp)
        if seg.ndim != 2:
            raise MtkdError(f"{sp}: segmentation must be a single-channel PNG, got shape {seg.shape}")
        check_same_size(img, ip, seg, sp)
        check_labels(seg, np.arange(41), sp)
        dp = find_file(src / "depth", sid, (".npy", ".png"))
        dep = _depth(dp)
        check_same_size(img, ip, dep, dp)
        np_ = find_file(src / "normals", sid, (".npy", ".png"))
        nor = _normals(np_)
        check_same_size(img, ip, nor, np_)
        ep = find_file(src / "edge", sid, (".npy", ".png"))
        edge = _edge(ep)
        check_same_size(img, ip, edge, ep)
        return {
            "image": resize_image(img, hw),
            "label": resize_nearest(lut[seg.astype(np.int64)], hw).astype(np.int16),
            "depth": resize_nearest(dep, hw)[..., None],
            "normal": resize_nearest(nor, hw),
            "edge": resize_nearest(edge, hw),
        }

    meta = {
        "classes": {"semseg": names40 if classes == 40 else names13},
        "source": "NYUD-v2 multi-task release (ASTMT / Multi-Task-Learning-PyTorch / ATRC; InvPT PNG variant)",
        "protocol": {
            "splits": "gt_sets/train.txt -> train, gt_sets/val.txt -> val (the split papers report on)",
            "semseg": "png 0 -> -1 ignore, 1..40 -> 0..39" + (" -> 13 classes (Couprie)" if classes == 13 else ""),
            "depth": "metres, 0 invalid", "normal": "unit vectors, zero invalid",
            "edge": "{0,1}; evaluate odsF with max_dist 0.011 (SEISM, NYUD)",
        },
    }
    options = {"size": list(hw) if hw else None, "classes": classes}
    return run_plan(Plan("nyud_mt", splits, ("image", "label", "depth", "normal", "edge"), load, meta, options),
                    out, progress)

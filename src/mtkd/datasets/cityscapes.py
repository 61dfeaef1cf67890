"""Cityscapes from the official packages (Cordts et al., CVPR 2016): leftImg8bit, gtFine, disparity, camera.

Layout read: ``leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png``, ``gtFine/<split>/<city>/<stem>_gtFine_labelIds.png``,
``disparity/<split>/<city>/<stem>_disparity.png`` (16-bit; d = (p - 1) / 256 px for p > 0, p = 0 invalid),
``camera/<split>/<city>/<stem>_camera.json`` (``extrinsic.baseline`` m, ``intrinsic.fx`` px). Splits train (2975)
and val (500); samples sorted by city then stem.

Written: image, ``label_19`` (cityscapesScripts train ids, rest -1), ``label_7`` (categories flat, construction,
object, nature, sky, human, vehicle from ``catId``; void -1; labels ignored in the 19-class task but in a non-void
category, e.g. parking or caravan, keep their category as ``catId`` does), depth (H x W x 1):

- ``depth="metric"`` (default): metres, baseline * fx / d per image (from its own camera file), then nearest
  resize (metric depth does not change with the image size). Validity mask: a depth outside
  [``min_depth``, ``max_depth``] (default 0 and 80 m) is written as 0 = invalid. Stereo disparity of far points is
  a few pixels and noisy (d = 1/256 px would give a "valid" ~470 km); 80 m is the usual cap of outdoor depth
  benchmarks (KITTI / Eigen et al.), which Cityscapes depth evaluations reuse. ``max_depth=None`` keeps every
  positive disparity;
- ``depth="disparity"``: d in pixels of the *output* image, i.e. scaled by out_width / 2048, nearest resize
  (the MTAN / LibMTL Cityscapes files store inverse depth; their exact scale is not documented).

0 = invalid in both. Default ``size`` 128 x 256 (the MTAN layout); 256 x 512 is the other common choice.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from mtkd.datasets.convert import (
    Plan,
    check_labels,
    check_same_size,
    parse_size,
    read_image,
    read_png,
    read_table,
    resize_image,
    resize_nearest,
    run_plan,
)
from mtkd.errors import MtkdError

CATEGORIES = ["flat", "construction", "object", "nature", "sky", "human", "vehicle"]


def label_tables() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(lut id -> train id or -1, lut id -> category 0..6 or -1, 19 train-id names), for ids 0..33."""
    rows = read_table("cityscapes_labels.tsv")
    lut19 = np.full(34, -1, dtype=np.int64)
    lut7 = np.full(34, -1, dtype=np.int64)
    names19 = [""] * 19
    for r in rows:
        i, name, train, cat = int(r[0]), r[1], int(r[2]), int(r[4])
        if train != 255:
            lut19[i] = train
            names19[train] = name
        lut7[i] = cat - 1  # catId 0 (void) -> -1
    return lut19, lut7, names19


def read_camera(path: Path) -> tuple[float, float]:
    try:
        cam = json.loads(path.read_text())
    except FileNotFoundError:
        raise MtkdError(f"{path}: missing")
    except (OSError, ValueError) as e:
        raise MtkdError(f"{path}: not valid JSON ({e})")
    try:
        baseline = float(cam["extrinsic"]["baseline"])
        fx = float(cam["intrinsic"]["fx"])
    except (KeyError, TypeError, ValueError) as e:
        raise MtkdError(f"{path}: camera JSON lacks extrinsic.baseline or intrinsic.fx ({e!r})")
    return baseline, fx


def read_disparity(path: Path) -> np.ndarray:
    """Disparity in pixels (float32, 0 invalid) from a 16-bit PNG; MtkdError if the PNG is not 16-bit."""
    p = read_png(path, modes=("I;16", "I;16B", "I;16L", "I"))
    if p.dtype != np.uint16:
        if p.dtype.kind in "iu" and p.size and (p.min() < 0 or p.max() > 65535):
            raise MtkdError(f"{path}: disparity must be a 16-bit PNG (uint16), got values outside 0..65535")
        if p.dtype.kind not in "iu":
            raise MtkdError(f"{path}: disparity must be a 16-bit PNG (uint16), got {p.dtype}")
    p = p.astype(np.float32)
    return np.where(p > 0, (p - 1.0) / 256.0, 0).astype(np.float32)


def convert_cityscapes(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    size: Any = (128, 256),
    progress: bool = True,
    depth: str = "metric",
    min_depth: float = 0.0,
    max_depth: float | None = 80.0,
) -> Path:
    """Convert the official Cityscapes packages unpacked under ``src`` (see module doc)."""
    src = Path(src)
    hw = parse_size(size)
    if depth not in ("metric", "disparity"):
        from mtkd.registry import suggest

        raise suggest(depth, ("metric", "disparity"), "Cityscapes depth mode")
    hi = float("inf") if max_depth is None else float(max_depth)
    if not (0 <= float(min_depth) < hi):
        raise MtkdError(f"cityscapes: need 0 ≤ min_depth < max_depth, got min_depth={min_depth}, max_depth={max_depth}")
    lut19, lut7, names19 = label_tables()
    splits: dict[str, list[str]] = {}
    for split in ("train", "val"):
        root = src / "leftImg8bit" / split
        if not root.is_dir():
            raise MtkdError(f"{root}: missing (expected leftImg8bit/<split>/<city>/*_leftImg8bit.png)")
        files = sorted(root.glob("*/*_leftImg8bit.png"))
        if not files:
            raise MtkdError(f"{root}: no *_leftImg8bit.png files")
        splits[split] = [f"{f.parent.name}/{f.name[: -len('_leftImg8bit.png')]}" for f in files]

    def load(split: str, i: int, sid: str) -> dict[str, np.ndarray]:
        city, stem = sid.split("/")
        ip = src / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png"
        lp = src / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png"
        dp = src / "disparity" / split / city / f"{stem}_disparity.png"
        cp = src / "camera" / split / city / f"{stem}_camera.json"
        img = read_image(ip)
        lab = read_png(lp)
        if lab.ndim != 2:
            raise MtkdError(f"{lp}: labelIds must be a single-channel PNG, got shape {lab.shape}")
        check_same_size(img, ip, lab, lp)
        check_labels(lab, np.arange(34), lp)
        disp = read_disparity(dp)
        check_same_size(img, ip, disp, dp)
        w_in = img.shape[1]
        if depth == "metric":
            baseline, fx = read_camera(cp)
            d = np.where(disp > 0, baseline * fx / np.where(disp > 0, disp, 1), 0)
            d = np.where((d >= float(min_depth)) & (d <= hi), d, 0).astype(np.float32)
        else:
            scale = (hw[1] if hw else w_in) / w_in
            d = (disp * scale).astype(np.float32)
        lab = lab.astype(np.int64)
        return {
            "image": resize_image(img, hw),
            "label_19": resize_nearest(lut19[lab], hw).astype(np.int16),
            "label_7": resize_nearest(lut7[lab], hw).astype(np.int16),
            "depth": resize_nearest(d, hw)[..., None],
        }

    meta = {
        "classes": {"semseg": names19, "label_19": names19, "label_7": CATEGORIES},
        "source": "Cityscapes official packages (leftImg8bit, gtFine, disparity, camera)",
        "protocol": {
            "splits": "train -> train (2975), val -> val (500, the split papers report on)",
            "label_19": "cityscapesScripts trainIds, others -1", "label_7": "catId - 1, void -1",
            "depth": (f"metres = baseline * fx / d, d = (p - 1) / 256, outside [{min_depth}, {max_depth}] m invalid"
                      if depth == "metric"
                      else "disparity in output-image pixels, d = (p - 1) / 256 * out_w / in_w") + "; 0 invalid",
        },
        "depth": depth,
    }
    options = {"size": list(hw) if hw else None, "depth": depth}
    if depth == "metric":
        options.update(min_depth=float(min_depth), max_depth=None if max_depth is None else float(max_depth))
    return run_plan(Plan("cityscapes", splits, ("image", "label_19", "label_7", "depth"), load, meta, options),
                    out, progress)

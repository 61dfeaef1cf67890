"""The on-disk cache of ``rooms``: write ``{root}/{train,val}/{folder}/{i}.npy`` once per request (meta.json says
which), atomically, replacing a stale ``rooms`` folder and refusing any other."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np

from mtkd.data.rooms.render import render_scene
from mtkd.data.rooms.scene import CLASSES, HFOV, IGNORE
from mtkd.errors import MtkdError

GENERATOR_VERSION = 1  # bump whenever the output for a given seed changes
FOLDERS = ("image", "label", "depth", "normal", "edge")

# ------------------------------------------------------------------------------------------------------- writing

_META_KEYS = ("name", "generator_version", "seed", "sizes", "height", "width", "classes")


def _meta(n_train: int, n_test: int, height: int, width: int, seed: int) -> dict:
    return {
        "name": "rooms",
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "sizes": {"train": n_train, "val": n_test},
        "height": height,
        "width": width,
        "classes": {"semseg": list(CLASSES)},
        "ignore_index": IGNORE,
        "folders": list(FOLDERS),
        "depth": "z-depth along the optical axis in metres, 0 invalid",
        "normal": "unit, camera frame: x right, y up, z toward the camera; all-zero invalid",
        "edge": "1 where the (object, face) id changes between 4-neighbours, nearer side",
        "hfov_deg": float(np.rad2deg(HFOV)),
        "note": "'val' is the test split (MTAN layout); hold a validation split out of 'train'",
    }


def _read_meta(root: Path) -> dict | None:
    try:
        meta = json.loads((root / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _matches(root: Path, want: dict) -> bool:
    have = _read_meta(root)
    return have is not None and all(have.get(k) == want[k] for k in _META_KEYS)


def write_rooms(root, n_train: int = 800, n_test: int = 200, height: int = 96, width: int = 128, seed: int = 0,
                progress: bool = True) -> Path:
    """Write ``{root}/{train,val}/{image,label,depth,normal,edge}/{i}.npy`` (MTAN layout, ``val`` = test split)
    and ``{root}/meta.json`` (name ``rooms``, classes, generator version, seed, sizes); return ``root``.

    Idempotent: when ``meta.json`` already matches the request this returns at once. Otherwise everything is
    written into a temporary sibling folder that is renamed into place at the end, so an interrupted write never
    leaves a folder that looks complete. An existing ``rooms`` folder made for another request (or by another
    generator version) is replaced; any other non-empty folder is refused rather than overwritten.
    """
    root = Path(root)
    for name, value in (("n_train", n_train), ("n_test", n_test), ("height", height), ("width", width)):
        if not isinstance(value, (int, np.integer)) or value < (0 if name.startswith("n_") else 2):
            raise MtkdError(f"rooms: {name}={value!r} must be an integer >= {0 if name.startswith('n_') else 2}")
    want = _meta(int(n_train), int(n_test), int(height), int(width), int(seed))
    if _matches(root, want):
        return root
    if root.exists():
        if not root.is_dir():
            raise MtkdError(f"rooms: {root} exists and is not a folder")
        have = _read_meta(root)
        if any(root.iterdir()) and (have is None or have.get("name") != "rooms"):
            raise MtkdError(f"rooms: {root} is a non-empty folder without a rooms meta.json; refusing to overwrite it")
    root.parent.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp = root.parent / f".{root.name}.tmp-{tag}"
    try:
        _write_splits(tmp, want, progress)
        meta_tmp = tmp / "meta.json.tmp"
        meta_tmp.write_text(json.dumps(want, indent=2) + "\n")
        os.replace(meta_tmp, tmp / "meta.json")
        old = None
        if root.exists():  # a stale rooms folder (or an empty one): move it aside, then swap
            old = root.parent / f".{root.name}.old-{tag}"
            os.replace(root, old)
        try:
            os.replace(tmp, root)
        except OSError:
            if _matches(root, want):  # another process finished the same request first
                shutil.rmtree(tmp, ignore_errors=True)
                return root
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def _write_splits(tmp: Path, meta: dict, progress: bool) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    sizes = meta["sizes"]
    height, width, seed = meta["height"], meta["width"], meta["seed"]
    columns = (TextColumn("[bold]rooms[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeRemainingColumn())
    with Progress(*columns, disable=not progress, transient=True) as bar:
        for split in ("train", "val"):
            for folder in FOLDERS:
                (tmp / split / folder).mkdir(parents=True, exist_ok=True)
            task = bar.add_task(split, total=sizes[split])
            for i in range(sizes[split]):
                sample, _ = render_scene(i, height, width, seed, split)
                for folder in FOLDERS:
                    np.save(tmp / split / folder / f"{i}.npy", sample[folder])
                bar.advance(task)

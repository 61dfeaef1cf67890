"""Convert a raw dataset release into the training layout of docs/conventions.md, resumably.

``convert(name, src, out, **options)`` dispatches to ``convert_<name>`` (the CLI's ``mtkd data convert NAME SRC OUT``).
Every converter builds a :class:`Plan` (split -> sample ids, a loader for one sample, meta) and hands it to
:func:`run_plan`, which owns the on-disk contract:

- each ``{out}/{split}/{folder}/{i}.npy`` is written atomically (:mod:`mtkd.atomic`);
- sample i counts as done when every folder of the split holds ``{i}.npy``; a rerun skips done samples, so a
  conversion killed mid-way resumes where it stopped;
- the options of a run are recorded in ``{out}/.convert.json`` first; a rerun with different options is refused
  (mixing two resolutions or label sets in one folder is never what the user wants);
- ``meta.json`` is written last, after a count check of every folder against the split lists; a folder without
  ``meta.json`` is an unfinished conversion.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mtkd.atomic import write_atomic, write_text
from mtkd.errors import MtkdError
from mtkd.registry import suggest

RESOURCES = Path(__file__).parent / "resources"
CONVERTERS = ("nyud_raw", "nyud_mt", "pascal_context", "cityscapes")


# ----------------------------------------------------------------------------------------------------- the plan


@dataclass
class Plan:
    """What a converter hands to :func:`run_plan`."""

    name: str
    splits: dict[str, list[str]]  # split name ("train" / "val") -> sample ids, in output order
    folders: Sequence[str]  # output folders every sample gets
    load: Callable[[str, int, str], dict[str, np.ndarray]]  # (split, index, id) -> {folder: array}
    meta: dict[str, Any]
    options: dict[str, Any] = field(default_factory=dict)


def _save_atomic(path: Path, arr: np.ndarray) -> None:
    write_atomic(path, lambda f: np.save(f, arr))


def _write_json_atomic(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def _done(out: Path, split: str, folders: Sequence[str], i: int) -> bool:
    return all((out / split / f / f"{i}.npy").is_file() for f in folders)


def run_plan(plan: Plan, out: str | os.PathLike, progress: bool = True) -> Path:
    """Write ``plan`` under ``out`` (resumably; see the module doc) and return ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    record = {"name": plan.name, "options": plan.options}
    rec_path = out / ".convert.json"
    if rec_path.is_file():
        try:
            old = json.loads(rec_path.read_text())
        except (OSError, ValueError) as e:
            raise MtkdError(f"{rec_path}: unreadable record of an earlier conversion ({e}); delete it or the folder")
        if old != json.loads(json.dumps(record)):
            raise MtkdError(f"{out} holds a conversion with other options ({old}); convert into a new folder")
    else:
        _write_json_atomic(rec_path, record)
    total = sum(len(v) for v in plan.splits.values())
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not progress, transient=False) as bar:
        job = bar.add_task(f"converting {plan.name}", total=total)
        for split, ids in plan.splits.items():
            for f in plan.folders:
                (out / split / f).mkdir(parents=True, exist_ok=True)
            for i, sid in enumerate(ids):
                if not _done(out, split, plan.folders, i):
                    arrays = plan.load(split, i, sid)
                    missing = set(plan.folders) - set(arrays)
                    if missing:  # a converter bug, not a user error
                        raise RuntimeError(f"{plan.name}: sample {sid} lacks {sorted(missing)}")
                    for f in plan.folders:
                        _save_atomic(out / split / f / f"{i}.npy", arrays[f])
                bar.advance(job)
    # final count check against the split lists
    for split, ids in plan.splits.items():
        for f in plan.folders:
            n = len(list((out / split / f).glob("*.npy")))
            if n != len(ids):
                raise MtkdError(f"{out / split / f}: {n} files, but the split list has {len(ids)} samples")
    meta = dict(plan.meta)
    meta["name"] = plan.name
    meta["splits"] = {s: len(v) for s, v in plan.splits.items()}
    meta["folders"] = list(plan.folders)
    meta["options"] = plan.options
    _write_json_atomic(out / "meta.json", meta)
    return out


def is_complete(out: str | os.PathLike) -> bool:
    """True when ``out`` holds a finished conversion (``meta.json`` is written last)."""
    return (Path(out) / "meta.json").is_file()


# ------------------------------------------------------------------------------------------- readers, checked


def read_image(path: Path) -> np.ndarray:
    """RGB image as H x W x 3 uint8; MtkdError naming the file when it cannot be read."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise MtkdError(f"{path}: missing")
    except Exception as e:
        raise MtkdError(f"{path}: not a readable image ({type(e).__name__}: {e})")


def read_png(path: Path, modes: Sequence[str] | None = None) -> np.ndarray:
    """A PNG as stored (palette indices for 'P', 16-bit for 'I;16'); ``modes`` restricts the accepted PIL modes."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            if modes is not None and im.mode not in modes:
                raise MtkdError(f"{path}: PNG mode {im.mode!r}, expected one of {list(modes)}")
            return np.asarray(im)
    except MtkdError:
        raise
    except FileNotFoundError:
        raise MtkdError(f"{path}: missing")
    except Exception as e:
        raise MtkdError(f"{path}: not a readable PNG ({type(e).__name__}: {e})")


def read_lines(path: Path) -> list[str]:
    try:
        lines = [ln.strip() for ln in Path(path).read_text().splitlines()]
    except FileNotFoundError:
        raise MtkdError(f"{path}: split file missing")
    except (OSError, UnicodeDecodeError) as e:
        raise MtkdError(f"{path}: unreadable split file ({e})")
    return [ln for ln in lines if ln]


def find_file(folder: Path, stem: str, exts: Sequence[str]) -> Path:
    """``folder/stem.ext`` for the first ext that exists; MtkdError naming the expected file when none does."""
    for ext in exts:
        p = folder / f"{stem}{ext}"
        if p.is_file():
            return p
    raise MtkdError(f"{folder / (stem + exts[0])}: missing (also looked for {', '.join(exts[1:]) or 'nothing else'})")


def read_table(name: str) -> list[list[str]]:
    """Rows of a tab-separated resource file, comments and header dropped."""
    rows = [ln.split("\t") for ln in (RESOURCES / name).read_text().splitlines() if ln and not ln.startswith("#")]
    return rows[1:]


def read_list(name: str) -> list[str]:
    return [ln for ln in (RESOURCES / name).read_text().splitlines() if ln and not ln.startswith("#")]


def check_same_size(a: np.ndarray, pa: Path | str, b: np.ndarray, pb: Path | str) -> None:
    if a.shape[:2] != b.shape[:2]:
        raise MtkdError(f"{pb}: size {b.shape[1]}x{b.shape[0]} differs from {pa} ({a.shape[1]}x{a.shape[0]})")


def check_labels(lab: np.ndarray, allowed: Sequence[int] | np.ndarray, path: Path | str) -> None:
    bad = np.setdiff1d(np.unique(lab), np.asarray(allowed))
    if bad.size:
        raise MtkdError(f"{path}: label values {bad[:10].tolist()} outside the class set")


# ------------------------------------------------------------------------------------------------- resizing


def parse_size(size: Any) -> tuple[int, int] | None:
    """None, an int (square), or (H, W)."""
    if size is None:
        return None
    if isinstance(size, int):
        return (size, size)
    if isinstance(size, str):
        parts = size.lower().replace("x", ",").split(",")
        size = [int(p) for p in parts if p.strip()]
    h, w = (int(v) for v in size)
    if h <= 0 or w <= 0:
        raise MtkdError(f"size {size}: must be positive")
    return (h, w)


def resize_image(img: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """uint8 H x W x 3 -> float32 in [0, 1], bilinear (PIL, antialiased when shrinking)."""
    if size is not None and img.shape[:2] != tuple(size):
        from PIL import Image

        img = np.asarray(Image.fromarray(img).resize((size[1], size[0]), Image.BILINEAR))
    return (img.astype(np.float32) / 255.0).astype(np.float32)


def resize_nearest(arr: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Nearest-neighbour resize of H x W (x C) arrays of any dtype (pixel centres, as PIL / cv2 NEAREST)."""
    if size is None or arr.shape[:2] == tuple(size):
        return arr
    h, w = arr.shape[:2]
    rows = np.minimum(((np.arange(size[0]) + 0.5) * h / size[0]).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(size[1]) + 0.5) * w / size[1]).astype(np.int64), w - 1)
    return arr[rows][:, cols]


def label_edges(labels: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Boundaries of a label map: 4-neighbour Laplacian != 0 (cv2.Laplacian ksize 1, reflect-101 border), thinned.

    This is how the PASCAL-Context multi-task loaders derive edges from ``LabelMap``. Returns float32 {0, 1}, with
    -1 where ``valid`` is False.
    """
    from scipy import ndimage

    from mtkd.metrics.boundary import thin

    kernel = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=np.float64)
    lap = ndimage.convolve(labels.astype(np.float64), kernel, mode="mirror")
    edge = thin(np.abs(lap) > 0).astype(np.float32)
    if valid is not None:
        edge[~valid] = -1
    return edge


def unit_normals(n: np.ndarray) -> np.ndarray:
    """H x W x 3 -> unit vectors, float32; (near-)zero vectors stay exactly zero (invalid)."""
    n = n.astype(np.float32)
    norm = np.linalg.norm(n, axis=-1, keepdims=True)
    ok = norm > 1e-6
    return np.where(ok, n / np.where(ok, norm, 1), 0).astype(np.float32)


# ------------------------------------------------------------------------------------------------- dispatch


def converter(name: str) -> Callable[..., Path]:
    if name not in CONVERTERS:
        raise suggest(name, CONVERTERS, "dataset converter")
    if name == "nyud_raw":
        from mtkd.datasets.nyud_raw import convert_nyud_raw as fn
    elif name == "nyud_mt":
        from mtkd.datasets.nyud_mt import convert_nyud_mt as fn
    elif name == "pascal_context":
        from mtkd.datasets.pascal_context import convert_pascal_context as fn
    else:
        from mtkd.datasets.cityscapes import convert_cityscapes as fn
    return fn


def convert(name: str, src: str | os.PathLike, out: str | os.PathLike, **options: Any) -> Path:
    """Convert the release ``name`` found at ``src`` into the training layout at ``out``; returns ``out``."""
    fn = converter(name)
    src = Path(src)
    if not src.exists():
        raise MtkdError(f"{src}: source does not exist")
    import inspect

    params = inspect.signature(fn).parameters
    unknown = [k for k in options if k not in params]
    if unknown:
        valid = [p for p in params if p not in ("src", "out")]
        raise suggest(unknown[0], valid, f"option of {name}")
    return fn(src, out, **options)

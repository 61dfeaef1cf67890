"""``FolderDataset``: one split of an MTAN-layout folder of ``.npy`` files, checked up front, as torch tensors.

What. Reads ``{root}/{split}/{folder}/{i}.npy`` (``docs/conventions.md``) and returns one sample per index::

    {"image": 3×H×W float32 in [0, 1] (raw: see below), "semseg": H×W long (-1 ignore), "depth": 1×H×W float32
     (0 invalid), "normal": 3×H×W float32 (all-zero invalid), "edge": 1×H×W float32 ({0, 1}, -1 invalid),
     "sal": 1×H×W float32 (-1 invalid), "parts": H×W long (-1 ignore), "index": int}

Only the requested ``tasks`` are read. Task -> folder: semseg ``label``, depth ``depth``, normal ``normal``, edge
``edge``, sal ``sal``, parts ``parts``; override with ``folders`` (Cityscapes: ``{"semseg": "label_19"}`` or
``"label_7"``).

Image normalisation. The dataset returns the image **un-normalised** in [0, 1] (uint8 files are divided by 255) so
that augmentation sees raw colours; ImageNet mean/std normalisation is the last step of the transform stage
(:class:`mtkd.data.transforms.Normalize`, also inside :class:`~mtkd.data.transforms.MultiTaskAugment`).
:class:`~mtkd.data.datamodule.MultiTaskDataModule` always installs one of the two, so batches are normalised.

Why the checks. A bad file found at step 40k (or silently masked) costs far more than reading every ``.npy``
header once: construction lists the folders and reads each file's header only (shape + dtype, no data), and
raises one :class:`~mtkd.errors.MtkdError` naming the file or folder: missing root / split / folder, unequal counts,
names that are not ``0.npy .. N-1.npy``, image not H×W×3, a map whose H×W differs from its image, a non-numeric
dtype. Per sample (``__getitem__``): NaN / inf anywhere (depth and normals included: they are an error, never
masked), class ids outside ``[-1, num_classes)`` or not integral.

Depth. ``depth`` is whatever the folder holds. Cityscapes converted with ``depth="disparity"`` (``meta.json``
``"depth": "disparity"``) and the MTAN Cityscapes release (``label_7`` / ``label_19`` folders, no ``meta.json``)
store **disparity**; with ``depth_from_disparity=False`` (default) it is kept as the "depth" target unchanged
(larger = nearer, 0 invalid; what MTAN / LibMTL train on). ``depth_from_disparity=True`` returns ``1 / d`` where
``d > 0`` (0 elsewhere): inverse disparity, proportional to metric depth with an unknown per-dataset factor
(baseline × focal length); it refuses a folder whose ``meta.json`` says the depth is already metric.
:attr:`FolderDataset.depth_is_disparity` tells the augmentation which way to rescale depth (see transforms).

``depth_range=(min, max)`` (``data.depth_range``; default none) is the evaluation range of depth benchmarks as a
validity mask: a target outside [min, max] (in the units the target has after ``depth_from_disparity``) becomes 0,
i.e. invalid for the loss and for every metric, on every split (on the stored values: the training scale
augmentation divides depth by its scale afterwards). Outdoor metric depth is usually capped at 80 m
(the KITTI / Eigen protocol); MTAN-layout disparity files are evaluated on every valid pixel (no range), as MTAN and
LibMTL do.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from mtkd.errors import MtkdError, first_line
from mtkd.tasks import TASKS, tasks_of_kind

__all__ = ["DEFAULT_FOLDERS", "FolderDataset", "dataset_info", "read_npy_header"]

DEFAULT_FOLDERS: dict[str, str] = {
    "semseg": "label", "depth": "depth", "normal": "normal", "edge": "edge", "sal": "sal", "parts": "parts",
}
SPLITS = ("train", "val")
CLASS_TASKS = tasks_of_kind("classes")  # integer class maps, -1 ignore (float maps: stored H×W or H×W×C)
_NAME = re.compile(r"^(0|[1-9][0-9]*)\.npy$")


def read_npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of a ``.npy`` file from its header alone (no data is read)."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    except OSError as e:
        raise MtkdError(f"{path}: cannot be read ({e.strerror or first_line(e)})") from None
    except Exception as e:  # noqa: BLE001 - numpy raises many types for a corrupt header
        raise MtkdError(f"{path}: not a valid .npy file ({type(e).__name__}: {first_line(e)})") from None
    return tuple(shape), np.dtype(dtype)


def _read_meta(root: Path) -> dict | None:
    p = root / "meta.json"
    if not p.is_file():
        return None
    try:
        meta = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise MtkdError(f"{p}: not valid JSON ({e})")
    if not isinstance(meta, dict):
        raise MtkdError(f"{p}: must hold a JSON object, got {type(meta).__name__}")
    return meta


def _class_folders(root: Path) -> list[str]:
    names = set()
    for split in SPLITS:
        d = root / split
        if d.is_dir():
            names |= {p.name for p in d.iterdir() if p.is_dir() and (p.name.startswith("label") or p.name == "parts")}
    return sorted(names)


def dataset_info(root: str | os.PathLike) -> dict[str, Any]:
    """What a dataset folder is: ``{"name", "classes": {key: [names]}, "num_classes": {key: n}, "depth",
    "has_meta"}``.

    From ``meta.json`` when present (``classes`` keyed by task and/or folder, e.g. Cityscapes ``semseg``,
    ``label_19``, ``label_7``). Without it, ``num_classes`` is inferred per class folder (``label*``, ``parts``) as
    max id + 1 over every file of both splits (reads the data: slow on large folders; write a meta.json), and
    ``name`` is the folder's name. ``depth`` is ``"disparity"`` when meta says so, or for a meta-less folder with
    ``label_7`` / ``label_19`` (the MTAN Cityscapes release); else ``meta["depth"]`` or ``"metric"``.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise MtkdError(f"{root}: dataset folder does not exist")
    meta = _read_meta(root)
    if meta is not None:
        classes = meta.get("classes") or {}
        if not isinstance(classes, dict) or not all(isinstance(v, list) for v in classes.values()):
            raise MtkdError(f"{root / 'meta.json'}: 'classes' must map a task or folder to a list of names")
        num = {k: len(v) for k, v in classes.items()}
        depth = meta.get("depth")
        if not isinstance(depth, str):
            depth = (meta.get("options") or {}).get("depth") if isinstance(meta.get("options"), dict) else None
        return {"name": str(meta.get("name", root.name)), "classes": dict(classes), "num_classes": num,
                "depth": depth if isinstance(depth, str) else "metric", "has_meta": True}
    num: dict[str, int] = {}
    folders = _class_folders(root)
    for folder in folders:
        top = -1
        for split in SPLITS:
            d = root / split / folder
            if not d.is_dir():
                continue
            for p in d.glob("*.npy"):
                arr = read_npy(p, mmap=True)
                _numeric(p, arr.dtype)
                ids = arr[np.isfinite(arr)] if np.issubdtype(arr.dtype, np.floating) else arr
                if ids.size:
                    top = max(top, int(ids.max()))
        num[folder] = top + 1
    if "label" in num:
        num["semseg"] = num["label"]
    cityscapes = any(f in folders for f in ("label_7", "label_19"))
    return {"name": root.name, "classes": {}, "num_classes": num,
            "depth": "disparity" if cityscapes else "metric", "has_meta": False}


class FolderDataset(torch.utils.data.Dataset):
    """One split (``"train"`` or ``"val"``, the MTAN name of the test split) of an MTAN-layout folder.

    ``indices`` restricts the dataset to those sample ids (position k returns file ``indices[k]``; its ``"index"``
    is the file id). ``transform(sample) -> sample`` runs last (see the module docstring about normalisation).
    ``num_classes`` overrides meta.json / the scan for the semseg task (and is required for nothing).
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", tasks: Sequence[str] = ("semseg", "depth", "normal"),
                 folders: dict[str, str] | None = None, indices: Sequence[int] | None = None,
                 transform: Callable[[dict], dict] | None = None, depth_from_disparity: bool = False,
                 num_classes: int | None = None, depth_range: Sequence[float] | None = None) -> None:
        self.root = Path(root).expanduser()
        if split not in SPLITS:
            raise MtkdError(f"split {split!r}: must be one of {', '.join(SPLITS)} ('val' is the MTAN test split)")
        if isinstance(tasks, str):
            tasks = (tasks,)
        tasks = tuple(tasks)
        unknown = [t for t in tasks if t not in DEFAULT_FOLDERS]
        if unknown:
            raise MtkdError(f"unknown task {unknown[0]!r}; valid: {', '.join(DEFAULT_FOLDERS)}")
        if not tasks:
            raise MtkdError("tasks: need at least one task")
        bad = [k for k in (folders or {}) if k not in DEFAULT_FOLDERS]
        if bad:
            raise MtkdError(f"folders: unknown task {bad[0]!r}; valid: {', '.join(DEFAULT_FOLDERS)}")
        self.split, self.tasks, self.transform = split, tasks, transform
        self.folders = {t: (folders or {}).get(t, DEFAULT_FOLDERS[t]) for t in tasks}
        self.depth_from_disparity = bool(depth_from_disparity)
        self.depth_range = check_depth_range(depth_range)

        if not self.root.is_dir():
            raise MtkdError(f"{self.root}: dataset folder does not exist")
        split_dir = self.root / split
        if not split_dir.is_dir():
            have = sorted(p.name for p in self.root.iterdir() if p.is_dir())
            raise MtkdError(f"{split_dir}: split folder missing (found: {', '.join(have) or 'nothing'})")
        have = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
        for folder in ["image", *self.folders.values()]:
            if not (split_dir / folder).is_dir():
                task = next((t for t, f in self.folders.items() if f == folder), "image")
                raise MtkdError(f"{split_dir / folder}: folder for {task!r} missing; this dataset has: "
                                f"{', '.join(have) or 'nothing'}")

        self.info = dataset_info(self.root)
        self.depth_is_disparity = self.info["depth"] == "disparity" and not self.depth_from_disparity
        if self.depth_from_disparity and "depth" in tasks and self.info["depth"] != "disparity" and self.info["has_meta"]:
            raise MtkdError(f"{self.root / 'meta.json'}: depth is {self.info['depth']!r}, not disparity; "
                            "depth_from_disparity=True would invert metric depth")
        self.num_classes: dict[str, int] = {}
        for t in tasks:
            if t in CLASS_TASKS:
                n = num_classes if (t == "semseg" and num_classes is not None) else \
                    self.info["num_classes"].get(self.folders[t], self.info["num_classes"].get(t))
                if n is None or n < 1:
                    raise MtkdError(f"{self.root}: number of classes for {t!r} (folder {self.folders[t]!r}) unknown: "
                                    "add classes to meta.json or pass num_classes")
                self.num_classes[t] = int(n)

        self.n = self._check_names(split_dir)
        self.sizes = self._check_headers(split_dir)
        self.indices = list(range(self.n)) if indices is None else [int(i) for i in indices]
        for i in self.indices:
            if not 0 <= i < self.n:
                raise MtkdError(f"indices: {i} out of range for {split_dir} with {self.n} samples")
        uniq = {self.sizes[i] for i in self.indices}
        self.image_size: tuple[int, int] | None = next(iter(uniq)) if len(uniq) == 1 else None

    # ------------------------------------------------------------------------------------------- construction
    def _check_names(self, split_dir: Path) -> int:
        counts = {}
        for folder in ["image", *self.folders.values()]:
            d = split_dir / folder
            names = [p.name for p in d.iterdir() if p.name.endswith(".npy")]
            bad = [nm for nm in names if not _NAME.match(nm)]
            if bad:
                raise MtkdError(f"{d / sorted(bad)[0]}: file name must be <i>.npy with i = 0 .. N-1")
            ids = sorted(int(nm[:-4]) for nm in names)
            if not ids:
                raise MtkdError(f"{d}: no .npy files")
            if ids[-1] != len(ids) - 1:
                missing = next(i for i in range(len(ids)) if i >= len(ids) or ids[i] != i)
                raise MtkdError(f"{d / f'{missing}.npy'}: missing (names must be 0 .. N-1 without gaps; "
                                f"{len(ids)} files, largest {ids[-1]}.npy)")
            counts[folder] = len(ids)
        n_img = counts["image"]
        for folder, n in counts.items():
            if n != n_img:
                raise MtkdError(f"{split_dir / folder}: {n} files but {split_dir / 'image'} has {n_img}")
        return n_img

    def _check_headers(self, split_dir: Path) -> list[tuple[int, int]]:
        sizes = []
        for i in range(self.n):
            p = split_dir / "image" / f"{i}.npy"
            shape, dtype = read_npy_header(p)
            _numeric(p, dtype)
            if len(shape) != 3 or shape[2] != 3:
                what = f"{shape[2]} channels" if len(shape) == 3 else f"{len(shape)} dimensions"
                raise MtkdError(f"{p}: image must be H×W×3, got shape {shape} ({what})")
            hw = shape[:2]
            for task, folder in self.folders.items():
                q = split_dir / folder / f"{i}.npy"
                lshape, ldtype = read_npy_header(q)
                _numeric(q, ldtype)
                if tuple(lshape[:2]) != hw:
                    raise MtkdError(f"{q}: {task} map is {'×'.join(map(str, lshape[:2]))}, "
                                    f"image {p.name} is {hw[0]}×{hw[1]} (H×W must match)")
                c = TASKS[task].channels or 1  # class maps: H×W
                ok = len(lshape) == 2 and c == 1 or len(lshape) == 3 and lshape[2] == c
                if not ok:
                    want = "H×W" if task in CLASS_TASKS else ("H×W or H×W×1" if c == 1 else f"H×W×{c}")
                    raise MtkdError(f"{q}: {task} must be {want}, got shape {lshape}")
            sizes.append((int(hw[0]), int(hw[1])))
        return sizes

    # ---------------------------------------------------------------------------------------------- samples
    def __len__(self) -> int:
        return len(self.indices)

    def path(self, index: int, folder: str) -> Path:
        return self.root / self.split / folder / f"{index}.npy"

    def load(self, index: int) -> dict[str, Any]:
        """File ``index`` (not a position) as tensors, checked, before the transform."""
        p = self.path(index, "image")
        img = read_npy(p)
        if img.dtype == np.uint8:
            img = img.astype(np.float32) / 255.0
        _finite(p, img, "image")
        out: dict[str, Any] = {"image": torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32).transpose(2, 0, 1).copy())}
        for task, folder in self.folders.items():
            q = self.path(index, folder)
            arr = read_npy(q)
            _finite(q, arr, task)
            if task in CLASS_TASKS:
                arr = arr.reshape(arr.shape[:2])
                if not np.issubdtype(arr.dtype, np.integer) and arr.size and not np.array_equal(arr, np.round(arr)):
                    raise MtkdError(f"{q}: {task} class ids must be integers")
                n = self.num_classes[task]
                lo, hi = (arr.min(), arr.max()) if arr.size else (0, 0)
                if lo < -1 or hi >= n:
                    bad = lo if lo < -1 else hi
                    raise MtkdError(f"{q}: {task} id {bad:g} outside [-1, {n}) (num_classes {n}, -1 = ignore)")
                out[task] = torch.from_numpy(arr.astype(np.int64))
            else:
                arr = arr.astype(np.float32).reshape(arr.shape[0], arr.shape[1], -1).transpose(2, 0, 1)
                if task == "depth" and self.depth_from_disparity:
                    arr = np.where(arr > 0, 1.0 / np.where(arr > 0, arr, 1.0), 0.0).astype(np.float32)
                if task == "depth" and self.depth_range is not None:
                    lo, hi = self.depth_range
                    arr = np.where((arr >= lo) & (arr <= hi), arr, 0.0).astype(np.float32)
                out[task] = torch.from_numpy(np.ascontiguousarray(arr))
        out["index"] = int(index)
        return out

    def check_values(self) -> None:
        """Read every sample once (no transform): the first NaN / inf or bad class id is one ``MtkdError`` now —
        for a split otherwise read only after training (the test split)."""
        for i in self.indices:
            self.load(i)

    def __getitem__(self, k: int) -> dict[str, Any]:
        sample = self.load(self.indices[k])
        return self.transform(sample) if self.transform is not None else sample


def check_depth_range(depth_range: Sequence[float] | None) -> tuple[float, float] | None:
    """``None`` or ``(min, max)`` with 0 ≤ min < max (``data.depth_range``)."""
    if depth_range is None:
        return None
    vals = None if isinstance(depth_range, (str, bytes)) else list(depth_range) if hasattr(depth_range, "__len__") else None
    ok = vals is not None and len(vals) == 2 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in vals)
    if not ok or not 0 <= vals[0] < vals[1]:
        raise MtkdError(f"data.depth_range must be [min, max] with 0 ≤ min < max (e.g. [0.001, 80]), got {depth_range!r}")
    return float(vals[0]), float(vals[1])


def read_npy(path: Path, mmap: bool = False) -> np.ndarray:
    """``np.load`` without pickles (memory-mapped with ``mmap``); a missing or unreadable file is one clear line
    naming it."""
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError:
        raise MtkdError(f"{path}: missing") from None
    except Exception as e:  # noqa: BLE001 - numpy raises many types for a corrupt file
        raise MtkdError(f"{path}: not a readable .npy ({type(e).__name__}: {first_line(e)})") from None


def _numeric(path: Path, dtype: np.dtype) -> None:
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating) or dtype == np.bool_):
        raise MtkdError(f"{path}: dtype {dtype} is not numeric (need an integer or float array)")


def _finite(path: Path, arr: np.ndarray, what: str) -> None:
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        kind = "NaN" if np.isnan(arr).any() else "inf"
        raise MtkdError(f"{path}: {what} contains {kind} ({int((~np.isfinite(arr)).sum())} values); "
                        "mark invalid pixels with the layout's invalid value instead")

"""PASCAL-Context multi-task release (``PASCAL_MT``: ASTMT, Maninis et al. CVPR 2019; reused by
Multi-Task-Learning-PyTorch, ATRC, InvPT).

Layout read: ``JPEGImages/<id>.jpg``, ``ImageSets/Context/{train,val}.txt`` (4998 / 5105 ids),
``semseg/VOC12/<id>.png`` or ``semseg/pascal-context/<id>.png`` (21 classes, 255 ignore), ``human_parts/<id>.mat``
(PASCAL-Part ``anno`` struct), ``normals_distill/<id>.png``, ``sal_distill/<id>.png``,
``pascal-context/trainval/<id>.mat`` (``LabelMap``, 459 classes).

Written (``train`` / ``val``): image; label (0..20, -1 ignore); parts (0 background, 1..6 head, torso, upper arm,
lower arm, upper leg, lower leg; all -1 when the image has no person with part annotations, which is also when the
reference evaluation skips the image); normal (n = 2p/255 - 1, normalised; zero (invalid) outside the
PASCAL-Context classes that exist in NYUD, as the reference loaders mask them, ``resources/
pascal_context_normals_valid.txt``; ``normals_mask=False`` keeps every pixel); sal (p/255 > 0.5 -> {0, 1}, as
ATRC's loader binarises it); edge (``LabelMap`` Laplacian != 0, thinned; evaluate with max_dist 0.0075).

PASCAL-Part struct as ``scipy.io.loadmat`` exposes it: ``anno[0, 0]['objects'][0, k]`` has fields ``class``,
``class_ind`` (15 = person), ``mask`` and ``parts``; ``parts[0, j]`` has ``part_name`` and ``mask``; an object
without parts has an empty ``parts`` array. Fields are read by name, falling back to position (the reference loaders
index ``anno[0][0][1][0]``, ``obj[1]``, ``obj[2]``, ``obj[3]``).
Images keep their native size unless ``size`` is given (then bilinear image, nearest labels, edges recomputed from
the resized ``LabelMap``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from mtkd.datasets.convert import (
    Plan,
    check_labels,
    check_same_size,
    find_file,
    label_edges,
    parse_size,
    read_image,
    read_list,
    read_lines,
    read_png,
    read_table,
    resize_image,
    resize_nearest,
    run_plan,
    unit_normals,
)
from mtkd.errors import MtkdError

PERSON = 15
TASKS = ("semseg", "parts", "normal", "sal", "edge")
_FOLDER = {"semseg": "label", "parts": "parts", "normal": "normal", "sal": "sal", "edge": "edge"}


def _loadmat(path: Path) -> dict:
    import scipy.io

    if not path.is_file():
        raise MtkdError(f"{path}: missing")
    try:
        return scipy.io.loadmat(str(path))
    except Exception as e:
        raise MtkdError(f"{path}: not a readable v5 .mat file ({type(e).__name__}: {e})")


def _field(rec, name: str, pos: int, path: Path):
    try:
        return rec[name]
    except (ValueError, KeyError, IndexError, TypeError):
        try:
            return rec[pos]
        except Exception:
            raise MtkdError(f"{path}: PASCAL-Part struct lacks field {name!r}")


def _scalar(x) -> Any:
    a = np.asarray(x)
    while a.dtype == object and a.size == 1:
        a = np.asarray(a.reshape(-1)[0])
    return a.reshape(-1)[0] if a.size else None


def _text(x) -> str:
    a = np.asarray(x)
    while a.dtype == object and a.size == 1:
        a = np.asarray(a.reshape(-1)[0])
    return str(a.reshape(-1)[0]) if a.size else ""


def read_label_map(path: Path) -> np.ndarray:
    m = _loadmat(path)
    if "LabelMap" not in m:
        raise MtkdError(f"{path}: no key 'LabelMap' (has: {', '.join(k for k in m if not k.startswith('__'))})")
    return np.asarray(m["LabelMap"])


def read_human_parts(path: Path, shape: tuple[int, int], part_ids: dict[str, int]) -> np.ndarray:
    """H x W int16 part map (0 background, 1..6), or all -1 when no person object carries part annotations."""
    m = _loadmat(path)
    if "anno" not in m:
        raise MtkdError(f"{path}: no key 'anno' (has: {', '.join(k for k in m if not k.startswith('__'))})")
    try:
        anno = np.asarray(m["anno"]).reshape(-1)[0]
    except IndexError:
        raise MtkdError(f"{path}: empty 'anno'")
    objects = np.asarray(_field(anno, "objects", 1, path)).reshape(-1)
    target = None
    for obj in objects:
        cls = _scalar(_field(obj, "class_ind", 1, path))
        parts = np.asarray(_field(obj, "parts", 3, path)).reshape(-1)
        if cls is None or int(cls) != PERSON or parts.size == 0:
            continue
        if target is None:
            target = np.zeros(shape, dtype=np.int16)
        for part in parts:
            name = _text(_field(part, "part_name", 0, path))
            if name not in part_ids:
                raise MtkdError(f"{path}: unknown person part name {name!r}")
            mask = np.asarray(_field(part, "mask", 1, path)).astype(bool)
            if mask.shape != tuple(shape):
                raise MtkdError(f"{path}: part mask {mask.shape[1]}x{mask.shape[0]} differs from the image "
                                f"({shape[1]}x{shape[0]})")
            target[mask] = part_ids[name]
    if target is None:
        return np.full(shape, -1, dtype=np.int16)
    return target


def convert_pascal_context(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    size: Any = None,
    progress: bool = True,
    tasks: Any = TASKS,
    normals_mask: bool = True,
) -> Path:
    """Convert the PASCAL-Context multi-task release at ``src`` (see module doc)."""
    src = Path(src)
    hw = parse_size(size)
    tasks = tuple(tasks.split(",")) if isinstance(tasks, str) else tuple(tasks)
    for t in tasks:
        if t not in TASKS:
            from mtkd.registry import suggest

            raise suggest(t, TASKS, "PASCAL-Context task")
    part_ids = {r[0]: int(r[1]) for r in read_table("pascal_human_parts6.tsv")}
    valid_normals = np.array([int(v) for v in read_list("pascal_context_normals_valid.txt")])
    class_names = read_list("pascal_voc21_classes.txt")
    splits = {s: read_lines(src / "ImageSets" / "Context" / f"{s}.txt") for s in ("train", "val")}
    for ids in splits.values():
        for sid in ids:
            find_file(src / "JPEGImages", sid, (".jpg",))

    def semseg_path(sid: str) -> Path:
        for sub in ("VOC12", "pascal-context"):
            p = src / "semseg" / sub / f"{sid}.png"
            if p.is_file():
                return p
        raise MtkdError(f"{src / 'semseg' / 'VOC12' / (sid + '.png')}: missing (nor in semseg/pascal-context)")

    def load(split: str, i: int, sid: str) -> dict[str, np.ndarray]:
        ip = src / "JPEGImages" / f"{sid}.jpg"
        img = read_image(ip)
        shape = img.shape[:2]
        out_: dict[str, np.ndarray] = {"image": resize_image(img, hw)}
        lmap = None
        lp = src / "pascal-context" / "trainval" / f"{sid}.mat"
        if "edge" in tasks or ("normal" in tasks and normals_mask):
            lmap = read_label_map(lp)
            check_same_size(img, ip, lmap, lp)
        if "semseg" in tasks:
            sp = semseg_path(sid)
            seg = read_png(sp)
            if seg.ndim != 2:
                raise MtkdError(f"{sp}: semseg must be a single-channel PNG, got shape {seg.shape}")
            check_same_size(img, ip, seg, sp)
            check_labels(seg, list(range(21)) + [255], sp)
            lab = np.where(seg == 255, -1, seg.astype(np.int16))  # cast first: uint8 cannot hold -1
            out_["label"] = resize_nearest(lab, hw)
        if "parts" in tasks:
            pp = src / "human_parts" / f"{sid}.mat"
            out_["parts"] = resize_nearest(read_human_parts(pp, shape, part_ids), hw)
        if "normal" in tasks:
            np_ = find_file(src / "normals_distill", sid, (".png",))
            raw = read_png(np_, modes=("RGB",))
            check_same_size(img, ip, raw, np_)
            n = unit_normals(raw.astype(np.float32) * (2.0 / 255.0) - 1.0)
            if normals_mask:
                n[~np.isin(lmap, valid_normals)] = 0
            out_["normal"] = resize_nearest(n, hw)
        if "sal" in tasks:
            salp = find_file(src / "sal_distill", sid, (".png",))
            s = read_png(salp)
            if s.ndim == 3:
                s = s[..., 0]
            check_same_size(img, ip, s, salp)
            out_["sal"] = resize_nearest((s.astype(np.float32) / 255.0 > 0.5).astype(np.float32), hw)
        if "edge" in tasks:
            out_["edge"] = label_edges(resize_nearest(lmap, hw))
        return out_

    folders = ("image",) + tuple(_FOLDER[t] for t in TASKS if t in tasks)
    meta = {
        "classes": {"semseg": class_names,
                    "parts": ["background", "head", "torso", "upper arm", "lower arm", "upper leg", "lower leg"]},
        "source": "PASCAL-Context multi-task release (PASCAL_MT: ASTMT / Multi-Task-Learning-PyTorch / ATRC)",
        "protocol": {
            "splits": "ImageSets/Context/train.txt -> train, val.txt -> val (the split papers report on)",
            "semseg": "21 classes, 255 -> -1", "parts": "6 parts + background; no annotated person -> all -1",
            "normal": "distilled, 2p/255-1, normalised" + ("; zero outside NYU-compatible classes" if normals_mask
                                                           else ""),
            "sal": "distilled, p/255 > 0.5; evaluate maxF (beta^2 0.3) over 19 thresholds",
            "edge": "LabelMap Laplacian != 0, thinned; evaluate odsF with max_dist 0.0075 (SEISM)",
        },
    }
    options = {"size": list(hw) if hw else None, "tasks": list(tasks), "normals_mask": bool(normals_mask)}
    return run_plan(Plan("pascal_context", splits, folders, load, meta, options), out, progress)

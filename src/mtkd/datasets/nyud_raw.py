"""NYUD-v2 from the official labelled release: ``nyu_depth_v2_labeled.mat`` + ``splits.mat`` (Silberman et al. 2012).

Reads (MATLAB v7.3 = HDF5 through h5py, where MATLAB's column-major arrays come transposed: ``images``
N x 3 x 640 x 480 uint8, ``depths`` N x 640 x 480 float32 metres, ``labels`` N x 640 x 480, 0 = unlabelled,
1..894; an older v5 .mat through scipy, H x W x [3 x] N, is accepted too) and ``splits.mat`` (``trainNdxs`` 795,
``testNdxs`` 654, 1-based; v5 or v7.3). Writes ``train`` (trainNdxs) and ``val`` (testNdxs, the split papers
report on) with folders image, label, depth, edge.

Labels: ``classes=894`` keeps the raw classes (0-based, -1 unlabelled). ``classes=40`` applies Gupta et al.'s
894 -> 40 mapping and ``classes=13`` (default, the MTAN layout) additionally Couprie et al.'s 40 -> 13 (shipped in
``resources/nyu40_to_13.tsv``). The 894 -> 40 table (``classMapping40.mat``, nyuv2-meta-data repository) is not
shipped: pass ``class_map40=PATH`` to the official file.
Depth: ``depths`` (the in-painted maps; all pixels valid), nearest resize. Normals are not in the raw release and
are not computed here (no ``normal`` folder; use the ``nyud_mt`` release for normals).
Edges: label-map Laplacian != 0, thinned, at the output resolution; pixels on or next to unlabelled pixels are
invalid (-1), since a boundary with an unlabelled region is an annotation artefact.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from mtkd.datasets.convert import Plan, label_edges, parse_size, read_table, resize_image, resize_nearest, run_plan
from mtkd.errors import MtkdError


class MatFile:
    """Uniform access to a MATLAB .mat, v7.3 (HDF5, h5py, lazy) or v5 (scipy.io.loadmat, eager)."""

    def __init__(self, path: Path):
        import h5py

        self.path = Path(path)
        if not self.path.is_file():
            raise MtkdError(f"{self.path}: missing")
        self.hdf5 = False
        try:
            is_h5 = h5py.is_hdf5(str(self.path))
        except Exception:
            is_h5 = False
        if is_h5:
            try:
                self.f = h5py.File(self.path, "r")
            except Exception as e:
                raise MtkdError(f"{self.path}: unreadable MATLAB v7.3 (HDF5) file ({type(e).__name__}: {e})")
            self.hdf5 = True
        else:
            import scipy.io

            try:
                self.f = scipy.io.loadmat(str(self.path))
            except Exception as e:
                raise MtkdError(
                    f"{self.path}: neither a MATLAB v7.3 (HDF5) nor a v5 .mat file, or truncated "
                    f"({type(e).__name__}: {e})"
                )

    def keys(self) -> list[str]:
        return [k for k in self.f.keys() if not k.startswith("__") and k != "#refs#"]

    def need(self, key: str):
        if key not in self.f:
            raise MtkdError(f"{self.path}: no key {key!r} (has: {', '.join(sorted(self.keys())) or 'nothing'})")
        return self.f[key]

    def read(self, what: str, fn):
        try:
            return fn()
        except MtkdError:
            raise
        except Exception as e:
            raise MtkdError(f"{self.path}: cannot read {what} ({type(e).__name__}: {e}); truncated file?")

    def vector(self, key: str) -> np.ndarray:
        ds = self.need(key)
        return self.read(key, lambda: np.asarray(ds[()] if self.hdf5 else ds).reshape(-1))

    def close(self) -> None:
        if self.hdf5:
            self.f.close()


class NyuArrays:
    """Per-sample H x W (x 3) arrays from the labelled .mat, in image orientation whatever the .mat version."""

    def __init__(self, mat: MatFile):
        self.mat = mat
        self.images = mat.need("images")
        self.depths = mat.need("depths")
        self.labels = mat.need("labels")
        expected = ("N x 3 x 640 x 480 / N x 640 x 480 (MATLAB v7.3 through h5py, W before H)" if mat.hdf5
                    else "480 x 640 x 3 x N / 480 x 640 x N (MATLAB v5, H before W)")
        found = f"images {self.images.shape}, depths {self.depths.shape}, labels {self.labels.shape}"
        if mat.hdf5:
            n = self.images.shape[0]
            ok = self.images.ndim == 4 and self.images.shape[1] == 3 and self.depths.shape[0] == n
            hw = tuple(self.images.shape[3:1:-1]) if ok else None  # stored W x H
            ok = ok and tuple(self.depths.shape[1:]) == tuple(self.images.shape[2:])
        else:
            n = self.images.shape[-1]
            ok = self.images.ndim == 4 and self.images.shape[2] == 3 and self.depths.shape[-1] == n
            hw = tuple(self.images.shape[:2]) if ok else None
            ok = ok and tuple(self.depths.shape[:2]) == tuple(self.images.shape[:2])
        ok = ok and self.labels.shape == self.depths.shape
        if not ok:
            raise MtkdError(f"{mat.path}: unexpected shapes {found}; expected {expected}")
        if hw[0] > hw[1]:  # the official frames are landscape (480 x 640): these would come out portrait
            raise MtkdError(f"{mat.path}: arrays not in the official orientation: {found} would give "
                            f"{hw[0]} x {hw[1]} (portrait) images; expected {expected} — re-save the .mat as released")
        self.n = int(n)

    def get(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        def load():
            if self.mat.hdf5:  # N x 3 x W x H -> H x W x 3
                img = np.asarray(self.images[i]).transpose(2, 1, 0)
                dep = np.asarray(self.depths[i]).T
                lab = np.asarray(self.labels[i]).T
            else:
                img = np.asarray(self.images[..., i])
                dep = np.asarray(self.depths[..., i])
                lab = np.asarray(self.labels[..., i])
            return np.ascontiguousarray(img), np.ascontiguousarray(dep), np.ascontiguousarray(lab)

        return self.mat.read(f"sample {i + 1}", load)

    def names(self) -> list[str] | None:
        if not self.mat.hdf5 or "names" not in self.mat.f:
            return None
        try:
            f = self.mat.f
            refs = np.asarray(f["names"]).reshape(-1)
            return ["".join(chr(int(c)) for c in np.asarray(f[r]).reshape(-1)) for r in refs]
        except Exception:
            return None


def _read_map40(path: str | os.PathLike) -> np.ndarray:
    """Lookup table raw label (0..894) -> 40-class id (0..40) from the official ``classMapping40.mat``."""
    mat = MatFile(Path(path))
    key = "mapClass" if "mapClass" in mat.f else None
    if key is None:
        cands = [k for k in mat.keys() if np.asarray(mat.f[k]).size == 894]
        if not cands:
            raise MtkdError(f"{path}: no 'mapClass' (894 values) in {sorted(mat.keys())}")
        key = cands[0]
    m = mat.vector(key).astype(np.int64)
    mat.close()
    if m.size != 894 or m.min() < 0 or m.max() > 40:
        raise MtkdError(f"{path}: {key!r} must hold 894 values in 0..40, got {m.size} in {m.min()}..{m.max()}")
    return np.concatenate([[0], m])


def nyu40_to_13() -> tuple[list[str], np.ndarray, list[str]]:
    """(40 names, lookup 0..40 -> 0..13 with 0 = unknown, 13 names) from ``resources/nyu40_to_13.tsv``."""
    rows = read_table("nyu40_to_13.tsv")
    names40 = [r[1] for r in rows]
    lut = np.zeros(41, dtype=np.int64)
    names13 = [""] * 13
    for r in rows:
        lut[int(r[0])] = int(r[2])
        names13[int(r[2]) - 1] = r[3]
    return names40, lut, names13


def convert_nyud_raw(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    size: Any = None,
    progress: bool = True,
    classes: int = 13,
    class_map40: str | os.PathLike | None = None,
    labeled_mat: str = "nyu_depth_v2_labeled.mat",
    splits_mat: str = "splits.mat",
) -> Path:
    """Convert the official NYUD-v2 labelled .mat (see module doc). ``size``: None (480 x 640) or (H, W)."""
    src = Path(src)
    hw = parse_size(size)
    classes = int(classes)
    if classes not in (13, 40, 894):
        raise MtkdError(f"classes={classes}: choose 13, 40 or 894")
    if classes in (13, 40) and class_map40 is None:
        raise MtkdError(
            f"classes={classes} from the raw 894 labels needs the 894->40 mapping: add class_map40=PATH (e.g. "
            "mtkd data convert nyud_raw SRC OUT class_map40=classMapping40.mat) with classMapping40.mat from the "
            "nyuv2-meta-data repository, or use classes=894"
        )
    lut = None
    if classes != 894:
        lut = _read_map40(class_map40)  # raw -> 0..40
        names40, lut13, names13 = nyu40_to_13()
        if classes == 13:
            lut = lut13[lut]
        names = names40 if classes == 40 else names13
        lut = lut - 1  # 0 (unlabelled / unknown) -> -1
    labeled_path = src / labeled_mat if src.is_dir() else src
    splits_path = (src if src.is_dir() else src.parent) / splits_mat
    mat = MatFile(labeled_path)
    arrays = NyuArrays(mat)
    if classes == 894:
        names = arrays.names() or [f"class_{k}" for k in range(1, 895)]
        lut = np.arange(895) - 1
    sp = MatFile(splits_path)
    splits: dict[str, list[str]] = {}
    for out_split, key in (("train", "trainNdxs"), ("val", "testNdxs")):
        idx = sp.vector(key).astype(np.int64)
        bad = idx[(idx < 1) | (idx > arrays.n)]
        if bad.size:
            raise MtkdError(f"{splits_path}: {key} names image {int(bad[0])}, but {labeled_path} has {arrays.n}")
        splits[out_split] = [str(int(k)) for k in idx]
    sp.close()

    def load(split: str, i: int, sid: str) -> dict[str, np.ndarray]:
        k = int(sid) - 1
        img, dep, lab = arrays.get(k)
        where = f"{labeled_path} (image {sid})"
        if lab.min() < 0 or lab.max() > 894 or not np.all(lab == np.round(lab)):
            raise MtkdError(f"{where}: label values outside 0..894 (min {lab.min()}, max {lab.max()})")
        lab = lut[lab.astype(np.int64)]
        img = resize_image(img.astype(np.uint8), hw)
        dep = resize_nearest(dep.astype(np.float32), hw)
        dep = np.where(np.isfinite(dep) & (dep > 0), dep, 0).astype(np.float32)[..., None]
        lab = resize_nearest(lab, hw).astype(np.int16)
        from scipy import ndimage

        invalid = ndimage.binary_dilation(lab < 0, structure=np.ones((3, 3), bool))
        edge = label_edges(lab, valid=~invalid)
        return {"image": img, "label": lab, "depth": dep, "edge": edge}

    meta = {
        "classes": {"semseg": list(names)},
        "source": f"NYUD-v2 official labelled release ({labeled_path.name}, {splits_path.name})",
        "protocol": {
            "splits": "train = trainNdxs (795), val = testNdxs (654), the split papers report on",
            "semseg": f"{classes} classes" + (" (894->40 Gupta et al. from class_map40, 40->13 Couprie et al.)"
                                              if classes == 13 else " (894->40 Gupta et al.)" if classes == 40 else ""),
            "depth": "metres, in-painted `depths`, nearest resize",
            "normal": "absent (not in the raw release)",
            "edge": "label Laplacian != 0, thinned; -1 next to unlabelled; evaluate odsF with max_dist 0.011",
        },
    }
    options = {"size": list(hw) if hw else None, "classes": classes,
               "class_map40": str(class_map40) if class_map40 else None}
    try:
        return run_plan(Plan("nyud_raw", splits, ("image", "label", "depth", "edge"), load, meta, options),
                        out, progress)
    finally:
        mat.close()

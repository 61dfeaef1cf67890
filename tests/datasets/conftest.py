"""Tiny fake releases written in the real formats (folder names, file types, dtypes, orientations, ignore values)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

MATLAB_HEADER = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."


def write_v73(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """A MATLAB v7.3 file: HDF5 with a 512-byte userblock holding the MATLAB text header (arrays given as h5py sees
    them, i.e. already transposed)."""
    import h5py

    with h5py.File(path, "w", userblock_size=512) as f:
        for k, v in arrays.items():
            f.create_dataset(k, data=v)
    with open(path, "r+b") as f:
        f.write(MATLAB_HEADER.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM")


def make_nyud_raw(root: Path, n: int = 5, h: int = 12, w: int = 16, splits_v73: bool = False, seed: int = 0):
    """nyu_depth_v2_labeled.mat (v7.3) + splits.mat; returns the images/depths/labels in image orientation."""
    import scipy.io

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    imgs = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    deps = rng.uniform(0.5, 9.0, (n, h, w)).astype(np.float32)
    labs = np.zeros((n, h, w), dtype=np.uint16)
    for i in range(n):  # blocky labels incl. unlabelled 0
        coarse = rng.integers(0, 895, (3, 4))
        labs[i] = np.kron(coarse, np.ones((h // 3 + 1, w // 4 + 1), dtype=np.int64))[:h, :w]
        labs[i, 0, :3] = 0
    write_v73(root / "nyu_depth_v2_labeled.mat", {
        "images": imgs.transpose(0, 3, 2, 1),  # N x 3 x W x H as h5py shows MATLAB's H x W x 3 x N
        "depths": deps.transpose(0, 2, 1),
        "labels": labs.transpose(0, 2, 1),
    })
    train = np.array([1, 3, 4], dtype=np.float64)
    test = np.array([2, 5], dtype=np.float64)
    if splits_v73:
        write_v73(root / "splits.mat", {"trainNdxs": train[None, :], "testNdxs": test[None, :]})
    else:
        scipy.io.savemat(root / "splits.mat", {"trainNdxs": train[:, None], "testNdxs": test[:, None]})
    return imgs, deps, labs, [0, 2, 3], [1, 4]


def make_class_map40(path: Path, seed: int = 1) -> np.ndarray:
    import scipy.io

    m = np.random.default_rng(seed).integers(0, 41, 894).astype(np.float64)
    scipy.io.savemat(path, {"mapClass": m[None, :], "className": np.array(["wall"], dtype=object)})
    return m.astype(np.int64)


def make_nyud_mt(root: Path, png: bool = False, h: int = 10, w: int = 14, seed: int = 0):
    rng = np.random.default_rng(seed)
    for d in ("images", "segmentation", "depth", "normals", "edge", "gt_sets"):
        (root / d).mkdir(parents=True, exist_ok=True)
    ids = {"train": ["0003", "0007", "0010"], "val": ["0001", "0002"]}
    data = {}
    for split, names in ids.items():
        (root / "gt_sets" / f"{split}.txt").write_text("\n".join(names) + "\n")
        for sid in names:
            img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            seg = rng.integers(0, 41, (h, w)).astype(np.uint8)
            dep = rng.uniform(0, 5, (h, w)).astype(np.float32)
            dep[0, 0] = 0
            nor = rng.normal(size=(h, w, 3)).astype(np.float32)
            nor /= np.linalg.norm(nor, axis=-1, keepdims=True)
            edge = (rng.random((h, w)) < 0.2).astype(np.float32)
            Image.fromarray(seg).save(root / "segmentation" / f"{sid}.png")
            np.save(root / "depth" / f"{sid}.npy", dep)
            if png:
                Image.fromarray(img).save(root / "images" / f"{sid}.png")
                p = np.clip(np.round((nor + 1) * 255 / 2), 0, 255).astype(np.uint8)
                Image.fromarray(p).save(root / "normals" / f"{sid}.png")
                Image.fromarray((edge * 255).astype(np.uint8)).save(root / "edge" / f"{sid}.png")
                nor = p.astype(np.float32) * 2 / 255 - 1
                nor /= np.linalg.norm(nor, axis=-1, keepdims=True)
            else:
                Image.fromarray(img).save(root / "images" / f"{sid}.jpg", quality=95)
                np.save(root / "normals" / f"{sid}.npy", nor)
                np.save(root / "edge" / f"{sid}.npy", edge)
            data[sid] = dict(seg=seg, dep=dep, nor=nor, edge=edge)
    return ids, data


def _struct(fields: list[str], rows: list[tuple]) -> np.ndarray:
    """A MATLAB 1 x n struct array as scipy.io.savemat writes it (numpy structured array of objects)."""
    arr = np.zeros((1, len(rows)), dtype=[(f, object) for f in fields])
    for j, row in enumerate(rows):
        for f, v in zip(fields, row):
            arr[0, j][f] = v
    return arr


def make_pascal(root: Path, h: int = 10, w: int = 12, seed: int = 0):
    import scipy.io

    rng = np.random.default_rng(seed)
    for d in ("JPEGImages", "ImageSets/Context", "semseg/VOC12", "semseg/pascal-context", "human_parts",
              "normals_distill", "sal_distill", "pascal-context/trainval"):
        (root / d).mkdir(parents=True, exist_ok=True)
    ids = {"train": ["2008_000002", "2008_000003", "2008_000007"], "val": ["2008_000008", "2008_000015"]}
    data = {}
    for k, (split, names) in enumerate(ids.items()):
        (root / "ImageSets" / "Context" / f"{split}.txt").write_text("\n".join(names) + "\n")
    for j, sid in enumerate(ids["train"] + ids["val"]):
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(img).save(root / "JPEGImages" / f"{sid}.jpg", quality=95)
        seg = rng.integers(0, 21, (h, w)).astype(np.uint8)
        seg[0, :2] = 255
        sub = "VOC12" if j % 2 == 0 else "pascal-context"
        Image.fromarray(seg).save(root / "semseg" / sub / f"{sid}.png")
        lmap = np.kron(rng.integers(1, 460, (2, 3)), np.ones((h // 2, w // 3), dtype=np.int64)).astype(np.uint16)
        lmap[:, :4] = 284  # person (NYU-compatible class: normals valid there)
        lmap[:, -2:] = 360  # sky (not in NYU: normals invalid)
        scipy.io.savemat(root / "pascal-context" / "trainval" / f"{sid}.mat", {"LabelMap": lmap})
        nor = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(nor).save(root / "normals_distill" / f"{sid}.png")
        sal = rng.integers(0, 256, (h, w), dtype=np.uint8)
        Image.fromarray(sal).save(root / "sal_distill" / f"{sid}.png")
        # PASCAL-Part: person with parts (j == 0, 3), person without parts (j == 1), a cat only (others)
        m_head = np.zeros((h, w), np.uint8); m_head[1:3, 1:3] = 1
        m_luarm = np.zeros((h, w), np.uint8); m_luarm[4:6, 1:3] = 1
        m_rfoot = np.zeros((h, w), np.uint8); m_rfoot[7:9, 2:4] = 1
        body = np.zeros((h, w), np.uint8); body[1:9, 1:4] = 1
        part_rows = [("head", m_head), ("luarm", m_luarm), ("rfoot", m_rfoot)]
        parts = _struct(["part_name", "mask"], part_rows)
        empty = np.zeros((0, 0), dtype=np.uint8)
        if j in (0, 3):
            objs = [("cat", np.array([[8]]), body, empty), ("person", np.array([[15]]), body, parts)]
        elif j == 1:
            objs = [("person", np.array([[15]]), body, empty)]
        else:
            objs = [("cat", np.array([[8]]), body, empty)]
        objects = _struct(["class", "class_ind", "mask", "parts"], objs)
        anno = _struct(["imname", "objects"], [(sid, objects)])
        scipy.io.savemat(root / "human_parts" / f"{sid}.mat", {"anno": anno})
        data[sid] = dict(img=img, seg=seg, lmap=lmap, nor=nor, sal=sal, has_parts=j in (0, 3),
                         parts={"head": m_head, "luarm": m_luarm, "rfoot": m_rfoot})
    return ids, data


def make_cityscapes(root: Path, h: int = 16, w: int = 32, seed: int = 0):
    rng = np.random.default_rng(seed)
    layout = {"train": [("aachen", "aachen_000000_000019"), ("aachen", "aachen_000001_000019"),
                        ("bochum", "bochum_000000_000313")],
              "val": [("frankfurt", "frankfurt_000000_000294")]}
    data = {}
    for split, items in layout.items():
        for city, stem in items:
            for pkg in ("leftImg8bit", "gtFine", "disparity", "camera"):
                (root / pkg / split / city).mkdir(parents=True, exist_ok=True)
            img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            lab = rng.integers(0, 34, (h, w)).astype(np.uint8)
            disp = rng.integers(0, 30000, (h, w)).astype(np.uint16)
            disp[0, :4] = 0
            cam = {"extrinsic": {"baseline": 0.209313 + 0.01 * len(data), "pitch": 0.038, "roll": 0.0,
                                 "x": 1.7, "y": 0.0, "yaw": -0.0195, "z": 1.18},
                   "intrinsic": {"fx": 2262.52 + len(data), "fy": 2265.30, "u0": 1096.98, "v0": 513.137}}
            Image.fromarray(img).save(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png")
            Image.fromarray(lab).save(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png")
            Image.fromarray(disp).save(root / "disparity" / split / city / f"{stem}_disparity.png")
            (root / "camera" / split / city / f"{stem}_camera.json").write_text(json.dumps(cam))
            data[(split, city, stem)] = dict(img=img, lab=lab, disp=disp, cam=cam)
    return layout, data


def load_split(out: Path, split: str, folder: str) -> list[np.ndarray]:
    d = out / split / folder
    n = len(list(d.glob("*.npy")))
    return [np.load(d / f"{i}.npy") for i in range(n)]


@pytest.fixture
def tmp(tmp_path) -> Path:
    return tmp_path

"""Tests for ``FolderDataset`` / ``dataset_info``: sample layout, and one MtkdError naming the file per bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mtkd.data.folder import FolderDataset, dataset_info
from mtkd.data.rooms import CLASSES, write_rooms
from mtkd.errors import MtkdError

H, W = 6, 8


def make_mtan(root: Path, n: dict | None = None, classes: int | None = 5, folders=("label", "depth", "normal", "edge"),
              seed: int = 0) -> Path:
    """A tiny MTAN folder: {root}/{train,val}/{image,folders...}/{i}.npy (+ meta.json when classes)."""
    rng = np.random.default_rng(seed)
    for split, count in (n or {"train": 5, "val": 3}).items():
        for folder in ("image", *folders):
            (root / split / folder).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            np.save(root / split / "image" / f"{i}.npy", rng.random((H, W, 3), dtype=np.float32))
            for folder in folders:
                if folder.startswith("label") or folder == "parts":
                    a = rng.integers(-1, classes or 4, (H, W)).astype(np.int16)
                elif folder == "depth":
                    a = (rng.random((H, W, 1)) * 5).astype(np.float32)
                elif folder == "normal":
                    v = rng.normal(size=(H, W, 3))
                    a = (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)
                else:
                    a = (rng.random((H, W)) > 0.8).astype(np.float32)
                np.save(root / split / folder / f"{i}.npy", a)
    if classes:
        (root / "meta.json").write_text(json.dumps({"name": "tiny", "classes": {"semseg": [f"c{k}" for k in range(classes)]}}))
    return root


def test_sample_layout_and_dtypes(tmp_path):
    root = make_mtan(tmp_path)
    ds = FolderDataset(root, "train", tasks=("semseg", "depth", "normal", "edge"))
    assert len(ds) == 5 and ds.image_size == (H, W) and ds.num_classes == {"semseg": 5}
    s = ds[2]
    assert s["image"].shape == (3, H, W) and s["image"].dtype == torch.float32
    assert s["semseg"].shape == (H, W) and s["semseg"].dtype == torch.long
    assert s["depth"].shape == (1, H, W) and s["normal"].shape == (3, H, W) and s["edge"].shape == (1, H, W)
    assert s["index"] == 2
    raw = np.load(root / "train" / "image" / "2.npy")
    assert torch.equal(s["image"], torch.from_numpy(raw).permute(2, 0, 1))  # raw [0, 1]: normalised by transforms
    assert torch.equal(s["normal"], torch.from_numpy(np.load(root / "train" / "normal" / "2.npy")).permute(2, 0, 1))
    sub = FolderDataset(root, "val", tasks=("depth",), indices=[2, 0])
    assert len(sub) == 2 and sub[0]["index"] == 2 and set(sub[0]) == {"image", "depth", "index"}
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["image"].shape == (4, 3, H, W) and batch["semseg"].shape == (4, H, W)


def test_rooms_folder_reads(tmp_path):
    root = write_rooms(tmp_path / "rooms", n_train=3, n_test=2, height=24, width=32, progress=False)
    ds = FolderDataset(root, "val", tasks=("semseg", "depth", "normal", "edge"))
    assert len(ds) == 2 and ds.num_classes["semseg"] == len(CLASSES) and ds.image_size == (24, 32)
    s = ds[1]
    assert s["edge"].shape == (1, 24, 32) and s["semseg"].min() >= -1 and s["semseg"].max() < len(CLASSES)
    assert dataset_info(root)["name"] == "rooms"


def _err(match: str, *args, **kw) -> MtkdError:
    with pytest.raises(MtkdError, match=match) as e:
        ds = FolderDataset(*args, **kw)
        for i in range(len(ds)):
            ds[i]
    assert "\n" not in str(e.value)
    return e.value


def test_missing_root_split_folder(tmp_path):
    _err("does not exist", tmp_path / "nope")
    root = make_mtan(tmp_path / "d", n={"train": 2})
    _err(r"val: split folder missing", root, "val")
    e = _err(r"sal.*folder for 'sal' missing; this dataset has: depth, edge, image, label, normal", root, "train",
             tasks=("sal",))
    _err(r"label_19: folder for 'semseg' missing", root, "train", folders={"semseg": "label_19"})
    _err("unknown task 'segm'", root, "train", tasks=("segm",))


def test_counts_and_names(tmp_path):
    root = make_mtan(tmp_path)
    (root / "train" / "depth" / "4.npy").unlink()
    _err(r"train/depth: 4 files but .*train/image has 5", root, "train")
    root = make_mtan(tmp_path / "b")
    (root / "train" / "image" / "1.npy").rename(root / "train" / "image" / "7.npy")
    _err(r"train/image/1\.npy: missing", root, "train")
    root = make_mtan(tmp_path / "c")
    np.save(root / "train" / "label" / "05.npy", np.zeros((H, W)))
    _err(r"train/label/05\.npy: file name", root, "train")


def test_shapes_and_dtypes(tmp_path):
    root = make_mtan(tmp_path)
    np.save(root / "train" / "image" / "3.npy", np.zeros((H, W, 4), np.float32))
    _err(r"train/image/3\.npy: image must be H×W×3.*4 channels", root, "train")
    root = make_mtan(tmp_path / "b")
    np.save(root / "train" / "label" / "1.npy", np.zeros((H, W + 1), np.int16))
    _err(r"train/label/1\.npy: semseg map is 6×9, image 1\.npy is 6×8", root, "train")
    root = make_mtan(tmp_path / "c")
    np.save(root / "train" / "normal" / "0.npy", np.zeros((H, W, 2), np.float32))
    _err(r"train/normal/0\.npy: normal must be H×W×3", root, "train")
    root = make_mtan(tmp_path / "d")
    np.save(root / "train" / "depth" / "2.npy", np.full((H, W, 1), "a"))
    _err(r"train/depth/2\.npy: dtype <U1 is not numeric", root, "train")
    root = make_mtan(tmp_path / "e")
    (root / "train" / "edge" / "2.npy").write_bytes(b"not a npy")
    _err(r"train/edge/2\.npy: not a valid \.npy", root, "train", tasks=("edge",))


@pytest.mark.parametrize("folder,task", [("image", "image"), ("depth", "depth"), ("normal", "normal"), ("edge", "edge")])
def test_nan_inf_named(tmp_path, folder, task):
    root = make_mtan(tmp_path)
    p = root / "train" / folder / "3.npy"
    a = np.load(p)
    a.flat[5] = np.nan if folder != "edge" else np.inf
    np.save(p, a)
    _err(rf"train/{folder}/3\.npy: {task} contains {'inf' if folder == 'edge' else 'NaN'}", root, "train",
         tasks=("semseg", "depth", "normal", "edge"))


def test_label_range(tmp_path):
    root = make_mtan(tmp_path)
    a = np.zeros((H, W), np.int16)
    a[0, 0] = 5
    np.save(root / "train" / "label" / "4.npy", a)
    _err(r"train/label/4\.npy: semseg id 5 outside \[-1, 5\)", root, "train")
    a[0, 0] = -2
    np.save(root / "train" / "label" / "4.npy", a)
    _err(r"train/label/4\.npy: semseg id -2", root, "train")
    np.save(root / "train" / "label" / "4.npy", np.full((H, W), 1.5))
    _err(r"train/label/4\.npy: semseg class ids must be integers", root, "train")
    np.save(root / "train" / "label" / "4.npy", np.full((H, W), 3.0))  # MTAN stores float labels: accepted
    assert FolderDataset(root, "train", num_classes=7)[4]["semseg"].dtype == torch.long


def test_dataset_info_without_meta(tmp_path):
    root = make_mtan(tmp_path, classes=None)
    info = dataset_info(root)
    assert not info["has_meta"] and info["name"] == tmp_path.name and info["depth"] == "metric"
    top = max(int(np.load(p).max()) for p in root.glob("*/label/*.npy"))
    assert info["num_classes"]["semseg"] == top + 1
    assert FolderDataset(root).num_classes["semseg"] == top + 1


def test_cityscapes_variant_disparity(tmp_path):
    root = make_mtan(tmp_path, classes=None, folders=("label_7", "label_19", "depth"))
    (root / "meta.json").write_text(json.dumps({"name": "cityscapes", "depth": "disparity", "classes": {
        "semseg": [f"c{k}" for k in range(19)], "label_19": [f"c{k}" for k in range(19)],
        "label_7": [f"k{k}" for k in range(7)]}}))
    d = np.load(root / "train" / "depth" / "0.npy")
    d[0, 0, 0] = 0.0
    np.save(root / "train" / "depth" / "0.npy", d)
    ds = FolderDataset(root, "train", tasks=("semseg", "depth"), folders={"semseg": "label_7"})
    assert ds.num_classes["semseg"] == 7 and ds.depth_is_disparity
    assert torch.equal(ds[0]["depth"][0], torch.from_numpy(d[..., 0]))  # kept as disparity by default
    conv = FolderDataset(root, "train", tasks=("depth",), depth_from_disparity=True)
    want = np.where(d[..., 0] > 0, 1.0 / np.maximum(d[..., 0], 1e-30), 0.0)
    assert not conv.depth_is_disparity
    np.testing.assert_allclose(conv[0]["depth"][0].numpy(), want, rtol=1e-6)
    assert FolderDataset(root, "train", tasks=("semseg",), folders={"semseg": "label_19"}).num_classes["semseg"] == 19
    # metric depth in meta: refusing to invert it
    (root / "meta.json").write_text(json.dumps({"name": "cityscapes", "depth": "metric", "classes": {"semseg": ["a"] * 19}}))
    _err("depth is 'metric', not disparity", root, "train", tasks=("depth",), depth_from_disparity=True)
    # the MTAN release: label_7 / label_19 and no meta.json -> disparity
    (root / "meta.json").unlink()
    assert dataset_info(root)["depth"] == "disparity"


def test_depth_range_is_a_validity_mask_on_every_split(tmp_path):
    """data.depth_range: targets outside [min, max] read as 0 (invalid), the rest unchanged; bad ranges refused."""
    from mtkd.data.datamodule import MultiTaskDataModule

    root = make_mtan(tmp_path)
    for split in ("train", "val"):
        raw = np.load(root / split / "depth" / "1.npy")[..., 0]
        got = FolderDataset(root, split, tasks=("depth",), depth_range=(1.0, 4.0))[1]["depth"][0].numpy()
        want = np.where((raw >= 1.0) & (raw <= 4.0), raw, 0)
        assert (want == 0).sum() > (raw == 0).sum()  # the range removed some pixels
        np.testing.assert_array_equal(got, want)
    dm = MultiTaskDataModule(root=str(root), dataset="folder", tasks=("depth",), batch_size=2, depth_range=[1.0, 4.0],
                             augment=False)  # the scale augmentation rescales depth after the mask
    dm.setup()
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        d = next(iter(loader))["depth"]
        assert bool(((d == 0) | ((d >= 1.0) & (d <= 4.0))).all())
    for bad in ([4.0, 1.0], [1.0], [-1.0, 2.0], "80"):
        with pytest.raises(MtkdError, match="depth_range"):
            FolderDataset(root, "train", tasks=("depth",), depth_range=bad)

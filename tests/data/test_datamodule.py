"""Tests for ``MultiTaskDataModule``: seeded disjoint train / validation split, select_on, loaders, properties."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mtkd.data.datamodule import MultiTaskDataModule
from mtkd.data.rooms import CLASSES
from mtkd.errors import MtkdError

ROOMS = {"n_train": 12, "n_test": 4, "height": 24, "width": 32}


@pytest.fixture(scope="module")
def rooms_dir(tmp_path_factory):
    dm = MultiTaskDataModule(data_dir=str(tmp_path_factory.mktemp("cache")), rooms=ROOMS)
    dm.prepare_data()
    return dm.root


def test_rooms_end_to_end(rooms_dir, tmp_path):
    dm = MultiTaskDataModule(data_dir=str(rooms_dir.parent), rooms=ROOMS, tasks=("semseg", "depth", "normal", "edge"),
                             batch_size=4, val_fraction=0.25)
    assert dm.root == rooms_dir and "rooms-12-4-24x32-s0" in dm.root.name
    assert dm.num_classes == len(CLASSES) and dm.image_size == (24, 32) and dm.dataset_name == "rooms"
    assert dm.task_channels == {"semseg": len(CLASSES), "depth": 1, "normal": 3, "edge": 1}
    dm.prepare_data()  # idempotent
    dm.setup("fit")
    assert len(dm.train_set) == 9 and len(dm.val_set) == 3 and len(dm.test_set) == 4
    assert not set(dm.train_indices) & set(dm.val_indices)
    assert sorted(dm.train_indices + dm.val_indices) == list(range(12))
    batches = list(dm.train_dataloader())
    assert len(batches) == 2  # drop_last: 9 samples, batch 4
    b = batches[0]
    assert b["image"].shape == (4, 3, 24, 32) and b["semseg"].dtype == torch.long and b["edge"].shape == (4, 1, 24, 32)
    assert set(b["index"].tolist()) <= set(dm.train_indices)
    v = list(dm.val_dataloader())
    assert sum(len(x["index"]) for x in v) == 3 and set(torch.cat([x["index"] for x in v]).tolist()) == set(dm.val_indices)
    t = next(iter(dm.test_dataloader()))
    raw = torch.from_numpy(np.load(rooms_dir / "val" / "image" / "0.npy")).permute(2, 0, 1)
    mean, std = torch.tensor([0.485, 0.456, 0.406])[:, None, None], torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    assert torch.allclose(t["image"][0], (raw - mean) / std, atol=1e-6)  # test: normalised, not augmented


def test_split_deterministic_by_seed(rooms_dir):
    def split(seed):
        dm = MultiTaskDataModule(root=str(rooms_dir), rooms=ROOMS, val_fraction=0.25, seed=seed)
        dm.setup()
        return dm.train_indices, dm.val_indices
    assert split(0) == split(0)
    assert split(0)[1] != split(1)[1] or split(0)[1] != split(2)[1]


def test_train_loader_reproducible(rooms_dir):
    def first(seed):
        torch.manual_seed(123)
        dm = MultiTaskDataModule(root=str(rooms_dir), rooms=ROOMS, batch_size=2, seed=seed)
        return next(iter(dm.train_dataloader()))
    a, b = first(0), first(0)
    assert torch.equal(a["index"], b["index"]) and torch.equal(a["image"], b["image"])


def test_select_on_test_and_limit(rooms_dir):
    dm = MultiTaskDataModule(root=str(rooms_dir), rooms=ROOMS, select_on="test", batch_size=2)
    dm.setup()
    assert len(dm.train_set) == 12 and dm.val_set is dm.test_set and dm.val_indices == []
    assert [x["index"].tolist() for x in dm.val_dataloader()] == [x["index"].tolist() for x in dm.test_dataloader()]
    dm = MultiTaskDataModule(root=str(rooms_dir), rooms=ROOMS, limit_train=5, augment=False)
    dm.setup()
    assert len(dm.train_set) == 5 and not set(dm.train_indices) & set(dm.val_indices)
    assert len(list(dm.train_dataloader())) == 1  # 5 <= batch 8: no drop_last


def test_bad_arguments(tmp_path):
    with pytest.raises(MtkdError, match="needs root"):
        MultiTaskDataModule(dataset="folder")
    with pytest.raises(MtkdError, match="select_on"):
        MultiTaskDataModule(select_on="train")
    with pytest.raises(MtkdError, match="nothing to select on"):
        MultiTaskDataModule(val_fraction=0.0)
    with pytest.raises(MtkdError, match="unknown key 'n'"):
        MultiTaskDataModule(rooms={"n": 3})
    dm = MultiTaskDataModule(root=str(tmp_path / "none"), dataset="folder")
    with pytest.raises(MtkdError, match="none: dataset folder does not exist"):
        dm.setup()


def test_cityscapes_folder(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("val", 2)):
        for f in ("image", "label_7", "label_19", "depth"):
            (tmp_path / split / f).mkdir(parents=True)
        for i in range(n):
            np.save(tmp_path / split / "image" / f"{i}.npy", rng.random((8, 16, 3)).astype(np.float32))
            np.save(tmp_path / split / "label_7" / f"{i}.npy", rng.integers(-1, 7, (8, 16)).astype(np.float32))
            np.save(tmp_path / split / "label_19" / f"{i}.npy", rng.integers(-1, 19, (8, 16)).astype(np.float32))
            np.save(tmp_path / split / "depth" / f"{i}.npy", rng.random((8, 16, 1)).astype(np.float32))
    (tmp_path / "meta.json").write_text(json.dumps({"name": "cityscapes", "depth": "disparity",
                                                     "classes": {"semseg": ["x"] * 19, "label_7": ["y"] * 7}}))
    dm = MultiTaskDataModule(root=str(tmp_path), dataset="folder", tasks=("semseg", "depth"),
                             folders={"semseg": "label_7"}, batch_size=2, val_fraction=0.2)
    assert dm.num_classes == 7 and dm.task_channels == {"semseg": 7, "depth": 1} and dm.image_size == (8, 16)
    assert dm.dataset_name == "cityscapes"
    dm.setup()
    assert dm.train_set.transform.disparity  # disparity kept: scale augmentation multiplies it
    b = next(iter(dm.train_dataloader()))
    assert b["semseg"].max() < 7 and b["depth"].shape == (2, 1, 8, 16)
    dm19 = MultiTaskDataModule(root=str(tmp_path), dataset="folder", tasks=("semseg",), folders={"semseg": "label_19"})
    assert dm19.num_classes == 19

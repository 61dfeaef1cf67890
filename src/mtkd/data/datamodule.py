"""``MultiTaskDataModule``: train / validation / test loaders over an MTAN-layout folder or the embedded ``rooms``.

Splits. The MTAN ``train`` folder is split by a permutation seeded with ``seed``: ``val_fraction`` of it (at least
one sample) becomes the **validation** split used for model selection (checkpoint choice, early stopping), the rest
is trained on. The MTAN ``val`` folder is the **test** split, reported once at the end.

``feedback_fraction`` (default 0) holds out a third part of the MTAN ``train`` folder, disjoint from both: the
**feedback** split, for methods that adapt training from held-out measurements (JointDistill's teacher weights,
seed 001's 15 %). It is only ever evaluated (no gradient reaches the student from it), never selected on, never
trained on; ``feedback_dataloader()`` serves it un-augmented.

``select_on="test"`` reproduces the reference codebases (MTAN, LibMTL, ...): training uses the whole ``train``
folder and the validation loader *is* the test split, so the model is selected on the numbers it is reported on.
That flatters results (selection bias) and is offered only to reproduce published tables.

Images come out normalised (ImageNet mean / std): training samples go through
:class:`~mtkd.data.transforms.MultiTaskAugment` (``augment=True``) or :class:`~mtkd.data.transforms.Normalize`,
validation and test samples through ``Normalize`` only.

``dataset="rooms"``: ``prepare_data`` renders :func:`mtkd.data.rooms.write_rooms` (parameters ``rooms``: n_train,
n_test, height, width, seed; idempotent) into ``root``, or ``{data_dir or ~/.cache/mtkd}/rooms-<params>``.
``dataset="folder"``: ``root`` is required and read as is.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from mtkd.data.folder import FolderDataset, check_depth_range, dataset_info
from mtkd.data.transforms import MultiTaskAugment, Normalize
from mtkd.errors import MtkdError
from mtkd.tasks import TASKS

__all__ = ["MultiTaskDataModule", "ROOMS_DEFAULTS"]

ROOMS_DEFAULTS = {"n_train": 800, "n_test": 200, "height": 96, "width": 128, "seed": 0}


class MultiTaskDataModule(L.LightningDataModule):
    def __init__(self, root: str | None = None, dataset: str = "rooms",
                 tasks: Sequence[str] = ("semseg", "depth", "normal"), batch_size: int = 8, num_workers: int = 0,
                 val_fraction: float = 0.1, select_on: str = "val", augment: bool = True, seed: int = 0,
                 rooms: dict[str, int] | None = None, folders: dict[str, str] | None = None,
                 depth_from_disparity: bool = False, limit_train: int | None = None,
                 data_dir: str | None = None, num_classes: int | None = None,
                 feedback_fraction: float = 0.0, depth_range: Sequence[float] | None = None) -> None:
        super().__init__()
        if dataset not in ("rooms", "folder"):
            raise MtkdError(f"dataset {dataset!r}: must be 'rooms' or 'folder'")
        if select_on not in ("val", "test"):
            raise MtkdError(f"select_on {select_on!r}: must be 'val' or 'test'")
        if not 0.0 <= val_fraction < 1.0:
            raise MtkdError(f"val_fraction {val_fraction}: must be in [0, 1)")
        if not 0.0 <= feedback_fraction < 1.0 or val_fraction + feedback_fraction >= 1.0:
            raise MtkdError(f"feedback_fraction {feedback_fraction}: must be in [0, 1) with val_fraction + "
                            f"feedback_fraction < 1 (val_fraction {val_fraction})")
        if select_on == "val" and val_fraction == 0.0:
            raise MtkdError("val_fraction 0 with select_on='val': nothing to select on (use select_on='test' "
                            "to select on the test split, or val_fraction > 0)")
        if batch_size < 1 or num_workers < 0:
            raise MtkdError(f"batch_size {batch_size} / num_workers {num_workers}: need >= 1 / >= 0")
        if limit_train is not None and limit_train < 1:
            raise MtkdError(f"limit_train {limit_train}: must be >= 1 or None")
        self.tasks = (tasks,) if isinstance(tasks, str) else tuple(tasks)
        self.dataset, self.batch_size, self.num_workers = dataset, int(batch_size), int(num_workers)
        self.val_fraction, self.select_on, self.augment, self.seed = float(val_fraction), select_on, augment, int(seed)
        self.feedback_fraction = float(feedback_fraction)
        self.depth_range = check_depth_range(depth_range)  # validity mask on every split (see FolderDataset)
        self.folders, self.depth_from_disparity, self.limit_train = folders, depth_from_disparity, limit_train
        self._num_classes_arg = num_classes
        if dataset == "rooms":
            bad = [k for k in (rooms or {}) if k not in ROOMS_DEFAULTS]
            if bad:
                raise MtkdError(f"rooms: unknown key {bad[0]!r}; valid: {', '.join(ROOMS_DEFAULTS)}")
            self.rooms = {**ROOMS_DEFAULTS, **(rooms or {})}
            if root is None:
                r = self.rooms
                base = Path(data_dir).expanduser() if data_dir else Path("~/.cache/mtkd").expanduser()
                root = str(base / f"rooms-{r['n_train']}-{r['n_test']}-{r['height']}x{r['width']}-s{r['seed']}")
        else:
            self.rooms = None
            if root is None:
                raise MtkdError("dataset='folder' needs root (the MTAN-layout folder)")
        self.root = Path(root).expanduser()
        self.train_set = self.val_set = self.test_set = self.feedback_set = None
        self.feedback_indices: list[int] = []
        self.train_indices: list[int] = []
        self._shuffle_gen = torch.Generator().manual_seed(self.seed)  # one stream: a rebuilt loader continues it
        self.val_indices: list[int] = []

    def state_dict(self) -> dict[str, Any]:
        """The shuffle stream, saved in checkpoints: a resumed run draws the epoch orders it would have drawn."""
        return {"shuffle_generator": self._shuffle_gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "shuffle_generator" in state:
            self._shuffle_gen.set_state(state["shuffle_generator"])

    # ---------------------------------------------------------------------------------------------- data
    def prepare_data(self) -> None:
        if self.dataset == "rooms":
            from mtkd.data.rooms import write_rooms

            r = self.rooms
            write_rooms(self.root, r["n_train"], r["n_test"], r["height"], r["width"], r["seed"],
                        progress=sys.stdout.isatty())  # a bar on a terminal; nothing in a log file

    def _make(self, split: str, indices: Sequence[int] | None, transform: Any) -> FolderDataset:
        return FolderDataset(self.root, split, self.tasks, self.folders, indices, transform,
                             self.depth_from_disparity, self._num_classes_arg, self.depth_range)

    def split_indices(self, n: int) -> tuple[list[int], list[int]]:
        """(train, validation) file ids of the MTAN train folder with ``n`` samples: disjoint, seeded."""
        train, val, _ = self.split_all(n)
        return train, val

    def split_all(self, n: int) -> tuple[list[int], list[int], list[int]]:
        """(train, validation, feedback) file ids of the MTAN train folder: disjoint, seeded. Validation takes the
        first ``val_fraction`` of one seeded permutation, feedback the next ``feedback_fraction`` (so adding a
        feedback split leaves the validation split as it was)."""
        if self.select_on == "val" and n < 2:
            raise MtkdError(f"{self.root / 'train'}: {n} sample(s); need >= 2 to hold out a validation split")
        n_val = 0 if self.select_on == "test" else min(n - 1, max(1, int(round(self.val_fraction * n))))
        n_fb = max(1, int(round(self.feedback_fraction * n))) if self.feedback_fraction > 0 else 0
        if n - n_val - n_fb < 1:
            raise MtkdError(f"{self.root / 'train'}: {n} sample(s); need more to hold out {n_val} validation and "
                            f"{n_fb} feedback sample(s) and still train")
        perm = np.random.default_rng([self.seed, 0x5A1]).permutation(n)
        val, fb = sorted(perm[:n_val].tolist()), sorted(perm[n_val:n_val + n_fb].tolist())
        train = sorted(perm[n_val + n_fb:].tolist())
        if self.limit_train is not None and self.limit_train < len(train):
            keep = np.random.default_rng([self.seed, 0x11]).permutation(len(train))[: self.limit_train]
            train = sorted(train[i] for i in keep)
        return train, val, fb

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        if not self.root.is_dir():
            raise MtkdError(f"{self.root}: dataset folder does not exist"
                            + (" (call prepare_data() first)" if self.dataset == "rooms" else ""))
        full = self._make("train", None, None)
        self.train_indices, self.val_indices, self.feedback_indices = self.split_all(len(full))
        train_tf = MultiTaskAugment(disparity=full.depth_is_disparity) if self.augment else Normalize()
        self.train_set = self._make("train", self.train_indices, train_tf)
        self.test_set = self._make("val", None, Normalize())
        self.val_set = self._make("train", self.val_indices, Normalize()) if self.val_indices else self.test_set
        if self.feedback_indices:
            self.feedback_set = self._make("train", self.feedback_indices, Normalize())
        for ds in (self.train_set, self.val_set, self.test_set):
            if ds.image_size is None and self.batch_size > 1:
                sizes = sorted({ds.sizes[i] for i in ds.indices})
                raise MtkdError(f"{ds.root / ds.split / 'image'}: images of different sizes {sizes[:3]}; "
                                "batching needs one size (convert with a fixed size)")
        if stage == "fit":  # the test split is read only after training: a NaN in it is found before
            self.test_set.check_values()

    def _loader(self, ds: FolderDataset, train: bool) -> DataLoader:
        kw: dict[str, Any] = {"batch_size": self.batch_size, "num_workers": self.num_workers,
                              "persistent_workers": self.num_workers > 0}
        if train:
            kw.update(shuffle=True, drop_last=len(ds) > self.batch_size,
                      generator=self._shuffle_gen)
        else:
            kw.update(shuffle=False, drop_last=False)
        return DataLoader(ds, **kw)

    def _need(self) -> None:
        if self.train_set is None:
            self.setup()

    def train_dataloader(self) -> DataLoader:
        self._need()
        return self._loader(self.train_set, True)

    def val_dataloader(self) -> DataLoader:
        self._need()
        return self._loader(self.val_set, False)

    def test_dataloader(self) -> DataLoader:
        self._need()
        return self._loader(self.test_set, False)

    def feedback_dataloader(self) -> DataLoader:
        """The held-out feedback split, in file order, un-augmented (see ``feedback_fraction``)."""
        self._need()
        if self.feedback_set is None:
            raise MtkdError("this run has no feedback split; set data.feedback_fraction > 0 (seed 001: 0.15)")
        return self._loader(self.feedback_set, False)

    def train_probe_images(self, n: int) -> torch.Tensor:
        """The first ``n`` training images (file order), un-augmented: fixed images the student trains on anyway."""
        self._need()
        ds = self._make("train", self.train_indices[:n], Normalize())
        return torch.stack([ds[i]["image"] for i in range(len(ds))])

    # ---------------------------------------------------------------------------------------- properties
    @property
    def dataset_name(self) -> str:
        if self.dataset == "rooms":
            return "rooms"
        return dataset_info(self.root)["name"]

    @property
    def num_classes(self) -> int:
        """Semantic classes of the semseg task (available before prepare_data for rooms)."""
        if self._num_classes_arg is not None:
            return int(self._num_classes_arg)
        if self.train_set is not None and "semseg" in self.train_set.num_classes:
            return self.train_set.num_classes["semseg"]
        if self.dataset == "rooms":
            from mtkd.data.rooms import CLASSES

            return len(CLASSES)
        folder = (self.folders or {}).get("semseg", "label")
        num = dataset_info(self.root)["num_classes"]
        n = num.get(folder, num.get("semseg"))
        if n is None:
            raise MtkdError(f"{self.root}: number of semseg classes unknown (folder {folder!r}); "
                            "add classes to meta.json or pass num_classes")
        return int(n)

    @property
    def task_channels(self) -> dict[str, int]:
        out = {}
        for t in self.tasks:
            if t == "semseg":
                out[t] = self.num_classes
            elif t == "parts":
                out[t] = (self.train_set.num_classes["parts"] if self.train_set is not None
                          else dataset_info(self.root)["num_classes"].get((self.folders or {}).get("parts", "parts")))
            else:
                out[t] = TASKS[t].channels
        return out

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of the samples (available before prepare_data for rooms)."""
        if self.train_set is not None and self.train_set.image_size is not None:
            return self.train_set.image_size
        if self.dataset == "rooms":
            return (int(self.rooms["height"]), int(self.rooms["width"]))
        from mtkd.data.folder import read_npy_header

        shape, _ = read_npy_header(self.root / "train" / "image" / "0.npy")
        return (int(shape[0]), int(shape[1]))

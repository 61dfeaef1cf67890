"""NYUD multi-task release (npy variant and InvPT PNG variant) end to end, and its bad inputs."""

import json

import numpy as np
import pytest
from conftest import load_split, make_nyud_mt
from PIL import Image

from mtkd.datasets import convert
from mtkd.errors import MtkdError


@pytest.mark.parametrize("png", [False, True])
def test_end_to_end(tmp, png):
    ids, data = make_nyud_mt(tmp / "src", png=png)
    out = convert("nyud_mt", tmp / "src", tmp / "out", progress=False)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["splits"] == {"train": 3, "val": 2} and len(meta["classes"]["semseg"]) == 40
    for split, names in ids.items():
        for k, sid in enumerate(names):
            d = data[sid]
            ext = ".png" if png else ".jpg"
            img = np.asarray(Image.open(tmp / "src" / "images" / f"{sid}{ext}").convert("RGB")) / 255.0
            np.testing.assert_allclose(load_split(out, split, "image")[k], img, atol=1e-6)
            np.testing.assert_array_equal(load_split(out, split, "label")[k], d["seg"].astype(int) - 1)
            np.testing.assert_allclose(load_split(out, split, "depth")[k][..., 0], d["dep"])
            np.testing.assert_allclose(load_split(out, split, "normal")[k], d["nor"], atol=1e-5)
            np.testing.assert_array_equal(load_split(out, split, "edge")[k], d["edge"])


def test_13_classes_and_size(tmp):
    ids, data = make_nyud_mt(tmp / "src")
    out = convert("nyud_mt", tmp / "src", tmp / "out", classes=13, size=(5, 7), progress=False)
    lab = load_split(out, "train", "label")[0]
    assert lab.shape == (5, 7) and lab.min() >= -1 and lab.max() <= 12
    assert load_split(out, "train", "normal")[0].shape == (5, 7, 3)


def test_bad_inputs(tmp):
    ids, data = make_nyud_mt(tmp / "src")
    src = tmp / "src"
    (src / "gt_sets" / "val.txt").write_text("0001\n9999\n")
    with pytest.raises(MtkdError, match=r"images/9999.jpg: missing"):
        convert("nyud_mt", src, tmp / "o1", progress=False)
    (src / "gt_sets" / "val.txt").write_text("0001\n0002\n")
    seg = data["0003"]["seg"].copy()
    seg[0, 0] = 41
    Image.fromarray(seg).save(src / "segmentation" / "0003.png")
    with pytest.raises(MtkdError, match=r"segmentation/0003.png: label values \[41\] outside"):
        convert("nyud_mt", src, tmp / "o2", progress=False)
    Image.fromarray(seg[:, :-1] % 41).save(src / "segmentation" / "0003.png")
    with pytest.raises(MtkdError, match=r"segmentation/0003.png: size 13x10 differs"):
        convert("nyud_mt", src, tmp / "o3", progress=False)

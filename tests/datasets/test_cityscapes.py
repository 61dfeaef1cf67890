"""Cityscapes official packages end to end (16-bit disparity PNG, camera JSON), and bad inputs."""

import json

import numpy as np
import pytest
from conftest import load_split, make_cityscapes
from PIL import Image

from mtkd.datasets import convert
from mtkd.errors import MtkdError

# cityscapesScripts labels.py, as given in the brief (independent of the shipped resource file)
TRAIN = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13, 27: 14,
         28: 15, 31: 16, 32: 17, 33: 18}
CAT = {**{i: -1 for i in range(7)}, 7: 0, 8: 0, 9: 0, 10: 0, **{i: 1 for i in range(11, 17)},
       **{i: 2 for i in range(17, 21)}, 21: 3, 22: 3, 23: 4, 24: 5, 25: 5, **{i: 6 for i in range(26, 34)}}


def test_uint16_png_round_trip(tmp):
    a = np.array([[0, 1, 257, 65535]], dtype=np.uint16)
    Image.fromarray(a).save(tmp / "d.png")
    im = Image.open(tmp / "d.png")
    assert im.mode == "I;16" and np.array_equal(np.asarray(im), a) and np.asarray(im).dtype == np.uint16


def test_end_to_end_metric_full_size(tmp):
    layout, data = make_cityscapes(tmp / "src")
    out = convert("cityscapes", tmp / "src", tmp / "out", size=None, progress=False)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["splits"] == {"train": 3, "val": 1} and meta["depth"] == "metric"
    lut19 = np.array([TRAIN.get(i, -1) for i in range(34)])
    lut7 = np.array([CAT[i] for i in range(34)])
    far = []
    for split, items in layout.items():
        for k, (city, stem) in enumerate(sorted(items)):
            d = data[(split, city, stem)]
            np.testing.assert_allclose(load_split(out, split, "image")[k], d["img"] / 255.0, atol=1e-6)
            np.testing.assert_array_equal(load_split(out, split, "label_19")[k], lut19[d["lab"]])
            np.testing.assert_array_equal(load_split(out, split, "label_7")[k], lut7[d["lab"]])
            p = d["disp"].astype(np.float64)
            disp = np.where(p > 0, (p - 1) / 256, 0)
            b, fx = d["cam"]["extrinsic"]["baseline"], d["cam"]["intrinsic"]["fx"]
            want = np.where(disp > 0, b * fx / np.where(disp > 0, disp, 1), 0)
            far.append(int((want > 80).sum()))
            want = np.where(want <= 80, want, 0)  # the default validity mask: beyond 80 m is invalid
            np.testing.assert_allclose(load_split(out, split, "depth")[k][..., 0], want, rtol=1e-5)
            assert (load_split(out, split, "depth")[k][0, :4] == 0).all()
    assert sum(far) > 0  # the fixture has far points, so the mask was exercised
    uncapped = convert("cityscapes", tmp / "src", tmp / "uncapped", size=None, progress=False, max_depth=None)
    assert max(float(a.max()) for a in load_split(uncapped, "train", "depth")) > 80
    with pytest.raises(MtkdError, match="min_depth"):
        convert("cityscapes", tmp / "src", tmp / "bad", size=None, progress=False, min_depth=90.0)


def test_disparity_resized_scales_with_width(tmp):
    layout, data = make_cityscapes(tmp / "src")
    out = convert("cityscapes", tmp / "src", tmp / "out", size=(8, 16), depth="disparity", progress=False)
    d = data[("val", "frankfurt", "frankfurt_000000_000294")]
    p = d["disp"].astype(np.float64)[1::2, 1::2]
    want = np.where(p > 0, (p - 1) / 256, 0) * 0.5
    np.testing.assert_allclose(load_split(out, "val", "depth")[0][..., 0], want, rtol=1e-6)
    assert load_split(out, "val", "label_19")[0].shape == (8, 16)


def test_bad_inputs(tmp):
    layout, data = make_cityscapes(tmp / "src")
    src = tmp / "src"
    stem, city = "aachen_000001_000019", "aachen"
    cam = src / "camera" / "train" / city / f"{stem}_camera.json"
    cam.write_text(json.dumps({"extrinsic": {}, "intrinsic": {"fx": 1.0}}))
    with pytest.raises(MtkdError, match=rf"{stem}_camera.json: camera JSON lacks extrinsic.baseline"):
        convert("cityscapes", src, tmp / "o1", progress=False)
    cam.write_text(json.dumps(data[("train", city, stem)]["cam"]))
    disp = src / "disparity" / "train" / city / f"{stem}_disparity.png"
    Image.fromarray((data[("train", city, stem)]["disp"] // 256).astype(np.uint8)).save(disp)
    with pytest.raises(MtkdError, match=rf"{stem}_disparity.png: PNG mode 'L'"):
        convert("cityscapes", src, tmp / "o2", progress=False)
    Image.fromarray(data[("train", city, stem)]["disp"]).save(disp)
    lab = src / "gtFine" / "train" / city / f"{stem}_gtFine_labelIds.png"
    Image.fromarray(data[("train", city, stem)]["lab"][:, :-2]).save(lab)
    with pytest.raises(MtkdError, match=rf"{stem}_gtFine_labelIds.png: size 30x16 differs"):
        convert("cityscapes", src, tmp / "o3", progress=False)
    bad = data[("train", city, stem)]["lab"].copy()
    bad[0, 0] = 40
    Image.fromarray(bad).save(lab)
    with pytest.raises(MtkdError, match=rf"{stem}_gtFine_labelIds.png: label values \[40\]"):
        convert("cityscapes", src, tmp / "o4", progress=False)

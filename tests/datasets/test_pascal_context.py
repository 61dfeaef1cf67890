"""PASCAL-Context multi-task release end to end (PASCAL-Part struct .mat via scipy.io.savemat), and bad inputs."""

import json

import numpy as np
import pytest
import scipy.io
from conftest import load_split, make_pascal
from PIL import Image

from mtkd.datasets import convert
from mtkd.datasets.convert import label_edges
from mtkd.errors import MtkdError


def test_struct_is_read_like_the_reference_loaders(tmp):
    make_pascal(tmp / "src")
    anno = scipy.io.loadmat(tmp / "src" / "human_parts" / "2008_000002.mat")["anno"]
    obj = anno[0][0][1][0][1]  # the reference loaders' positional access
    assert obj[1][0][0] == 15 and str(obj[3][0][0][0][0]) == "head"


def test_end_to_end(tmp):
    ids, data = make_pascal(tmp / "src")
    out = convert("pascal_context", tmp / "src", tmp / "out", progress=False)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["splits"] == {"train": 3, "val": 2}
    assert meta["folders"] == ["image", "label", "parts", "normal", "sal", "edge"]
    for split, names in ids.items():
        for k, sid in enumerate(names):
            d = data[sid]
            lab = load_split(out, split, "label")[k]
            expected = d["seg"].astype(np.int64)
            expected[expected == 255] = -1
            assert (lab == -1).any() and lab.max() < 21
            np.testing.assert_array_equal(lab, expected)
            parts = load_split(out, split, "parts")[k]
            if d["has_parts"]:
                want = np.zeros_like(parts)
                want[d["parts"]["head"] > 0] = 1
                want[d["parts"]["luarm"] > 0] = 3
                want[d["parts"]["rfoot"] > 0] = 6
                np.testing.assert_array_equal(parts, want)
            else:
                assert (parts == -1).all()
            nor = load_split(out, split, "normal")[k]
            assert (nor[d["lmap"] == 360] == 0).all()  # sky: not an NYU class -> invalid
            person = d["lmap"] == 284
            n = d["nor"].astype(np.float32) * 2 / 255 - 1
            n /= np.linalg.norm(n, axis=-1, keepdims=True)
            np.testing.assert_allclose(nor[person], n[person], atol=1e-5)
            np.testing.assert_array_equal(load_split(out, split, "sal")[k], (d["sal"] / 255.0 > 0.5).astype(np.float32))
            edge = load_split(out, split, "edge")[k]
            np.testing.assert_array_equal(edge, label_edges(d["lmap"]))
            assert edge.sum() > 0


def test_label_edges_match_laplacian_definition():
    lm = np.zeros((8, 9), np.int64)
    lm[:, 5:] = 3
    e = label_edges(lm)
    # Laplacian != 0 marks columns 4 and 5 (both sides of the step); thinning keeps a one-pixel-wide line
    # (Guo-Hall, like MATLAB's bwmorph 'thin', shortens a 2-pixel-wide line by one end pixel)
    assert set(np.nonzero(e)[1]) <= {4, 5} and (e.sum(axis=1) <= 1).all() and e.sum() >= 7


def test_bad_inputs(tmp):
    ids, data = make_pascal(tmp / "src")
    src = tmp / "src"
    scipy.io.savemat(src / "pascal-context" / "trainval" / "2008_000003.mat", {"Labels": data["2008_000003"]["lmap"]})
    with pytest.raises(MtkdError, match=r"trainval/2008_000003.mat: no key 'LabelMap'"):
        convert("pascal_context", src, tmp / "o1", progress=False)
    scipy.io.savemat(src / "pascal-context" / "trainval" / "2008_000003.mat", {"LabelMap": data["2008_000003"]["lmap"]})
    seg = data["2008_000007"]["seg"].copy()
    seg[2, 2] = 30
    Image.fromarray(seg).save(src / "semseg" / "VOC12" / "2008_000007.png")
    with pytest.raises(MtkdError, match=r"VOC12/2008_000007.png: label values \[30\]"):
        convert("pascal_context", src, tmp / "o2", progress=False)
    (src / "human_parts" / "2008_000007.mat").write_bytes(b"not a mat file at all")
    with pytest.raises(MtkdError, match=r"human_parts/2008_000007.mat"):
        convert("pascal_context", src, tmp / "o3", tasks="parts", progress=False)

"""NYUD-v2 raw .mat converter end to end on a tiny v7.3 (HDF5 + 512-byte userblock) file, and its bad inputs."""

import json

import h5py
import numpy as np
import pytest
import scipy.io
from conftest import load_split, make_class_map40, make_nyud_raw, write_v73

from mtkd.datasets import convert
from mtkd.errors import MtkdError

# Couprie 40 -> 13 as the seeds README gives it (independent of the shipped resource file)
MAP13 = [int(x) for x in "12 5 6 1 4 9 10 12 13 6 8 6 13 10 6 13 6 7 7 5 7 3 2 6 11 7 7 7 7 7 7 6 7 7 7 7 7 7 6 7".split()]


def test_userblock_is_matlab_header(tmp):
    make_nyud_raw(tmp / "src")
    raw = (tmp / "src" / "nyu_depth_v2_labeled.mat").read_bytes()
    assert raw.startswith(b"MATLAB 7.3 MAT-file") and h5py.is_hdf5(tmp / "src" / "nyu_depth_v2_labeled.mat")
    with h5py.File(tmp / "src" / "nyu_depth_v2_labeled.mat") as f:
        assert f.userblock_size == 512 and f["images"].shape == (5, 3, 16, 12)


@pytest.mark.parametrize("splits_v73", [False, True])
def test_end_to_end_13_classes(tmp, splits_v73):
    imgs, deps, labs, train, val = make_nyud_raw(tmp / "src", splits_v73=splits_v73)
    m40 = make_class_map40(tmp / "classMapping40.mat")
    out = convert("nyud_raw", tmp / "src", tmp / "out", class_map40=tmp / "classMapping40.mat", progress=False)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["splits"] == {"train": 3, "val": 2} and len(meta["classes"]["semseg"]) == 13
    assert "normal" not in meta["folders"] and not (out / "train" / "normal").exists()
    lut = np.concatenate([[0], m40])
    for split, idx in (("train", train), ("val", val)):
        got_img = load_split(out, split, "image")
        got_lab = load_split(out, split, "label")
        got_dep = load_split(out, split, "depth")
        got_edge = load_split(out, split, "edge")
        for k, i in enumerate(idx):
            np.testing.assert_allclose(got_img[k], imgs[i] / 255.0, atol=1e-6)  # orientation restored
            assert got_img[k].dtype == np.float32 and got_img[k].shape == (12, 16, 3)
            c40 = lut[labs[i].astype(np.int64)]
            want = np.where(c40 == 0, -1, np.array([0] + MAP13)[c40] - 1)
            np.testing.assert_array_equal(got_lab[k], want)
            np.testing.assert_allclose(got_dep[k][..., 0], deps[i])
            assert set(np.unique(got_edge[k])) <= {-1.0, 0.0, 1.0}
            assert (got_edge[k][got_lab[k] < 0] == -1).all()


def test_894_classes_and_resize(tmp):
    imgs, deps, labs, train, val = make_nyud_raw(tmp / "src")
    out = convert("nyud_raw", tmp / "src", tmp / "out", classes=894, size=(6, 8), progress=False)
    lab = load_split(out, "train", "label")[0]
    assert lab.shape == (6, 8) and lab.min() >= -1 and lab.max() <= 893
    np.testing.assert_array_equal(lab, labs[0].astype(np.int64)[1::2, 1::2] - 1)  # nearest = pixel centres
    assert load_split(out, "train", "image")[0].shape == (6, 8, 3)


def test_needs_class_map_for_40_and_13(tmp):
    make_nyud_raw(tmp / "src")
    for c in (13, 40):
        with pytest.raises(MtkdError, match="class_map40"):
            convert("nyud_raw", tmp / "src", tmp / "out", classes=c, progress=False)


def test_bad_inputs_name_the_file(tmp):
    make_nyud_raw(tmp / "src")
    mat = tmp / "src" / "nyu_depth_v2_labeled.mat"
    good = mat.read_bytes()
    # truncated: neither HDF5 nor v5
    mat.write_bytes(good[:300])
    with pytest.raises(MtkdError, match="nyu_depth_v2_labeled.mat"):
        convert("nyud_raw", tmp / "src", tmp / "o1", classes=894, progress=False)
    # missing key
    mat.unlink()
    write_v73(mat, {"images": np.zeros((5, 3, 16, 12), np.uint8), "depths": np.zeros((5, 16, 12), np.float32)})
    with pytest.raises(MtkdError, match=r"nyu_depth_v2_labeled.mat: no key 'labels'"):
        convert("nyud_raw", tmp / "src", tmp / "o2", classes=894, progress=False)
    # label outside 1..894
    mat.unlink()
    lab = np.zeros((5, 16, 12), np.uint16)
    lab[1, 3, 3] = 900
    write_v73(mat, {"images": np.zeros((5, 3, 16, 12), np.uint8), "depths": np.ones((5, 16, 12), np.float32),
                    "labels": lab})
    with pytest.raises(MtkdError, match=r"labeled.mat \(image 2\): label values outside"):
        convert("nyud_raw", tmp / "src", tmp / "o3", classes=894, progress=False)
    # split naming a missing image
    mat.write_bytes(good)
    scipy.io.savemat(tmp / "src" / "splits.mat", {"trainNdxs": np.array([[1], [9]]), "testNdxs": np.array([[2]])})
    with pytest.raises(MtkdError, match=r"splits.mat: trainNdxs names image 9"):
        convert("nyud_raw", tmp / "src", tmp / "o4", classes=894, progress=False)
    # class map with the wrong key
    scipy.io.savemat(tmp / "cm.mat", {"foo": np.zeros((1, 3))})
    with pytest.raises(MtkdError, match="cm.mat"):
        convert("nyud_raw", tmp / "src", tmp / "o5", class_map40=tmp / "cm.mat", progress=False)


def test_arrays_not_in_the_official_orientation_are_refused(tmp):
    """A v7.3 .mat saved H-before-W (N x 3 x 480 x 640 through h5py) would be transposed into portrait images:
    refused, naming the shapes found and the official ones; the message for 13/40 classes names the CLI form."""
    make_nyud_raw(tmp / "src")
    mat = tmp / "src" / "nyu_depth_v2_labeled.mat"
    mat.unlink()
    write_v73(mat, {"images": np.zeros((5, 3, 12, 16), np.uint8), "depths": np.ones((5, 12, 16), np.float32),
                    "labels": np.ones((5, 12, 16), np.uint16)})
    with pytest.raises(MtkdError, match=r"not in the official orientation: images \(5, 3, 12, 16\).*"
                                        r"expected N x 3 x 640 x 480"):
        convert("nyud_raw", tmp / "src", tmp / "o", classes=894, progress=False)
    mat.unlink()
    write_v73(mat, {"images": np.zeros((5, 3, 16, 12), np.uint8), "depths": np.ones((5, 12, 16), np.float32),
                    "labels": np.ones((5, 12, 16), np.uint16)})  # depths transposed against the images
    with pytest.raises(MtkdError, match=r"unexpected shapes images \(5, 3, 16, 12\), depths \(5, 12, 16\)"):
        convert("nyud_raw", tmp / "src", tmp / "o2", classes=894, progress=False)
    make_nyud_raw(tmp / "src2")
    with pytest.raises(MtkdError) as err:
        convert("nyud_raw", tmp / "src2", tmp / "o3", classes=13, progress=False)
    assert "class_map40=" in str(err.value) and "--class-map40" not in str(err.value)

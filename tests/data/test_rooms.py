"""Tests for the embedded ``rooms`` dataset: determinism, ranges, exact geometry, on-disk layout and atomic writes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mtkd.data import rooms
from mtkd.data.rooms import cache as rooms_cache
from mtkd.data.rooms import render as rooms_render
from mtkd.data.rooms import CLASSES, render_scene, render_scenes, write_rooms
from mtkd.errors import MtkdError

H, W = 96, 128
KEYS = ("image", "label", "depth", "normal", "edge")


@pytest.fixture(scope="module")
def fifty():
    return render_scenes(50, H, W, seed=0)


def _equal(a: dict, b: dict) -> bool:
    return all(np.array_equal(a[k], b[k]) for k in KEYS)


# ------------------------------------------------------------------------------------------ determinism


def test_same_seed_same_arrays_other_seed_other_arrays():
    a = render_scenes(3, 48, 64, seed=0)
    assert _equal(a, render_scenes(3, 48, 64, seed=0))
    b = render_scenes(3, 48, 64, seed=1)
    for k in KEYS:
        assert not np.array_equal(a[k], b[k]), k


def test_prefix_stability_and_offsets():
    ten = render_scenes(10, 40, 52, seed=3)
    five = render_scenes(5, 40, 52, seed=3)
    assert _equal(five, {k: v[:5] for k, v in ten.items()})
    mid = render_scenes(2, 40, 52, seed=3, start=6)
    assert _equal(mid, {k: v[6:8] for k, v in ten.items()})


def test_splits_differ_and_test_is_val():
    train, _ = render_scene(0, 40, 52, seed=0, split="train")
    val, _ = render_scene(0, 40, 52, seed=0, split="val")
    test, _ = render_scene(0, 40, 52, seed=0, split="test")
    assert not np.array_equal(train["label"], val["label"])
    assert _equal(val, test)


def test_geometry_does_not_depend_on_image_size():
    _, small = render_scene(4, 48, 64, seed=0)
    _, big = render_scene(4, 96, 128, seed=0)
    np.testing.assert_array_equal(small["R"], big["R"])
    np.testing.assert_array_equal(small["eye"], big["eye"])


# ---------------------------------------------------------------------------------------- shapes and ranges


def test_shapes_dtypes_ranges(fifty):
    n = 50
    assert fifty["image"].shape == (n, H, W, 3) and fifty["image"].dtype == np.float32
    assert fifty["label"].shape == (n, H, W) and fifty["label"].dtype == np.int16
    assert fifty["depth"].shape == (n, H, W, 1) and fifty["depth"].dtype == np.float32
    assert fifty["normal"].shape == (n, H, W, 3) and fifty["normal"].dtype == np.float32
    assert fifty["edge"].shape == (n, H, W) and fifty["edge"].dtype == np.float32
    for k in KEYS:
        assert np.isfinite(fifty[k]).all(), k
    img = fifty["image"]
    assert img.min() >= 0.0 and img.max() <= 1.0
    assert img.std() > 0.1 and all(im.std() > 0.03 for im in img)  # not blank, not constant
    assert set(np.unique(fifty["edge"]).tolist()) == {0.0, 1.0}
    assert 0.02 < fifty["edge"].mean() < 0.12


def test_depth_and_normals_valid_where_they_should_be(fifty):
    depth = fifty["depth"][..., 0]
    valid = depth > 0
    assert (depth >= 0).all()
    assert 0.005 < 1 - valid.mean() < 0.15  # some Kinect-like holes, not too many
    assert 0.3 < depth[valid].min() and depth[valid].max() < 10.0
    assert 1.5 < np.median(depth[valid]) < 5.0
    norm = np.linalg.norm(fifty["normal"], axis=-1)
    np.testing.assert_allclose(norm[valid], 1.0, atol=1e-5)
    assert (fifty["normal"][~valid] == 0).all()
    # every visible surface faces the camera: n . (pixel ray) < 0, the ray being (x, -y, -1) in this frame
    k = rooms_render._intrinsics(H, W)
    jj, ii = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    ray = np.stack([(jj - k[0, 2]) / k[0, 0], -(ii - k[1, 2]) / k[1, 1], -np.ones_like(jj)], axis=-1)
    facing = np.einsum("nhwc,hwc->nhw", fifty["normal"], ray)
    assert (facing[valid] < 0).all()
    assert np.mean(fifty["normal"][..., 2][valid] > 0) > 0.9  # mostly z toward the camera


def test_labels_every_class_and_some_ignore(fifty):
    label = fifty["label"]
    assert label.min() >= -1 and label.max() < len(CLASSES)
    assert 0.002 < (label == -1).mean() < 0.05
    freq = np.array([(label == c).mean() for c in range(len(CLASSES))])
    assert (freq > 0.01).all() and (freq < 0.45).all(), dict(zip(CLASSES, freq.round(3)))
    assert CLASSES[:3] == ("floor", "wall", "ceiling") and len(set(CLASSES)) == len(CLASSES)


# ----------------------------------------------------------------------------------------- exact geometry


def _camera_rays(info: dict, h: int, w: int) -> np.ndarray:
    """World-frame ray directions with camera z = 1, re-derived from K and R."""
    k = info["K"]
    jj, ii = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    cam = np.stack([(jj - k[0, 2]) / k[0, 0], (ii - k[1, 2]) / k[1, 1], np.ones_like(jj)], axis=-1)
    return cam @ info["R"].T


def _to_output_frame(n_world: np.ndarray, rot: np.ndarray) -> np.ndarray:
    """World normal -> camera frame x right, y up, z toward the camera."""
    return (n_world @ rot) * np.array([1.0, -1.0, -1.0])


@pytest.mark.parametrize("index", [0, 1, 2, 7])
def test_floor_and_ceiling_depth_and_normals_are_exact(index):
    sample, info = render_scene(index, H, W, seed=0)
    dirs = _camera_rays(info, H, W)
    eye, lo, hi = info["eye"], info["lo"], info["hi"]
    depth, label, normal = sample["depth"][..., 0], sample["label"], sample["normal"]
    checked = 0
    for cls, plane_y, n_world in ((0, lo[1], [0.0, 1.0, 0.0]), (2, hi[1], [0.0, -1.0, 0.0])):
        sel = (label == cls) & (depth > 0)
        if not sel.any():
            continue
        t = (plane_y - eye[1]) / dirs[..., 1][sel]  # ray parameter == z-depth because camera z of the ray is 1
        np.testing.assert_allclose(depth[sel], t, rtol=1e-5)
        want = _to_output_frame(np.array(n_world), info["R"])
        np.testing.assert_allclose(normal[sel], np.broadcast_to(want, normal[sel].shape), atol=1e-5)
        checked += sel.sum()
    # wall pixels lie on one of the four wall planes, with that plane's normal
    sel = (label == 1) & (depth > 0)
    pts = eye + depth[sel][:, None] * dirs[sel]
    gap = np.stack([pts[:, 0] - lo[0], hi[0] - pts[:, 0], pts[:, 2] - lo[2], hi[2] - pts[:, 2]], axis=1)
    which = np.abs(gap).argmin(axis=1)
    assert np.abs(gap).min(axis=1).max() < 1e-4
    n_world = np.array([[1.0, 0, 0], [-1.0, 0, 0], [0, 0, 1.0], [0, 0, -1.0]])[which]
    np.testing.assert_allclose(normal[sel], _to_output_frame(n_world, info["R"]), atol=1e-5)
    assert checked + sel.sum() > 0.2 * H * W


def _fd_normals(depth: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Normals from back-projected depth by central differences, in the x right / y up / z toward camera frame."""
    h, w = depth.shape
    jj, ii = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    pts = np.stack([(jj - k[0, 2]) / k[0, 0], (ii - k[1, 2]) / k[1, 1], np.ones_like(jj)], -1) * depth[..., None]
    du = np.zeros_like(pts)
    dv = np.zeros_like(pts)
    du[:, 1:-1] = pts[:, 2:] - pts[:, :-2]
    dv[1:-1] = pts[2:] - pts[:-2]
    n = np.cross(du, dv)
    n /= np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)
    n *= -np.sign(np.einsum("hwc,hwc->hw", n, pts))[..., None]  # face the camera
    return n * np.array([1.0, -1.0, -1.0])


def _planar_interior(sample: dict) -> np.ndarray:
    """Pixels whose 3×3 neighbourhood is one planar surface with valid depth (no edge, same planar class)."""
    from scipy import ndimage

    label = sample["label"]
    planar = np.isin(label, [0, 1, 2, 3, 6])
    ok = planar & (sample["depth"][..., 0] > 0) & (sample["edge"] == 0)
    ok = ndimage.binary_erosion(ok, np.ones((3, 3)), border_value=0)
    same = ndimage.maximum_filter(label, 3) == ndimage.minimum_filter(label, 3)
    return ok & same


@pytest.mark.parametrize("index", [0, 3, 5])
def test_normals_agree_with_depth_and_the_flip_rule(index):
    sample, info = render_scene(index, H, W, seed=0)
    depth = sample["depth"][..., 0].astype(np.float64)
    sel = _planar_interior(sample)
    assert sel.sum() > 0.3 * H * W
    fd = _fd_normals(depth, info["K"])
    cos = np.einsum("pc,pc->p", fd[sel], sample["normal"][sel])
    assert cos.min() > 0.999
    # horizontal flip: the flipped depth's normals are the flipped normal map with x negated
    fd_flip = _fd_normals(depth[:, ::-1], info["K"])
    flipped = sample["normal"][:, ::-1] * np.array([-1.0, 1.0, 1.0])
    sel_flip = sel[:, ::-1]
    cos = np.einsum("pc,pc->p", fd_flip[sel_flip], flipped[sel_flip])
    assert cos.min() > 0.999


def test_edges_separate_different_surfaces():
    sample, _ = render_scene(2, H, W, seed=0)
    label, edge = sample["label"], sample["edge"]
    diff = label[:, 1:] != label[:, :-1]
    assert ((edge[:, 1:] + edge[:, :-1])[diff] > 0).all()  # every label change is marked on one side
    diff = label[1:] != label[:-1]
    assert ((edge[1:] + edge[:-1])[diff] > 0).all()


# -------------------------------------------------------------------------------------------------- on disk


def test_write_layout_and_meta(tmp_path):
    root = write_rooms(tmp_path / "rooms", n_train=4, n_test=2, height=24, width=32, seed=5, progress=False)
    assert root == tmp_path / "rooms"
    meta = json.loads((root / "meta.json").read_text())
    assert meta["name"] == "rooms" and meta["classes"]["semseg"] == list(CLASSES)
    assert meta["seed"] == 5 and meta["sizes"] == {"train": 4, "val": 2}
    assert meta["generator_version"] == rooms.GENERATOR_VERSION
    assert (meta["height"], meta["width"]) == (24, 32)
    for split, n in (("train", 4), ("val", 2)):
        for folder in KEYS:
            names = sorted(p.name for p in (root / split / folder).iterdir())
            assert names == sorted(f"{i}.npy" for i in range(n)), (split, folder)
    want, _ = render_scene(1, 24, 32, seed=5, split="val")
    shapes = {"image": (24, 32, 3), "label": (24, 32), "depth": (24, 32, 1), "normal": (24, 32, 3), "edge": (24, 32)}
    for folder in KEYS:
        arr = np.load(root / "val" / folder / "1.npy")
        assert arr.shape == shapes[folder]
        np.testing.assert_array_equal(arr, want[folder])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rooms"]  # no temporary sibling left


def test_write_is_idempotent_and_replaces_a_stale_request(tmp_path, monkeypatch):
    root = write_rooms(tmp_path / "r", 3, 1, 16, 20, progress=False)
    stamp = (root / "meta.json").stat().st_mtime_ns

    def boom(*args, **kwargs):
        raise AssertionError("re-rendered a dataset that was already there")

    with monkeypatch.context() as m:
        m.setattr(rooms_cache, "render_scene", boom)
        assert write_rooms(tmp_path / "r", 3, 1, 16, 20, progress=False) == root
    assert (root / "meta.json").stat().st_mtime_ns == stamp
    write_rooms(tmp_path / "r", 5, 1, 16, 20, progress=False)  # another request: regenerated in place
    assert json.loads((root / "meta.json").read_text())["sizes"] == {"train": 5, "val": 1}
    assert len(list((root / "train" / "image").iterdir())) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]


def test_interrupted_write_leaves_no_final_folder(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = rooms.render_scene

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(rooms_cache, "render_scene", flaky)
    with pytest.raises(KeyboardInterrupt):
        write_rooms(tmp_path / "r", 6, 2, 16, 20, progress=False)
    assert list(tmp_path.iterdir()) == []
    # an interrupted regeneration keeps the complete folder that was there
    monkeypatch.setattr(rooms_cache, "render_scene", real)
    write_rooms(tmp_path / "r", 2, 1, 16, 20, progress=False)
    calls["n"] = 0
    monkeypatch.setattr(rooms_cache, "render_scene", flaky)
    with pytest.raises(KeyboardInterrupt):
        write_rooms(tmp_path / "r", 6, 2, 16, 20, progress=False)
    assert json.loads((tmp_path / "r" / "meta.json").read_text())["sizes"] == {"train": 2, "val": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]


def test_refuses_foreign_folders_and_bad_arguments(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    with pytest.raises(MtkdError, match="refusing"):
        write_rooms(foreign, 2, 1, 16, 20, progress=False)
    assert (foreign / "thesis.tex").read_text() == "precious"
    with pytest.raises(MtkdError, match="n_train"):
        write_rooms(tmp_path / "x", -1, 1, progress=False)
    with pytest.raises(MtkdError, match="split"):
        render_scene(0, split="dev")
    with pytest.raises(MtkdError):
        render_scenes(-2)


# ------------------------------------------------------------------------------------------------ golden output

# Scenes 0-2 at 24×32, seed 3, recorded before rooms.py became the rooms/ package (#18): the geometry (labels,
# edges) must stay bit-identical; the float maps' sums pin shading, depth and normals. A change here needs a new
# GENERATOR_VERSION (cached datasets are keyed on it) and new golden values.
GOLDEN = {
    "train": ({"label": "76bc0ffd2d749171", "edge": "ade38f7cd8e909b5"},
              {"image": 3370.492560083512, "depth": 5604.831588506699, "normal": 1656.5322072888375}),
    "val": ({"label": "2a55241e29e18b9a", "edge": "b85411eedf414667"},
            {"image": 2937.7385004750686, "depth": 5712.380600571632, "normal": 1234.536959014702}),
}


@pytest.mark.parametrize("split", sorted(GOLDEN))
def test_rendering_matches_the_golden_output(split):
    import hashlib

    digests, sums = GOLDEN[split]
    s = render_scenes(3, 24, 32, seed=3, split=split)
    for key, want in digests.items():
        assert hashlib.sha256(np.ascontiguousarray(s[key]).tobytes()).hexdigest()[:16] == want, key
    for key, want in sums.items():
        assert float(s[key].astype(np.float64).sum()) == pytest.approx(want, rel=1e-6), key
    assert rooms.GENERATOR_VERSION == 1

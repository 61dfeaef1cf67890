"""Tests for the MTAN-style augmentation: exact flip, scale-crop geometry, depth rescaling, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtkd.data.transforms import IMAGENET_MEAN, IMAGENET_STD, MultiTaskAugment, Normalize, flip, scale_crop

H, W = 10, 12


def sample() -> dict:
    g = torch.Generator().manual_seed(0)
    return {"image": torch.rand(3, H, W, generator=g), "semseg": torch.randint(-1, 4, (H, W), generator=g),
            "depth": torch.rand(1, H, W, generator=g) * 5 + 0.5, "normal": torch.randn(3, H, W, generator=g),
            "edge": (torch.rand(1, H, W, generator=g) > 0.7).float(), "index": 3}


def test_normalize_matches_numpy():
    s = sample()
    out = Normalize()(s)
    want = (s["image"].numpy() - np.array(IMAGENET_MEAN)[:, None, None]) / np.array(IMAGENET_STD)[:, None, None]
    np.testing.assert_allclose(out["image"].numpy(), want, rtol=1e-5, atol=1e-6)
    assert out["semseg"] is s["semseg"] and out["index"] == 3


def test_flip_exact():
    s = sample()
    f = flip(s)
    for k in ("image", "semseg", "depth", "edge"):
        assert torch.equal(f[k], torch.from_numpy(s[k].numpy()[..., ::-1].copy()))
    n = s["normal"].numpy()
    assert np.array_equal(f["normal"][0].numpy(), -n[0, :, ::-1])
    assert np.array_equal(f["normal"][1:].numpy(), n[1:, :, ::-1])
    assert torch.equal(flip(f)["normal"], s["normal"])  # involution; input untouched
    assert f["semseg"][2, 0] == s["semseg"][2, W - 1]


@pytest.mark.parametrize("scale", [1.2, 1.5])
def test_scale_crop(scale):
    s = sample()
    top, left = 1, 2
    out = scale_crop(s, scale, top, left)
    ch, cw = int(H / scale), int(W / scale)
    for k in ("image", "semseg", "depth", "normal", "edge"):
        assert out[k].shape == s[k].shape and out[k].dtype == s[k].dtype
    # nearest: each output pixel is the crop pixel under its centre (independent numpy re-derivation)
    ri = np.floor((np.arange(H) + 0.5) * ch / H).astype(int) + top
    ci = np.floor((np.arange(W) + 0.5) * cw / W).astype(int) + left
    lab = s["semseg"].numpy()[np.ix_(ri, ci)]
    assert np.array_equal(out["semseg"].numpy(), lab)
    assert set(out["semseg"].unique().tolist()) <= set(s["semseg"].unique().tolist())
    np.testing.assert_allclose(out["depth"][0].numpy(), s["depth"][0].numpy()[np.ix_(ri, ci)] / scale, rtol=1e-6)
    np.testing.assert_allclose(out["normal"].numpy(), s["normal"].numpy()[:, ri][:, :, ci])
    assert set(out["edge"].unique().tolist()) <= {0.0, 1.0}
    # corners of the bilinear image (align_corners=True) are the crop's corners
    img, crop = out["image"], s["image"][:, top:top + ch, left:left + cw]
    assert torch.allclose(img[:, 0, 0], crop[:, 0, 0]) and torch.allclose(img[:, -1, -1], crop[:, -1, -1])
    disp = scale_crop(s, scale, top, left, disparity=True)
    np.testing.assert_allclose(disp["depth"][0].numpy(), s["depth"][0].numpy()[np.ix_(ri, ci)] * scale, rtol=1e-6)


def test_invalid_depth_stays_zero():
    s = sample()
    s["depth"][:] = 0.0
    assert torch.equal(scale_crop(s, 1.5, 0, 0)["depth"], s["depth"])


def test_augment_deterministic_and_covers_choices():
    aug = MultiTaskAugment()
    s = sample()
    a = aug(s, torch.Generator().manual_seed(7))
    b = aug(s, torch.Generator().manual_seed(7))
    for k in a:
        assert torch.equal(torch.as_tensor(a[k]), torch.as_tensor(b[k])), k
    s["depth"][:] = 3.0  # constant depth: the output value reveals the scale drawn
    seen_flip, seen_scale = set(), set()
    for seed in range(40):
        out = aug(s, torch.Generator().manual_seed(seed))
        seen_scale.add(round(3.0 / float(out["depth"].max()), 4))
        seen_flip.add(bool(torch.equal(out["semseg"], torch.flip(s["semseg"], (-1,)))))
        assert set(out["semseg"].unique().tolist()) <= set(s["semseg"].unique().tolist())
        assert out["image"].min() < 0  # normalised
    assert seen_flip == {True, False} and seen_scale == {1.0, 1.2, 1.5}


def test_augment_no_scale_flip_only_equals_flip_then_normalize():
    aug = MultiTaskAugment(scales=(1.0,), flip_p=1.0)
    s = sample()
    out = aug(s, torch.Generator().manual_seed(0))
    want = Normalize()(flip(s))
    for k in ("image", "semseg", "depth", "normal", "edge"):
        assert torch.equal(out[k], want[k])

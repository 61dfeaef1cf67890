import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from distill_testutil import maps, rand_mask, valid_pixels
from mtkd.distill.losses import FitNetRegressor, fitnet_loss, kd4mtl_feature_loss, match_spatial
from mtkd.errors import MtkdError


def ref_kd4mtl_pixel(s, t, mask):
    s, t = s.double().numpy(), t.double().numpy()
    b, c, h, w = s.shape
    vals = []
    for i, y, x in valid_pixels(b, h, w, mask):
        ns = math.sqrt(sum(s[i, k, y, x] ** 2 for k in range(c)) + 1e-6)
        nt = math.sqrt(sum(t[i, k, y, x] ** 2 for k in range(c)) + 1e-6)
        vals.append(sum((s[i, k, y, x] / ns - t[i, k, y, x] / nt) ** 2 for k in range(c)))
    return sum(vals) / len(vals)


def ref_kd4mtl_map(s, t):
    s, t = s.double().numpy(), t.double().numpy()
    out = []
    for i in range(s.shape[0]):
        a, b = s[i].ravel(), t[i].ravel()
        a = a / math.sqrt(float(a @ a) + 1e-6)
        b = b / math.sqrt(float(b @ b) + 1e-6)
        out.append(float(((a - b) ** 2).sum()))
    return float(np.mean(out))


@pytest.mark.parametrize("masked", [False, True])
def test_kd4mtl_pixel_golden(masked):
    s, t = maps((2, 6, 3, 4), 40), maps((2, 6, 3, 4), 41)
    m = rand_mask(2, 3, 4, 42) if masked else None
    assert kd4mtl_feature_loss(s, t, m).item() == pytest.approx(ref_kd4mtl_pixel(s, t, m), rel=1e-5)


def test_kd4mtl_map_golden_and_mask():
    s, t = maps((2, 6, 3, 4), 43), maps((2, 6, 3, 4), 44)
    got = kd4mtl_feature_loss(s, t, normalize="map")
    assert got.item() == pytest.approx(ref_kd4mtl_map(s, t), rel=1e-5)
    m = rand_mask(2, 3, 4, 45)
    zs = torch.where(m[:, None], s, torch.zeros_like(s))
    zt = torch.where(m[:, None], t, torch.zeros_like(t))
    assert kd4mtl_feature_loss(s, t, m, normalize="map").item() == pytest.approx(ref_kd4mtl_map(zs, zt), rel=1e-5)
    assert 0.0 <= got.item() <= 4.0


def test_kd4mtl_scale_invariance_and_errors():
    t = maps((2, 6, 3, 4), 46)
    for mode in ("pixel", "map"):
        assert kd4mtl_feature_loss(3.0 * t, t, normalize=mode).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(MtkdError, match="adaptor"):
        kd4mtl_feature_loss(maps((2, 5, 3, 4), 47), t)
    with pytest.raises(MtkdError, match="normalize"):
        kd4mtl_feature_loss(t, t, normalize="channel")


def test_kd4mtl_resizes_student_to_teacher():
    s, t = maps((1, 4, 4, 4), 48), maps((1, 4, 8, 8), 49)
    up = F.interpolate(s, size=(8, 8), mode="bilinear", align_corners=False)
    assert kd4mtl_feature_loss(s, t).item() == pytest.approx(kd4mtl_feature_loss(up, t).item(), rel=1e-6)
    assert match_spatial(s, (8, 8)).shape == (1, 4, 8, 8)
    assert match_spatial(t, t) is t


@pytest.mark.parametrize("masked", [False, True])
def test_fitnet_golden(masked):
    s, t = maps((2, 3, 4, 4), 50), maps((2, 3, 4, 4), 51)
    m = rand_mask(2, 4, 4, 52) if masked else None
    sn, tn = s.double().numpy(), t.double().numpy()
    sq = [((sn[i, :, y, x] - tn[i, :, y, x]) ** 2).mean() for i, y, x in valid_pixels(2, 4, 4, m)]
    assert fitnet_loss(s, t, m).item() == pytest.approx(float(np.mean(sq)), rel=1e-5)


@pytest.mark.parametrize("k,bn", [(1, False), (3, True)])
def test_fitnet_regressor(k, bn):
    reg = FitNetRegressor(4, 7, kernel_size=k, bn=bn)
    x = maps((2, 4, 5, 5), 53).requires_grad_(True)
    t = maps((2, 7, 10, 10), 54).requires_grad_(True)
    y = reg(x)
    assert y.shape == (2, 7, 5, 5)
    assert (reg.conv.bias is None) == bn
    loss = fitnet_loss(y, t)  # resized to 10×10 inside
    loss.backward()
    assert reg.conv.weight.grad is not None and x.grad is not None and t.grad is None
    with pytest.raises(MtkdError):
        FitNetRegressor(4, 7, kernel_size=5)

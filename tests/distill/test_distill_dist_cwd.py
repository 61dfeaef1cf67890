import math

import numpy as np
import pytest
import torch

from distill_testutil import maps, np_softmax, rand_mask, valid_pixels
from mtkd.distill.losses import cwd_loss, dist_loss, dist_terms
from mtkd.errors import MtkdError


def ref_dist(s, t, mask, T):
    """Rows built pixel by pixel; Pearson from np.corrcoef (covariance / std product)."""
    s, t = s.double().numpy(), t.double().numpy()
    b, c, h, w = s.shape
    ys, yt = [], []
    for i, y, x in valid_pixels(b, h, w, mask):
        ys.append(np_softmax(s[i, :, y, x] / T))
        yt.append(np_softmax(t[i, :, y, x] / T))
    ys, yt = np.array(ys), np.array(yt)
    inter = 1 - np.mean([np.corrcoef(ys[r], yt[r])[0, 1] for r in range(len(ys))])
    intra = 1 - np.mean([np.corrcoef(ys[:, j], yt[:, j])[0, 1] for j in range(c)])
    return inter * T * T, intra * T * T


@pytest.mark.parametrize("T", [1.0, 2.0])
@pytest.mark.parametrize("masked", [False, True])
def test_dist_golden(T, masked):
    s, t = maps((2, 5, 4, 3), 20, 2.0), maps((2, 5, 4, 3), 21, 2.0)
    m = rand_mask(2, 4, 3, 22) if masked else None
    inter, intra = dist_terms(s, t, m, temperature=T)
    r_inter, r_intra = ref_dist(s, t, m, T)
    assert inter.item() == pytest.approx(r_inter, rel=1e-5, abs=1e-6)
    assert intra.item() == pytest.approx(r_intra, rel=1e-5, abs=1e-6)
    total = dist_loss(s, t, m, beta=0.5, gamma=2.0, temperature=T)
    assert total.item() == pytest.approx(0.5 * r_inter + 2.0 * r_intra, rel=1e-5)


def naive_2d_dist_intra(s, t):
    """What a generic 2-D DIST does when handed a 4-D map: transpose(0, 1), Pearson along dim 1 (= across the batch
    at each class and pixel position)."""
    ys, yt = s.softmax(dim=1).transpose(0, 1), t.softmax(dim=1).transpose(0, 1)
    ys = ys - ys.mean(dim=1, keepdim=True)
    yt = yt - yt.mean(dim=1, keepdim=True)
    corr = (ys * yt).sum(1) / (ys.norm(dim=1) * yt.norm(dim=1) + 1e-8)
    return 1 - corr.mean()


def test_dist_intra_is_dense_not_naive_2d():
    s, t = maps((2, 5, 6, 6), 23), maps((2, 5, 6, 6), 24)
    t = 0.7 * s + 0.3 * t  # a correlated teacher: the dense intra term is small
    _, intra = dist_terms(s, t)
    naive = naive_2d_dist_intra(s, t)
    assert abs(intra.item() - naive.item()) > 0.1
    # the dense intra equals the 2-D formula applied to the (N·H·W)×C pixel matrix
    rows_s = s.permute(0, 2, 3, 1).reshape(-1, 5)[:, :, None, None]
    rows_t = t.permute(0, 2, 3, 1).reshape(-1, 5)[:, :, None, None]
    assert intra.item() == pytest.approx(naive_2d_dist_intra(rows_s, rows_t).item(), rel=1e-5)


def test_dist_zero_at_equality_and_empty_mask():
    s = maps((2, 5, 3, 3), 25)
    inter, intra = dist_terms(s, s.clone())
    assert inter.item() == pytest.approx(0.0, abs=1e-5) and intra.item() == pytest.approx(0.0, abs=1e-5)
    x = s.clone().requires_grad_(True)
    loss = dist_loss(x, s, torch.zeros(2, 3, 3, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0 and (x.grad == 0).all()


def ref_cwd(s, t, mask, tau):
    s, t = s.double().numpy(), t.double().numpy()
    n, c, h, w = s.shape
    total, count = 0.0, 0
    for i in range(n):
        pos = [(y, x) for _, y, x in valid_pixels(1, h, w, None if mask is None else mask[i : i + 1])]
        if not pos:
            continue
        count += c
        for ch in range(c):
            pt = np_softmax([t[i, ch, y, x] / tau for y, x in pos])
            ps = np_softmax([s[i, ch, y, x] / tau for y, x in pos])
            total += sum(a * (math.log(a) - math.log(b)) for a, b in zip(pt, ps))
    return total * tau * tau / count


@pytest.mark.parametrize("tau", [1.0, 4.0])
@pytest.mark.parametrize("masked", [False, True])
def test_cwd_golden(tau, masked):
    s, t = maps((2, 3, 4, 5), 30, 3.0), maps((2, 3, 4, 5), 31, 3.0)
    m = rand_mask(2, 4, 5, 32) if masked else None
    assert cwd_loss(s, t, m, temperature=tau).item() == pytest.approx(ref_cwd(s, t, m, tau), rel=1e-5)


def test_cwd_default_tau_4_and_image_without_valid_pixels():
    s, t = maps((2, 3, 4, 5), 33, 3.0), maps((2, 3, 4, 5), 34, 3.0)
    assert cwd_loss(s, t).item() == pytest.approx(ref_cwd(s, t, None, 4.0), rel=1e-5)
    m = torch.ones(2, 4, 5, dtype=torch.bool)
    m[1] = False  # image 1 has no valid position: dropped from N·C
    assert cwd_loss(s, t, m).item() == pytest.approx(cwd_loss(s[:1], t[:1]).item(), rel=1e-6)


def test_cwd_resizes_student_and_refuses_channel_mismatch():
    t = maps((1, 3, 8, 8), 35)
    s = maps((1, 3, 4, 4), 36)
    up = torch.nn.functional.interpolate(s, size=(8, 8), mode="bilinear", align_corners=False)
    assert cwd_loss(s, t).item() == pytest.approx(cwd_loss(up, t).item(), rel=1e-6)
    with pytest.raises(MtkdError, match="adaptor"):
        cwd_loss(maps((1, 4, 8, 8), 37), t)

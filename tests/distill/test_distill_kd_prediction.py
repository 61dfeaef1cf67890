import math

import numpy as np
import pytest
import torch

from distill_testutil import maps, np_softmax, rand_mask, valid_pixels
from mtkd.distill.losses import kd_loss, prediction_loss
from mtkd.errors import MtkdError


def ref_kd(s, t, mask, T):
    s, t = s.double().numpy(), t.double().numpy()
    b, _, h, w = s.shape
    total, n = 0.0, 0
    for i, y, x in valid_pixels(b, h, w, mask):
        pt = np_softmax(t[i, :, y, x] / T)
        ps = np_softmax(s[i, :, y, x] / T)
        total += sum(pt[c] * (math.log(pt[c]) - math.log(ps[c])) for c in range(len(pt)))
        n += 1
    return total / n * T * T


@pytest.mark.parametrize("T", [1.0, 3.0])
@pytest.mark.parametrize("masked", [False, True])
def test_kd_golden(T, masked):
    s, t = maps((2, 4, 3, 5), 0, 2.0), maps((2, 4, 3, 5), 1, 2.0)
    m = rand_mask(2, 3, 5, 2) if masked else None
    got = kd_loss(s, t, m, temperature=T)
    assert got.dtype == torch.float32 and got.dim() == 0
    assert got.item() == pytest.approx(ref_kd(s, t, m, T), rel=1e-5)


def test_kd_zero_at_equality_and_default_temperature():
    s = maps((2, 4, 3, 5), 3)
    assert kd_loss(s, s.clone()).item() == pytest.approx(0.0, abs=1e-6)
    t = maps((2, 4, 3, 5), 4)
    assert kd_loss(s, t).item() == pytest.approx(kd_loss(s, t, temperature=1.0).item())


def test_kd_errors():
    with pytest.raises(MtkdError, match="student shape"):
        kd_loss(torch.zeros(1, 3, 4, 4), torch.zeros(1, 4, 4, 4))
    with pytest.raises(MtkdError, match="mask shape"):
        kd_loss(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4), torch.ones(1, 5, 4, dtype=torch.bool))
    with pytest.raises(MtkdError, match="temperature"):
        kd_loss(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4), temperature=0)


def ref_pred(s, t, mask, metric):
    s, t = s.double().numpy(), t.double().numpy()
    b, c, h, w = s.shape
    vals = []
    for i, y, x in valid_pixels(b, h, w, mask):
        a, bb = s[i, :, y, x], t[i, :, y, x]
        if metric == "l1":
            vals.append(sum(abs(a[k] - bb[k]) for k in range(c)) / c)
        else:
            vals.append(1 - float(np.dot(a, bb)) / (math.sqrt(float(np.dot(a, a))) * math.sqrt(float(np.dot(bb, bb)))))
    return sum(vals) / len(vals)


@pytest.mark.parametrize("metric,c", [("l1", 1), ("l1", 3), ("cosine", 3)])
@pytest.mark.parametrize("masked", [False, True])
def test_prediction_golden(metric, c, masked):
    s, t = maps((2, c, 4, 3), 10), maps((2, c, 4, 3), 11)
    m = rand_mask(2, 4, 3, 12) if masked else None
    got = prediction_loss(s, t, m, metric=metric)
    assert got.item() == pytest.approx(ref_pred(s, t, m, metric), rel=1e-5)


def test_prediction_regions():
    s, t = maps((2, 1, 4, 3), 13), maps((2, 1, 4, 3), 14)
    gt = rand_mask(2, 4, 3, 15, p=0.5)
    allowed = rand_mask(2, 4, 3, 16, p=0.8)
    inv = prediction_loss(s, t, allowed, gt_valid=gt, region="gt_invalid")
    assert inv.item() == pytest.approx(ref_pred(s, t, allowed & ~gt, "l1"), rel=1e-5)
    val = prediction_loss(s, t, None, gt_valid=gt[:, None], region="gt_valid")
    assert val.item() == pytest.approx(ref_pred(s, t, gt, "l1"), rel=1e-5)
    with pytest.raises(MtkdError, match="gt_valid"):
        prediction_loss(s, t, region="gt_invalid")
    with pytest.raises(MtkdError, match="unknown region"):
        prediction_loss(s, t, region="holes")
    with pytest.raises(MtkdError, match="unknown metric"):
        prediction_loss(s, t, metric="l2")


def test_cosine_zero_for_parallel_and_scale_free():
    t = maps((1, 3, 4, 4), 17)
    assert prediction_loss(2.5 * t, t, metric="cosine").item() == pytest.approx(0.0, abs=1e-6)
    # a zero student vector gives a finite loss and finite gradients
    s = torch.zeros(1, 3, 4, 4, requires_grad=True)
    loss = prediction_loss(s, t, metric="cosine")
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s.grad).all()

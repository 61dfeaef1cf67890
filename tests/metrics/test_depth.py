"""DepthMetrics against NumPy over unequal batches with invalid (0, NaN) pixels; DDP merge."""

import numpy as np
import pytest
import torch

from mtkd.metrics import DepthMetrics
from mtkd.testing import fed, merged_and_whole


def _np_ref(preds, targets):
    p = np.concatenate([x.reshape(-1) for x in preds]).astype(np.float64)
    t = np.concatenate([x.reshape(-1) for x in targets]).astype(np.float64)
    v = np.isfinite(t) & (t > 0)
    p, t = p[v], t[v]
    e = p - t
    pc = np.maximum(p, 1e-6)
    return {"abs_err": np.mean(np.abs(e)), "rel_err": np.mean(np.abs(e) / t), "rmse": np.sqrt(np.mean(e ** 2)),
            "log_rmse": np.sqrt(np.mean((np.log(pc) - np.log(t)) ** 2)),
            "delta1": 100 * np.mean(np.maximum(pc / t, t / pc) < 1.25)}


def _data(rng, sizes, h=5, w=6):
    preds, targets = [], []
    for i, b in enumerate(sizes):
        t = rng.uniform(0.5, 5.0, size=(b, 1, h, w)).astype(np.float32)
        noise = 0.1 if i == 0 else 1.5  # batches of different quality
        p = (t + rng.normal(scale=noise, size=t.shape)).astype(np.float32)
        p.flat[0] = -0.3  # a non-positive prediction (clamped for log and delta1)
        t[rng.random(t.shape) < 0.25] = 0
        t.flat[1] = np.nan
        preds.append(p)
        targets.append(t)
    return preds, targets


def test_against_numpy_unequal_batches():
    rng = np.random.default_rng(0)
    preds, targets = _data(rng, [3, 1])
    m = fed(DepthMetrics(), preds, targets)
    out = m.compute()
    ref = _np_ref(preds, targets)
    per_batch = [_np_ref([p], [t]) for p, t in zip(preds, targets)]
    for k, v in ref.items():
        assert np.isfinite(out[k].item())
        assert out[k].item() == pytest.approx(v, rel=1e-5), k
        assert abs(np.mean([pb[k] for pb in per_batch]) - v) > 1e-3 * abs(v), k


def test_invalid_pixels_ignored():
    t = torch.tensor([[[[0.0, 2.0, float("nan"), float("inf")]]]])
    p = torch.tensor([[[[100.0, 2.2, 7.0, 9.0]]]])
    m = DepthMetrics()
    m.update(p, t)
    out = m.compute()
    assert out["abs_err"].item() == pytest.approx(0.2, rel=1e-5)
    assert out["rel_err"].item() == pytest.approx(0.1, rel=1e-5)
    assert out["rmse"].item() == pytest.approx(0.2, rel=1e-5)
    assert out["log_rmse"].item() == pytest.approx(np.log(1.1), rel=1e-5)
    assert out["delta1"].item() == pytest.approx(100.0)
    empty = DepthMetrics()
    empty.update(p, torch.zeros_like(t))
    assert np.isnan(empty.compute()["abs_err"].item())


def test_negative_prediction_fails_delta1():
    m = DepthMetrics()
    m.update(torch.tensor([[[[-2.0]]]]), torch.tensor([[[[2.0]]]]))
    assert m.compute()["delta1"].item() == 0.0


def test_merge_state_equals_single():
    rng = np.random.default_rng(3)
    preds, targets = _data(rng, [3, 1])
    r0, whole = merged_and_whole(DepthMetrics, preds, targets)
    a, b = r0.compute(), whole.compute()
    for k in a:
        assert a[k].item() == pytest.approx(b[k].item(), rel=1e-6)

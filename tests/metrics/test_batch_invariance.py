"""Every split-level metric gives the same value whatever the evaluation batch size: the same images fed as one
batch, as single images and as unequal batches (a per-batch average would differ), plus DepthMetrics' evaluation
range against NumPy."""

import numpy as np
import pytest
import torch

from mtkd.metrics import DepthMetrics, NormalMetrics, SemsegMetrics
from mtkd.metrics.saliency import SaliencyMetrics

N, H, W = 6, 7, 9


def _data(task, rng):
    if task == "semseg":
        t = rng.integers(-1, 5, size=(N, H, W))
        p = rng.normal(size=(N, 5, H, W)) + 3.0 * np.eye(5)[np.clip(t, 0, 4)].transpose(0, 3, 1, 2) * (
            rng.random((N, 1, 1, 1)) < 0.5)  # some images well predicted, some not
        return p.astype(np.float32), t.astype(np.int64)
    if task == "depth":
        t = rng.uniform(0.5, 90.0, size=(N, 1, H, W))
        t[rng.random(t.shape) < 0.2] = 0
        p = t * rng.uniform(0.5, 1.5, size=(N, 1, 1, 1)) + rng.normal(size=t.shape)
        return p.astype(np.float32), t.astype(np.float32)
    if task == "normal":
        t = rng.normal(size=(N, 3, H, W))
        t /= np.linalg.norm(t, axis=1, keepdims=True)
        t[:, :, rng.random((H, W)) < 0.2] = 0
        p = t + rng.uniform(0.1, 2.0, size=(N, 1, 1, 1)) * rng.normal(size=t.shape)
        return p.astype(np.float32), t.astype(np.float32)
    g = (rng.random((N, 1, H, W)) < 0.4).astype(np.float32)
    g[rng.random(g.shape) < 0.1] = -1
    p = np.clip(rng.uniform(0.2, 0.8, size=(N, 1, 1, 1)) * (g > 0) + 0.5 * rng.random(g.shape), 0, 1)
    return p.astype(np.float32), g


METRICS = {"semseg": lambda: SemsegMetrics(5), "depth": DepthMetrics, "normal": NormalMetrics,
           "sal": SaliencyMetrics, "depth_range": lambda: DepthMetrics(min_depth=1.0, max_depth=80.0)}


@pytest.mark.parametrize("name", list(METRICS))
def test_value_does_not_depend_on_the_batch_size(name):
    rng = np.random.default_rng(len(name))
    p, t = _data("depth" if name == "depth_range" else name, rng)
    results = []
    for sizes in ([N], [1] * N, [1, 3, 2], [4, 2]):
        m = METRICS[name]()
        start = 0
        for b in sizes:
            m.update(torch.from_numpy(p[start:start + b]), torch.from_numpy(t[start:start + b]))
            start += b
        results.append({k: float(v) for k, v in m.compute().items()})
    for other in results[1:]:
        assert other.keys() == results[0].keys()
        for k, v in results[0].items():
            assert np.isfinite(v) and other[k] == pytest.approx(v, rel=1e-6, abs=1e-9), (name, k)


def test_depth_range_against_numpy():
    """Only targets in [min, max] count; predictions are clamped into the range (Eigen / KITTI protocol)."""
    rng = np.random.default_rng(3)
    p, t = _data("depth", rng)
    m = DepthMetrics(min_depth=1.0, max_depth=80.0)
    m.update(torch.from_numpy(p), torch.from_numpy(t))
    got = m.compute()
    tt, pp = t.astype(np.float64).ravel(), p.astype(np.float64).ravel()
    v = (tt >= 1.0) & (tt <= 80.0)
    assert v.sum() < (tt > 0).sum()  # the range removes some valid targets
    tt, pp = tt[v], np.clip(pp[v], 1.0, 80.0)
    e = pp - tt
    assert float(got["abs_err"]) == pytest.approx(np.abs(e).mean(), rel=1e-5)
    assert float(got["rel_err"]) == pytest.approx((np.abs(e) / tt).mean(), rel=1e-5)
    assert float(got["rmse"]) == pytest.approx(np.sqrt((e ** 2).mean()), rel=1e-5)
    assert float(got["delta1"]) == pytest.approx(100 * np.mean(np.maximum(pp / tt, tt / pp) < 1.25), rel=1e-5)
    with pytest.raises(ValueError, match="min_depth"):
        DepthMetrics(min_depth=5.0, max_depth=1.0)

"""NormalMetrics against NumPy over unequal batches with invalid pixels; median within 0.01 degree; DDP merge."""

import numpy as np
import pytest
import torch

from mtkd.metrics import NormalMetrics
from mtkd.testing import fed, merged_and_whole


def _angles(preds, targets):
    out = []
    for p, t in zip(preds, targets):
        p = np.moveaxis(p, 1, -1).reshape(-1, 3).astype(np.float64)
        t = np.moveaxis(t, 1, -1).reshape(-1, 3).astype(np.float64)
        v = np.any(t != 0, axis=1)
        p, t = p[v], t[v]
        p = p / np.linalg.norm(p, axis=1, keepdims=True)
        t = t / np.linalg.norm(t, axis=1, keepdims=True)
        out.append(np.degrees(np.arccos(np.clip(np.sum(p * t, axis=1), -1, 1))))
    return np.concatenate(out)


def _np_ref(preds, targets):
    a = _angles(preds, targets)
    return {"mean": a.mean(), "median": np.median(a), "11.25": 100 * np.mean(a < 11.25),
            "22.5": 100 * np.mean(a < 22.5), "30": 100 * np.mean(a < 30)}


def _data(rng, sizes, h=9, w=10):
    preds, targets = [], []
    for i, b in enumerate(sizes):
        t = rng.normal(size=(b, 3, h, w))
        t /= np.linalg.norm(t, axis=1, keepdims=True)
        noise = 0.2 if i == 0 else 1.0
        p = 3.0 * t + 3.0 * noise * rng.normal(size=t.shape)  # not unit length: normalised inside
        mask = rng.random((b, h, w)) < 0.2
        t = np.where(mask[:, None], 0.0, t)
        preds.append(p.astype(np.float32))
        targets.append(t.astype(np.float32))
    return preds, targets


def test_against_numpy_unequal_batches():
    rng = np.random.default_rng(0)
    preds, targets = _data(rng, [3, 1])
    m = fed(NormalMetrics(), preds, targets)
    out = m.compute()
    ref = _np_ref(preds, targets)
    per_batch = [_np_ref([p], [t]) for p, t in zip(preds, targets)]
    for k in ("mean", "11.25", "22.5", "30"):
        assert out[k].item() == pytest.approx(ref[k], rel=1e-4, abs=1e-4), k
    assert abs(out["median"].item() - ref["median"]) < 0.01
    for k in ref:
        assert abs(np.mean([pb[k] for pb in per_batch]) - ref[k]) > 0.05, k


@pytest.mark.parametrize("seed,n", [(1, 1), (2, 2), (3, 1001), (4, 5000), (5, 4096)])
def test_median_within_hundredth_degree(seed, n):
    rng = np.random.default_rng(seed)
    t = rng.normal(size=(1, 3, 1, n))
    p = t + rng.normal(scale=0.5, size=t.shape)
    m = NormalMetrics()
    m.update(torch.from_numpy(p), torch.from_numpy(t))
    ref = np.median(_angles([p], [t]))
    assert abs(m.compute()["median"].item() - ref) < 0.01


def test_median_even_count_far_apart_middle_values():
    # two pixels: 0 and 90 degrees -> median 45 (a single-bin interpolation would give ~0)
    t = torch.tensor([[[[1.0, 1.0]], [[0.0, 0.0]], [[0.0, 0.0]]]])
    p = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]], [[0.0, 0.0]]]])
    m = NormalMetrics()
    m.update(p, t)
    out = m.compute()
    assert abs(out["median"].item() - 45.0) < 0.01
    assert out["mean"].item() == pytest.approx(45.0)
    assert out["30"].item() == pytest.approx(50.0)


def test_invalid_all_zero_target_ignored():
    t = torch.tensor([[[[0.0, 0.0]], [[0.0, 0.0]], [[0.0, 1.0]]]])
    p = torch.tensor([[[[1.0, 0.0]], [[0.0, 0.0]], [[0.0, 2.0]]]])
    m = NormalMetrics()
    m.update(p, t)
    out = m.compute()
    assert out["mean"].item() == pytest.approx(0.0, abs=1e-4)
    assert out["11.25"].item() == pytest.approx(100.0)
    e = NormalMetrics()
    e.update(p, torch.zeros_like(t))
    assert np.isnan(e.compute()["median"].item())


def test_merge_state_equals_single():
    rng = np.random.default_rng(6)
    preds, targets = _data(rng, [3, 1])
    r0, whole = merged_and_whole(NormalMetrics, preds, targets)
    assert torch.equal(r0.hist, whole.hist)
    a, b = r0.compute(), whole.compute()
    for k in a:
        assert a[k].item() == pytest.approx(b[k].item(), rel=1e-6)

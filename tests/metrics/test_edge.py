"""EdgeMetrics (threshold-0.5 F, the training-time proxy named F@0.5) against NumPy over unequal batches; DDP merge."""

import numpy as np
import pytest
import torch

from mtkd.metrics import EdgeMetrics
from mtkd.testing import fed, merged_and_whole


def _np_f(preds, targets):
    p = np.concatenate([x.reshape(-1) for x in preds])
    t = np.concatenate([x.reshape(-1) for x in targets])
    v = t >= 0
    b = 1 / (1 + np.exp(-p[v].astype(np.float64))) >= 0.5
    g = t[v] > 0.5
    tp, fp, fn = np.sum(b & g), np.sum(b & ~g), np.sum(~b & g)
    return 100 * 2 * tp / (2 * tp + fp + fn)


def _data(rng, sizes, h=6, w=6):
    preds, targets = [], []
    for i, b in enumerate(sizes):
        t = (rng.random((b, 1, h, w)) < 0.3).astype(np.float32)
        bias = 2.0 if i == 0 else -0.5
        p = (rng.normal(size=t.shape) + bias * (2 * t - 1)).astype(np.float32)
        t[rng.random(t.shape) < 0.2] = -1
        preds.append(p)
        targets.append(t)
    return preds, targets


def test_against_numpy_unequal_batches():
    rng = np.random.default_rng(0)
    preds, targets = _data(rng, [3, 1])
    m = fed(EdgeMetrics(), preds, targets)
    ref = _np_f(preds, targets)
    assert m.compute()["F@0.5"].item() == pytest.approx(ref, rel=1e-5)
    avg = np.mean([_np_f([p], [t]) for p, t in zip(preds, targets)])
    assert abs(avg - ref) > 1.0


def test_invalid_pixels_and_empty():
    m = EdgeMetrics()
    # logits: +, +, -, + ; targets: 1, 0, 1, -1  -> TP 1, FP 1, FN 1, last pixel invalid
    m.update(torch.tensor([[[[3.0, 1.0, -2.0, 5.0]]]]), torch.tensor([[[[1.0, 0.0, 1.0, -1.0]]]]))
    assert m.compute()["F@0.5"].item() == pytest.approx(50.0)
    e = EdgeMetrics()
    e.update(torch.tensor([[[[-3.0]]]]), torch.tensor([[[[0.0]]]]))
    assert e.compute()["F@0.5"].item() == 0.0


def test_merge_state_equals_single():
    rng = np.random.default_rng(1)
    preds, targets = _data(rng, [3, 1])
    r0, whole = merged_and_whole(EdgeMetrics, preds, targets)
    assert r0.compute()["F@0.5"].item() == pytest.approx(whole.compute()["F@0.5"].item())

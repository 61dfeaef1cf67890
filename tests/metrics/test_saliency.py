"""SaliencyMetrics against a NumPy re-derivation over batches of unequal sizes."""

import numpy as np
import pytest
import torch

from mtkd.metrics.saliency import SaliencyMetrics


def _numpy_reference(preds, targets, beta2=0.3):
    p = np.concatenate([x.reshape(-1) for x in preds])
    g = np.concatenate([x.reshape(-1) for x in targets])
    v = g >= 0
    p, g = p[v], g[v] > 0.5
    fs = []
    for t in [0.05 * k for k in range(1, 20)]:
        b = p >= t
        tp, pp, ap = (b & g).sum(), b.sum(), g.sum()
        prec = tp / pp if pp else 0.0
        rec = tp / ap if ap else 0.0
        fs.append((1 + beta2) * prec * rec / (beta2 * prec + rec) if (beta2 * prec + rec) > 0 else 0.0)
    b = p >= 0.5
    iou = (b & g).sum() / (b | g).sum()
    return 100 * max(fs), 100 * iou


def test_against_numpy_unequal_batches():
    rng = np.random.default_rng(0)
    preds, targets = [], []
    m = SaliencyMetrics()
    for bs in (1, 3, 2):
        g = (rng.random((bs, 1, 9, 11)) < 0.4).astype(np.float32)
        g[rng.random(g.shape) < 0.1] = -1
        p = np.clip(0.6 * np.where(g > 0, 1, 0) + 0.5 * rng.random(g.shape), 0, 1).astype(np.float32)
        m.update(torch.from_numpy(p), torch.from_numpy(g))
        preds.append(p)
        targets.append(g)
    got = m.compute()
    maxf, iou = _numpy_reference(preds, targets)
    assert got["maxF"].item() == pytest.approx(maxf, rel=1e-5)
    assert got["mIoU"].item() == pytest.approx(iou, rel=1e-5)
    assert m.thresholds.numel() == 19


def test_perfect_and_empty():
    g = torch.zeros(2, 1, 5, 5)
    g[:, :, 1:3] = 1
    m = SaliencyMetrics()
    m.update(g.clone(), g)
    assert m.compute()["maxF"].item() == pytest.approx(100.0) and m.compute()["mIoU"].item() == pytest.approx(100.0)
    m0 = SaliencyMetrics()
    m0.update(torch.zeros_like(g), g)
    assert m0.compute()["maxF"].item() == 0.0 and m0.compute()["mIoU"].item() == 0.0


def test_merge_equals_single_pass():
    x = torch.rand(4, 1, 6, 6, generator=torch.Generator().manual_seed(1))
    y = (torch.rand(4, 1, 6, 6, generator=torch.Generator().manual_seed(2)) > 0.5).float()
    a, b, c = SaliencyMetrics(), SaliencyMetrics(), SaliencyMetrics()
    a.update(x[:1], y[:1])
    b.update(x[1:], y[1:])
    c.update(x, y)
    a.merge_state(b)
    for k in ("maxF", "mIoU"):
        assert a.compute()[k].item() == pytest.approx(c.compute()[k].item())

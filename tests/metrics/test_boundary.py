"""BoundaryF (odsF / oisF) against independent re-derivations: skimage's thinning, a literal min-cost solution of
BSDS correspondPixels' objective (linear_sum_assignment with outlier nodes), brute-force enumeration, and the
previous max-flow code path (boundary_reference.py) on random images; bad input; the process pool."""

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from mtkd.errors import MtkdError
from mtkd.metrics.boundary import BoundaryF, image_counts, match_count, thin


def _blobs(rng, h, w, p=0.3, grow=1):
    from scipy import ndimage

    return ndimage.binary_dilation(rng.random((h, w)) < p / 4, iterations=grow)


def test_thin_equals_skimage():
    sk = pytest.importorskip("skimage.morphology")
    rng = np.random.default_rng(0)
    for k in range(15):
        a = _blobs(rng, 30 + k, 41, p=0.4, grow=k % 3)
        np.testing.assert_array_equal(thin(a), sk.thin(a))


def test_thin_properties():
    a = np.zeros((9, 9), bool)
    a[2:7, 2:7] = True
    t = thin(a)
    assert t.sum() >= 1 and (t <= a).all() and (thin(t) == t).all()


def _correspond_min_cost(p, g, r, oc_mult=100.0):
    """Literal correspondPixels objective: min sum(dist of matched pairs) + outlierCost per unmatched pixel."""
    P, G = np.argwhere(p), np.argwhere(g)
    n, m = len(P), len(G)
    if n == 0 or m == 0:
        return 0
    oc = oc_mult * r
    d = np.sqrt(((P[:, None, :] - G[None, :, :]) ** 2).sum(-1))
    big = 1e9
    cost = np.full((n + m, m + n), 0.0)
    cost[:n, :m] = np.where(d <= r + 1e-9, d, big)
    cost[:n, m:] = big
    cost[np.arange(n), m + np.arange(n)] = oc  # pred i unmatched
    cost[n:, :m] = big
    cost[n + np.arange(m), np.arange(m)] = oc  # gt j unmatched
    cost[n:, m:] = 0.0
    rows, cols = linear_sum_assignment(cost)
    return int(sum(1 for i, j in zip(rows, cols) if i < n and j < m and cost[i, j] < big))


def _brute(p, g, r):
    P, G = np.argwhere(p), np.argwhere(g)
    oc = 100 * r
    best = (math.inf, 0)
    for perm in itertools.product(*[[None] + [j for j in range(len(G)) if np.hypot(*(P[i] - G[j])) <= r + 1e-9]
                                    for i in range(len(P))]):
        used = [j for j in perm if j is not None]
        if len(used) != len(set(used)):
            continue
        c = sum(np.hypot(*(P[i] - G[j])) for i, j in enumerate(perm) if j is not None)
        c += oc * (len(P) + len(G) - 2 * len(used))
        best = min(best, (c, -len(used)))
    return -best[1]


def test_matching_brute_force_tiny():
    rng = np.random.default_rng(1)
    for _ in range(40):
        p = rng.random((5, 6)) < 0.18
        g = rng.random((5, 6)) < 0.18
        if p.sum() > 6:
            continue
        r = rng.choice([1.0, 1.5, 2.0])
        assert match_count(p, g, r) == _brute(p, g, r) == _correspond_min_cost(p, g, r)


def test_matching_min_cost_medium():
    rng = np.random.default_rng(2)
    for _ in range(10):
        p, g = rng.random((30, 30)) < 0.06, rng.random((30, 30)) < 0.06
        r = 0.011 * math.hypot(30, 30) * rng.choice([1, 3, 5])
        assert match_count(p, g, r) == _correspond_min_cost(p, g, r)


def _reference(probs, gts, thresholds, max_dist):
    """Independent BSDS pipeline: skimage thin, literal min-cost matching, ODS / OIS in plain NumPy."""
    sk = pytest.importorskip("skimage.morphology")
    per_image = []
    for prob, gt in zip(probs, gts):
        valid = gt >= 0
        if not valid.any():
            continue
        gtb = (gt == 1) & valid
        r = max_dist * math.hypot(*prob.shape)
        rows = []
        for t in thresholds:
            b = sk.thin(prob >= t) & valid
            m = _correspond_min_cost(b, gtb, r)
            rows.append((m, b.sum(), m, gtb.sum()))
        per_image.append(np.array(rows, dtype=float))

    def f(c):
        P = c[..., 0] / c[..., 1] if np.all(c[..., 1] > 0) else np.divide(c[..., 0], c[..., 1], out=np.zeros_like(c[..., 0]), where=c[..., 1] > 0)
        R = np.divide(c[..., 2], c[..., 3], out=np.zeros_like(c[..., 2]), where=c[..., 3] > 0)
        return np.divide(2 * P * R, P + R, out=np.zeros_like(P), where=(P + R) > 0)

    total = sum(per_image)
    ods = f(total).max()
    ois = f(sum(c[np.argmax(f(c))] for c in per_image))
    return 100 * ods, 100 * ois


def test_against_independent_pipeline_unequal_batches():
    rng = np.random.default_rng(3)
    from scipy import ndimage

    probs, gts = [], []
    for k in range(5):
        gt = np.zeros((24, 32), np.int64)
        gt[rng.integers(2, 22), :] = 1
        gt[:, rng.integers(2, 30)] = 1
        prob = ndimage.gaussian_filter(gt.astype(float), 1.2) * 2.5 + 0.25 * rng.random(gt.shape)
        prob = np.clip(np.roll(prob, rng.integers(-1, 2), axis=0), 0, 1)
        if k == 1:
            gt[:, :8] = -1  # invalid region
        if k == 3:
            gt[:] = -1  # fully invalid image: skipped
        probs.append(prob.astype(np.float32).astype(np.float64))
        gts.append(gt)
    ths = torch.tensor([0.1, 0.3, 0.5, 0.7, 0.9], dtype=torch.float64)
    metric = BoundaryF(max_dist=0.04, thresholds=ths)
    for a, b in ((0, 2), (2, 5)):  # batches of unequal size
        metric.update(torch.tensor(np.stack(probs[a:b]))[:, None].float(), torch.tensor(np.stack(gts[a:b]))[:, None])
    got = metric.compute()
    ods, ois = _reference(probs, gts, ths.numpy(), 0.04)
    assert got["odsF"].item() == pytest.approx(ods, abs=1e-4)
    assert got["oisF"].item() == pytest.approx(ois, abs=1e-4)
    assert 0 < got["odsF"] <= got["oisF"] <= 100
    assert metric.n_images.item() == 4


def test_perfect_empty_and_state_merge():
    gt = torch.zeros(2, 1, 20, 20)
    gt[:, :, 10, :] = 1
    m = BoundaryF(thresholds=9)
    m.update(gt.clone(), gt)
    assert m.compute()["odsF"].item() == pytest.approx(100.0)
    m0 = BoundaryF(thresholds=9)
    m0.update(torch.zeros(2, 1, 20, 20), gt)
    assert m0.compute()["odsF"].item() == 0.0
    # summing the states of two workers equals one worker seeing everything (what DDP's "sum" reduction does)
    rng = torch.Generator().manual_seed(0)
    x = torch.rand(4, 1, 20, 20, generator=rng)
    a, b, c = BoundaryF(thresholds=9), BoundaryF(thresholds=9), BoundaryF(thresholds=9)
    a.update(x[:1], gt[:1].repeat(1, 1, 1, 1))
    b.update(x[1:2], gt[:1])
    c.update(x[:2], gt)
    a.merge_state(b)
    assert a.compute()["odsF"].item() == pytest.approx(c.compute()["odsF"].item())
    assert a.compute()["oisF"].item() == pytest.approx(c.compute()["oisF"].item())
    assert all(r == "sum" or getattr(r, "__name__", "") in ("dim_zero_sum",) for r in c._reductions.values())


# --- the compiled kernels against the previous implementation ------------------------------------------------------


def _voronoi_case(*args, **kwargs):
    return pytest.importorskip("boundary_reference").voronoi_case(*args, **kwargs)


def test_counts_equal_previous_implementation():
    """Per-threshold counts equal the old thinning + max-flow code path on random images, radii and invalid masks."""
    ref = pytest.importorskip("boundary_reference")
    rng = np.random.default_rng(7)
    ths = np.array([0.05, 0.15, 0.3, 0.45, 0.6, 0.8, 0.95])
    for k in range(6):
        h, w = int(rng.integers(30, 70)), int(rng.integers(30, 90))
        prob, gt = _voronoi_case(rng, h, w, regions=int(rng.integers(3, 12)), texture=float(rng.uniform(0.1, 0.6)))
        if k % 2:
            gt[rng.random(gt.shape) < 0.1] = -1  # scattered invalid pixels
            gt[:, : w // 5] = -1  # and an invalid band
        max_dist = float(rng.choice([0.0075, 0.011, 0.03]))
        np.testing.assert_array_equal(image_counts(prob, gt, ths, max_dist), ref.image_counts(prob, gt, ths, max_dist))


def test_matching_equals_previous_on_dense_random_sets():
    ref = pytest.importorskip("boundary_reference")
    rng = np.random.default_rng(8)
    for _ in range(60):
        h, w = rng.integers(5, 50, 2)
        p, g = rng.random((h, w)) < rng.uniform(0.01, 0.5), rng.random((h, w)) < rng.uniform(0.01, 0.5)
        r = float(rng.uniform(0.5, 6))
        assert match_count(p, g, r) == ref.match_count(p, g, r)


def test_thin_equals_previous_on_solid_shapes():
    ref = pytest.importorskip("boundary_reference")
    rng = np.random.default_rng(9)
    for k in range(8):
        prob, _ = _voronoi_case(rng, 50, 60, texture=0.8)
        b = prob >= rng.uniform(0.1, 0.5)  # large blobs with holes: many thinning iterations
        np.testing.assert_array_equal(thin(b), ref.thin(b))
    full = np.ones((31, 40), bool)
    np.testing.assert_array_equal(thin(full), ref.thin(full))


# --- bad input -------------------------------------------------------------------------------------------------------


def test_bad_input_is_refused_in_one_line():
    m = BoundaryF(thresholds=5)
    gt = torch.zeros(2, 1, 8, 8)
    with pytest.raises(MtkdError, match="differ in size"):
        m.update(torch.rand(2, 1, 8, 9), gt)
    with pytest.raises(MtkdError, match=r"probabilities in \[0, 1\].*sigmoid"):
        m.update(torch.randn(2, 1, 8, 8) * 5, gt)  # logits
    with pytest.raises(MtkdError, match="non-finite"):
        m.update(torch.full((2, 1, 8, 8), float("nan")), gt)
    with pytest.raises(MtkdError, match="B x 1 x H x W"):
        m.update(torch.rand(2, 3, 8, 8), torch.zeros(2, 3, 8, 8))
    for bad in (dict(thresholds=0), dict(thresholds=torch.tensor([0.5, 0.2])), dict(max_dist=5.0), dict(workers=-1)):
        with pytest.raises(MtkdError):
            BoundaryF(**bad)
    assert m.n_images.item() == 0


def test_no_boundary_and_all_invalid_images():
    """A ground truth without boundary adds predicted pixels only; an all-invalid image adds nothing; no NaN."""
    m = BoundaryF(thresholds=5)
    pred = torch.zeros(1, 1, 16, 16)
    pred[0, 0, 8, :] = 0.9
    m.update(pred, torch.zeros(1, 1, 16, 16))  # no boundary pixel: sumR 0, sumP 16 at every threshold
    assert m.sum_r.sum().item() == 0 and m.sum_p.tolist() == [16.0] * 5 and m.n_images.item() == 1
    out = m.compute()
    assert out["odsF"].item() == 0.0 and out["oisF"].item() == 0.0
    m.update(pred, torch.full((1, 1, 16, 16), -1.0))  # every pixel invalid: skipped
    assert m.n_images.item() == 1 and m.sum_p.tolist() == [16.0] * 5
    empty = BoundaryF(thresholds=5)
    empty.update(torch.zeros(1, 1, 16, 16), torch.full((1, 1, 16, 16), -1.0))
    assert empty.compute()["odsF"].item() == 0.0 and empty.n_images.item() == 0


# --- non-maximum suppression -----------------------------------------------------------------------------------------


def test_nms_keeps_the_ridge_of_a_blurred_line_and_fades_the_border():
    from scipy import ndimage

    from mtkd.metrics.boundary_kernels import edge_nms

    img = np.eye(60)  # a diagonal line (an exactly axis-aligned one has Oxy = 0, sign 0: no suppression, as MATLAB)
    soft = ndimage.gaussian_filter(img, 2.0)
    soft /= soft.max()
    out = edge_nms(soft)
    assert (np.diag(out)[5:-5] > 0.3).all()
    assert (out[~np.eye(60, dtype=bool)] == 0).all()  # one pixel wide, on the line
    d = np.diag(out)
    assert d[0] == 0 and 0 < d[1] < d[2] < d[3] < d[4] < d[5] and d[-1] == 0  # faded over 5 px at the border
    np.testing.assert_allclose(edge_nms(np.fliplr(soft))[5:-5, 5:-5], np.fliplr(out)[5:-5, 5:-5], atol=1e-9)


# --- the pool --------------------------------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_pool_equals_in_process_and_a_dead_worker_is_one_clear_error():
    rng = np.random.default_rng(10)
    cases = [_voronoi_case(rng, 40, 50) for _ in range(3)]
    preds = torch.tensor(np.stack([c[0] for c in cases]))[:, None]
    gts = torch.tensor(np.stack([c[1] for c in cases]))[:, None]
    inline, pooled = BoundaryF(thresholds=9), BoundaryF(thresholds=9, workers=1)
    inline.update(preds, gts)
    pooled.update(preds[:2], gts[:2])
    pooled.update(preds[2:], gts[2:])
    assert pooled.compute() == inline.compute()
    assert torch.equal(pooled.cnt_p, inline.cnt_p) and pooled.n_images.item() == 3
    pooled.reset()
    pooled.update(preds, gts)
    pooled._drain()
    for proc in list(pooled._pool._processes.values()):  # the worker this test started
        proc.kill()
        proc.join()
    with pytest.raises(MtkdError, match="worker process died.*no odsF is reported"):
        pooled.update(preds, gts)
        pooled.compute()
    with pytest.raises(MtkdError, match="no odsF is reported"):
        pooled.compute()  # stays refused until reset
    pooled.reset()

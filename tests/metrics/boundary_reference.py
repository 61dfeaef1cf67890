"""The previous, slow boundary-matching code path of ``mtkd.metrics.boundary`` (commit 6a406cb), kept verbatim
as the reference the compiled kernels are checked against (tests) and timed against (``benchmarks/eval_speed.py``).
Not part of the package: thinning from scratch per threshold with ``ndimage.correlate`` over the whole image, and
a unit-capacity max-flow (``scipy.sparse.csgraph.maximum_flow``, Dinic) over all pixel pairs within the radius.
Also :func:`voronoi_case`, the synthetic image both use.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_flow

# Neighbour weights, bit k <-> Guo-Hall's x_{k+1}: x1 = E, x2 = NE, x3 = N, x4 = NW, x5 = W, x6 = SW, x7 = S, x8 = SE.
_WEIGHTS = np.array([[8, 4, 2], [16, 0, 1], [32, 64, 128]], dtype=np.uint8)


def _guo_hall_luts() -> tuple[np.ndarray, np.ndarray]:
    """Deletion tables of Guo & Hall (1989), Algorithm A1, for the two subiterations, indexed by the 8-bit code."""
    first = np.zeros(256, dtype=bool)
    second = np.zeros(256, dtype=bool)
    for code in range(256):
        x = [None] + [(code >> k) & 1 for k in range(8)]  # x[1..8]
        x.append(x[1])  # x9 = x1
        # G1: crossing number X_H(p) = 1
        xh = sum(1 for i in range(1, 5) if x[2 * i - 1] == 0 and (x[2 * i] or x[2 * i + 1]))
        # G2: 2 <= min(n1, n2) <= 3
        n1 = sum(1 for k in range(1, 5) if x[2 * k - 1] or x[2 * k])
        n2 = sum(1 for k in range(1, 5) if x[2 * k] or x[2 * k + 1])
        g12 = xh == 1 and 2 <= min(n1, n2) <= 3
        # G3 (first subiteration): (x2 | x3 | ~x8) & x1 == 0 ; G3' (second): (x6 | x7 | ~x4) & x5 == 0
        g3 = not ((x[2] or x[3] or not x[8]) and x[1])
        g3p = not ((x[6] or x[7] or not x[4]) and x[5])
        first[code] = g12 and g3
        second[code] = g12 and g3p
    return first, second


_LUT1, _LUT2 = _guo_hall_luts()


def thin(bmap: np.ndarray) -> np.ndarray:
    """Thin a binary map to one-pixel-wide 8-connected curves (MATLAB ``bwmorph(x, 'thin', inf)``; Guo & Hall 1989).

    Iterates both subiterations until nothing changes; pixels outside the image count as background.
    """
    skel = np.asarray(bmap, dtype=bool).astype(np.uint8)
    if skel.ndim != 2:
        raise ValueError(f"thin expects a 2-D map, got shape {skel.shape}")
    before = -1
    while True:
        for lut in (_LUT1, _LUT2):
            code = ndimage.correlate(skel, _WEIGHTS, mode="constant", cval=0)
            skel[lut[code] & (skel == 1)] = 0
        now = int(skel.sum())
        if now == before:
            return skel.astype(bool)
        before = now


def _offsets(radius: float) -> np.ndarray:
    r = int(math.floor(radius + 1e-9))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    keep = dy**2 + dx**2 <= radius**2 * (1 + 1e-9) + 1e-12
    return np.stack([dy[keep], dx[keep]], axis=1)


def match_count(pred: np.ndarray, gt: np.ndarray, radius: float) -> int:
    """Size of a maximum one-to-one matching between the True pixels of ``pred`` and ``gt`` within ``radius`` px.

    Pixels with no partner within the radius (found with a Euclidean distance transform) are dropped first; the
    remaining candidate pairs are enumerated by pixel offset and handed to a unit-capacity max-flow (Dinic).
    """
    pred = np.asarray(pred, dtype=bool)
    gt = np.asarray(gt, dtype=bool)
    if not pred.any() or not gt.any():
        return 0
    h, w = pred.shape
    near_gt = ndimage.distance_transform_edt(~gt) <= radius * (1 + 1e-9) + 1e-12
    near_pred = ndimage.distance_transform_edt(~pred) <= radius * (1 + 1e-9) + 1e-12
    p = pred & near_gt
    g = gt & near_pred
    if not p.any():
        return 0
    gid = np.full(h * w, -1, dtype=np.int64)
    gflat = np.flatnonzero(g)
    gid[gflat] = np.arange(len(gflat))
    py, px = np.nonzero(p)
    rows, cols = [], []
    pidx = np.arange(len(py))
    for dy, dx in _offsets(radius):
        y, x = py + dy, px + dx
        ok = (y >= 0) & (y < h) & (x >= 0) & (x < w)
        j = gid[y[ok] * w + x[ok]]
        hit = j >= 0
        rows.append(pidx[ok][hit])
        cols.append(j[hit])
    rows_a, cols_a = np.concatenate(rows), np.concatenate(cols)
    if rows_a.size == 0:
        return 0
    # unit-capacity flow source -> predicted pixel -> ground-truth pixel -> sink; Dinic's algorithm is
    # Hopcroft-Karp on this graph (scipy's maximum_bipartite_matching is pathologically slow on long curves)
    n, m = len(py), len(gflat)
    src, snk = n + m, n + m + 1
    r = np.concatenate([np.full(n, src), rows_a, n + np.arange(m)])
    c = np.concatenate([np.arange(n), n + cols_a, np.full(m, snk)])
    graph = csr_matrix((np.ones(r.size, dtype=np.int32), (r, c)), shape=(n + m + 2, n + m + 2))
    return int(maximum_flow(graph, src, snk, method="dinic").flow_value)


def image_counts(
    prob: np.ndarray, gt: np.ndarray, thresholds: np.ndarray, max_dist: float, do_thin: bool = True
) -> np.ndarray | None:
    """Per-threshold ``(cntP, sumP, cntR, sumR)`` for one image, shape ``(T, 4)``; None if no pixel is valid.

    ``prob``: H x W edge probabilities; ``gt``: H x W with 1 = boundary, 0 = not, -1 (any negative) = invalid.
    """
    prob = np.asarray(prob, dtype=np.float64)
    gt = np.asarray(gt)
    valid = gt >= 0
    if not valid.any():
        return None
    gtb = (gt > 0.5) & valid
    h, w = prob.shape
    radius = max_dist * math.hypot(h, w)
    out = np.zeros((len(thresholds), 4), dtype=np.float64)
    n_gt = int(gtb.sum())
    for k, t in enumerate(thresholds):
        bmap = prob >= t
        if do_thin and bmap.any():
            bmap = thin(bmap)
        bmap &= valid
        m = match_count(bmap, gtb, radius)
        # one ground truth per image: matched predicted pixels = matched ground-truth pixels
        out[k] = (m, int(bmap.sum()), m, n_gt)
    return out


def voronoi_case(rng: np.random.Generator, h: int, w: int, regions: int = 8, texture: float = 0.35):
    """``(prob, gt)``: a ground truth of Voronoi-region boundaries (1 / 0) and a soft prediction of it as an edge
    network gives one: the boundaries shifted by up to 2 px and blurred, over a smooth texture and pixel noise
    (low thresholds keep most of the image, which is the costly part for thinning)."""
    pts = rng.random((regions, 2)) * [h, w]
    yy, xx = np.mgrid[0:h, 0:w]
    lab = np.argmin((yy[..., None] - pts[:, 0]) ** 2 + (xx[..., None] - pts[:, 1]) ** 2, axis=-1)
    gt = (np.diff(lab, axis=0, append=lab[-1:]) != 0) | (np.diff(lab, axis=1, append=lab[:, -1:]) != 0)
    soft = ndimage.gaussian_filter(np.roll(gt.astype(float), int(rng.integers(-2, 3)), axis=1), 1.5) * 3
    tex = ndimage.gaussian_filter(rng.random((h, w)), 2.0)
    tex = (tex - tex.min()) / (tex.max() - tex.min() + 1e-12)
    prob = np.clip(soft + texture * tex + 0.05 * rng.random((h, w)), 0, 1)
    return prob, gt.astype(np.int64)

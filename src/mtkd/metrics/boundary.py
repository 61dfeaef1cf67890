"""Boundary detection F-measures (odsF, oisF) as the BSDS / SEISM benchmark computes them, in pure NumPy/SciPy.

Protocol (Martin et al., PAMI 2004, "Learning to detect natural image boundaries"; BSDS500 ``evaluation_bdry_image``
and ``collect_eval_bdry``; SEISM, Pont-Tuset & Marques, CVPR 2013, which the dense-MTL codebases call from MATLAB):

1. for each threshold t (99 by default: 0.01, 0.02, ..., 0.99, the values ASTMT / Multi-Task-Learning-PyTorch write
   into SEISM's parameter file; BSDS's ``linspace(1/(n+1), 1-1/(n+1), n)`` gives the same for n = 99) binarise the
   predicted edge probability ``pb >= t``;
2. thin the binary map to one-pixel-wide curves (MATLAB ``bwmorph(bmap, 'thin', inf)``, i.e. Guo & Hall's
   two-subiteration algorithm; :func:`thin` re-derives its lookup tables from the paper's conditions and is tested
   pixel-for-pixel against ``skimage.morphology.thin``);
3. match predicted boundary pixels to ground-truth boundary pixels one-to-one, a pair being allowed when the two
   pixels are at most ``max_dist`` x image diagonal apart (0.0075 for PASCAL-Context, 0.011 for NYUD);
4. per image count ``cntP`` = matched predicted pixels, ``sumP`` = predicted pixels, ``cntR`` = matched ground-truth
   pixels, ``sumR`` = ground-truth pixels;
5. ODS: sum the four counts over all images per threshold, P = cntP/sumP, R = cntR/sumR, F = 2PR/(P+R), max over t;
   OIS: per image take the threshold with the best F, sum that threshold's counts over the images, F of the sums.

Matching. ``correspondPixels`` (BSDS ``match.cc``) solves a min-cost perfect matching on a graph where each pixel may
also be left unmatched at a cost of ``outlierCost`` = 100 x maxDist. Each extra matched pair saves 2 x outlierCost
= 200 x maxDist, more than any reassignment along an augmenting path of fewer than ~400 pixels can cost, so the
minimiser is a *maximum-cardinality* matching (with minimum total distance among those), and the counts of step 4
depend only on its cardinality. We therefore compute an exact maximum-cardinality bipartite matching (unit-capacity
max-flow, Dinic = Hopcroft-Karp on this graph, ``scipy.sparse.csgraph.maximum_flow``) on all pixel pairs within
the radius. This is
not a greedy nearest-neighbour approximation; the test suite checks the counts against a literal min-cost solution
of the ``correspondPixels`` objective (``scipy.optimize.linear_sum_assignment`` with outlier nodes) and against
brute-force enumeration on tiny images. Differences to the MATLAB tools that remain:

- ``match.cc`` connects outlier nodes sparsely at random (degree 6), which can make its result differ from the
  exact optimum by a pixel or so, non-deterministically; ours is exact and deterministic.
- BSDS ``collect_eval_bdry`` interpolates P/R linearly between adjacent thresholds when it searches the ODS
  maximum (slightly higher odsF); SEISM's ``general_ods`` and this metric take the max over the thresholds only.
- the reference codebases save predictions as 8-bit PNGs (probabilities quantised to k/255) and, for the published
  numbers, apply non-maximum suppression before thresholding; this metric thresholds the given map as is (apply NMS
  and quantisation yourself if you need those numbers exactly). No AP is computed.
- ground-truth pixels marked invalid (-1) are excluded from both sides: they are not ground-truth boundary and
  predicted pixels on them are dropped after thinning. An image with no valid pixel is skipped.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import ndimage
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_flow
from torchmetrics import Metric

__all__ = ["BoundaryF", "thin", "match_count", "image_counts", "default_thresholds"]

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


def default_thresholds(n: int = 99) -> torch.Tensor:
    """``n`` evenly spaced thresholds strictly inside (0, 1): 0.01 .. 0.99 for n = 99 (BSDS / SEISM)."""
    return torch.linspace(1.0 / (n + 1), 1.0 - 1.0 / (n + 1), n, dtype=torch.float64)


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


def _f(cnt_p, sum_p, cnt_r, sum_r):
    p = np.where(sum_p > 0, cnt_p / np.maximum(sum_p, 1e-300), 0.0)
    r = np.where(sum_r > 0, cnt_r / np.maximum(sum_r, 1e-300), 0.0)
    return np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-300), 0.0)


class BoundaryF(Metric):
    """odsF and oisF (in %) of predicted edge probabilities against {0, 1, -1} boundary maps; see the module doc.

    ``update(preds, target)``: ``preds`` B x 1 x H x W (or B x H x W) probabilities in [0, 1] (apply the sigmoid
    to logits first), ``target`` of the same spatial size, 1 boundary / 0 background / -1 invalid.
    States are per-threshold count sums (``dist_reduce_fx="sum"``), so they sync under DDP.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, max_dist: float = 0.011, thresholds: int | torch.Tensor = 99, thin: bool = True, **kwargs):
        super().__init__(**kwargs)
        if isinstance(thresholds, int):
            ts = default_thresholds(thresholds)
        else:
            ts = torch.as_tensor(thresholds, dtype=torch.float64).flatten()
        if ts.numel() == 0:
            raise ValueError("BoundaryF needs at least one threshold")
        self.max_dist = float(max_dist)
        self.thin = bool(thin)
        self._thresholds = ts.numpy().copy()
        t = len(self._thresholds)
        for name in ("cnt_p", "sum_p", "cnt_r", "sum_r"):
            self.add_state(name, default=torch.zeros(t, dtype=torch.float64), dist_reduce_fx="sum")
        for name in ("ois_cnt_p", "ois_sum_p", "ois_cnt_r", "ois_sum_r", "n_images"):
            self.add_state(name, default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    @property
    def thresholds(self) -> np.ndarray:
        return self._thresholds

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        if preds.dim() == 4:
            preds = preds[:, 0]
        if target.dim() == 4:
            target = target[:, 0]
        if preds.dim() == 2:
            preds, target = preds[None], target[None]
        if preds.shape != target.shape:
            raise ValueError(f"BoundaryF: preds {tuple(preds.shape)} and target {tuple(target.shape)} differ")
        p = preds.detach().double().cpu().numpy()
        g = target.detach().cpu().numpy()
        add = np.zeros((len(self._thresholds), 4))
        ois = np.zeros(4)
        n = 0
        for i in range(p.shape[0]):
            c = image_counts(p[i], g[i], self._thresholds, self.max_dist, self.thin)
            if c is None:
                continue
            n += 1
            add += c
            best = int(np.argmax(_f(c[:, 0], c[:, 1], c[:, 2], c[:, 3])))  # first best threshold on ties
            ois += c[best]
        dev, dt = self.cnt_p.device, torch.float64
        self.cnt_p += torch.as_tensor(add[:, 0], dtype=dt, device=dev)
        self.sum_p += torch.as_tensor(add[:, 1], dtype=dt, device=dev)
        self.cnt_r += torch.as_tensor(add[:, 2], dtype=dt, device=dev)
        self.sum_r += torch.as_tensor(add[:, 3], dtype=dt, device=dev)
        self.ois_cnt_p += float(ois[0])
        self.ois_sum_p += float(ois[1])
        self.ois_cnt_r += float(ois[2])
        self.ois_sum_r += float(ois[3])
        self.n_images += n

    def compute(self) -> dict[str, torch.Tensor]:
        ods = _f(*(x.cpu().numpy() for x in (self.cnt_p, self.sum_p, self.cnt_r, self.sum_r))).max()
        ois = _f(*(x.cpu().numpy() for x in (self.ois_cnt_p, self.ois_sum_p, self.ois_cnt_r, self.ois_sum_r)))
        return {"odsF": torch.tensor(100.0 * float(ods)), "oisF": torch.tensor(100.0 * float(ois))}

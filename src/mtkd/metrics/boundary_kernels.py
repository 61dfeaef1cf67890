"""Compiled kernels of the boundary benchmark (see :mod:`mtkd.metrics.boundary` for the protocol): Guo-Hall
thinning on a work list, an exact maximum-cardinality bipartite matching (Hopcroft-Karp) on the sparse local
candidate pairs, and the structured-edge non-maximum suppression. NumPy, SciPy and numba only (no torch); pool
workers are forked with the kernels loaded; the first call of each kernel in a fresh interpreter compiles it or
loads numba's on-disk cache.

Why these are exact and not approximations of the old code path (``tests/metrics/boundary_reference.py``):

- thinning: Guo & Hall's two subiterations delete, in parallel, the pixels whose 8-neighbourhood code is in the
  subiteration's table. A pixel whose 8 neighbours are all on has code 255, which neither table deletes, and a
  pixel with an off neighbour keeps it (pixels are only ever turned off). A pixel's verdict under a table depends
  on its code alone, so only pixels whose neighbourhood changed since that table last saw them need evaluating:
  one work list per subiteration (at first every on pixel with an off neighbour, then the on-neighbours of every
  deleted pixel), deletions applied after each subiteration, stop after two subiterations in a row delete nothing.
  Same result as correlating the whole image each time (tested against skimage and the old code).
- matching: any matching is maximum once no augmenting path exists (Berge). Hopcroft-Karp starts from a greedy
  matching and augments along shortest alternating paths until a BFS from the free left pixels reaches no free
  right pixel; the greedy order and which side is "left" (the smaller) only change the speed. The candidate pairs
  are exactly the pairs within the radius (per row, ``|dx| <= floor(sqrt(r^2 - dy^2))`` with the 1e-9 tolerance of
  :func:`offsets`).
- a threshold whose binary map has as many pixels as the previous (lower) threshold's has the same map (the maps
  are nested), so its counts are reused.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["thin", "match_count", "threshold_counts", "image_counts", "edge_nms", "offsets", "GUO_HALL_LUTS"]


def _guo_hall_luts() -> tuple[np.ndarray, np.ndarray]:
    """Deletion tables of Guo & Hall (1989), Algorithm A1, for the two subiterations, indexed by the 8-bit code of
    the neighbours, bit k <-> x_{k+1}: x1 = E, x2 = NE, x3 = N, x4 = NW, x5 = W, x6 = SW, x7 = S, x8 = SE."""
    first = np.zeros(256, dtype=np.bool_)
    second = np.zeros(256, dtype=np.bool_)
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


GUO_HALL_LUTS = np.stack(_guo_hall_luts())  # 2 x 256


@njit(cache=True)
def _code(img, p, wp):
    """8-bit neighbour code of flat pixel ``p`` in the padded image of row stride ``wp``."""
    return (img[p + 1] | (img[p - wp + 1] << 1) | (img[p - wp] << 2) | (img[p - wp - 1] << 3)
            | (img[p - 1] << 4) | (img[p + wp - 1] << 5) | (img[p + wp] << 6) | (img[p + wp + 1] << 7))


@njit(cache=True)
def _thin_padded(img, hp, wp, luts):
    """Thin the padded flat uint8 image ``img`` (hp x wp, a zero frame) in place.

    One work list per subiteration holds the pixels whose neighbourhood changed since that subiteration's table was
    last evaluated on them (at first: every on pixel with an off neighbour); a pixel the table kept, with the same
    neighbourhood, would be kept again."""
    n = hp * wp
    listed = np.zeros((2, n), dtype=np.uint8)
    cand = np.empty((2, n), dtype=np.int64)
    nc = np.zeros(2, dtype=np.int64)
    for y in range(1, hp - 1):
        for x in range(1, wp - 1):
            p = y * wp + x
            if img[p] and _code(img, p, wp) != 255:
                for s in range(2):
                    cand[s, nc[s]] = p
                    nc[s] += 1
                    listed[s, p] = 1
    dels = np.empty(n, dtype=np.int64)
    nbr = np.array([1, -wp + 1, -wp, -wp - 1, -1, wp - 1, wp, wp + 1])
    idle = 0  # subiterations in a row that deleted nothing
    sub = 0
    while idle < 2:
        nd = 0
        for i in range(nc[sub]):  # evaluate on the state before the subiteration
            p = cand[sub, i]
            listed[sub, p] = 0
            if img[p] and luts[sub, _code(img, p, wp)]:
                dels[nd] = p
                nd += 1
        nc[sub] = 0
        for i in range(nd):
            img[dels[i]] = 0
        for i in range(nd):  # the on-neighbours of a deleted pixel changed: re-evaluate them in both subiterations
            p = dels[i]
            for k in range(8):
                q = p + nbr[k]
                if img[q]:
                    for s in range(2):
                        if not listed[s, q]:
                            listed[s, q] = 1
                            cand[s, nc[s]] = q
                            nc[s] += 1
        idle = idle + 1 if nd == 0 else 0
        sub = 1 - sub


def thin(bmap: np.ndarray) -> np.ndarray:
    """Thin a binary map to one-pixel-wide 8-connected curves (MATLAB ``bwmorph(x, 'thin', inf)``; Guo & Hall 1989).

    Iterates both subiterations until nothing changes; pixels outside the image count as background.
    """
    b = np.asarray(bmap, dtype=bool)
    if b.ndim != 2:
        raise ValueError(f"thin expects a 2-D map, got shape {b.shape}")
    padded = np.zeros((b.shape[0] + 2, b.shape[1] + 2), dtype=np.uint8)
    padded[1:-1, 1:-1] = b
    if b.any():
        _thin_padded(padded.reshape(-1), padded.shape[0], padded.shape[1], GUO_HALL_LUTS)
    return padded[1:-1, 1:-1].astype(bool)


def offsets(radius: float) -> np.ndarray:
    """Pixel offsets ``(dy, dx)`` within ``radius`` (inclusive, a 1e-9 relative tolerance), nearest first."""
    r = int(math.floor(radius + 1e-9))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    d2 = dy**2 + dx**2
    keep = d2 <= radius**2 * (1 + 1e-9) + 1e-12
    order = np.argsort(d2[keep], kind="stable")
    return np.stack([dy[keep][order], dx[keep][order]], axis=1).astype(np.int64)


def _half_widths(offs: np.ndarray) -> np.ndarray:
    """For dy = -R..R (index dy + R), the largest |dx| with (dy, dx) in the offsets (-1: none): the same pairs."""
    r = int(np.abs(offs[:, 0]).max())
    hw = np.full(2 * r + 1, -1, dtype=np.int64)
    for dy, dx in offs:
        hw[dy + r] = max(hw[dy + r], abs(int(dx)))
    return hw


@njit(cache=True)
def _row_start(ys, h):
    """CSR row pointers of pixels listed in row-major order: row y holds ``[start[y], start[y+1])``."""
    start = np.zeros(h + 1, dtype=np.int64)
    for i in range(ys.shape[0]):
        start[ys[i] + 1] += 1
    for y in range(h):
        start[y + 1] += start[y]
    return start


@njit(cache=True)
def _row_range(y, x, d, rx, rstart):
    """Indices ``[i, j)`` of the right pixels of row ``y`` (columns ``rx``, row pointers ``rstart``) with
    ``|column - x| <= d``, by binary search."""
    lo = rstart[y]
    hi = rstart[y + 1]
    while lo < hi:  # first with column >= x - d
        mid = (lo + hi) // 2
        if rx[mid] < x - d:
            lo = mid + 1
        else:
            hi = mid
    j = lo
    while j < rstart[y + 1] and rx[j] <= x + d:
        j += 1
    return lo, j


@njit(cache=True)
def _candidates(u, ys, xs, rx, rstart, h, hw, buf, nbuf):
    """Append left pixel u's candidates (right pixels within the half-widths ``hw``, rows nearest first:
    dy = 0, -1, 1, -2, 2, ...) to ``buf`` (grown as needed); returns ``(buf, new length)``."""
    r = (hw.shape[0] - 1) // 2
    for m in range(2 * r + 1):
        dy = (m + 1) // 2 if m % 2 else -(m // 2)
        y = ys[u] + dy
        if hw[dy + r] < 0 or y < 0 or y >= h:
            continue
        i, j = _row_range(y, xs[u], hw[dy + r], rx, rstart)
        if nbuf + j - i > buf.shape[0]:
            grown = np.empty(2 * (nbuf + j - i), dtype=np.int64)
            grown[:nbuf] = buf[:nbuf]
            buf = grown
        for v in range(i, j):
            buf[nbuf] = v
            nbuf += 1
    return buf, nbuf


@njit(cache=True)
def _max_matching(ys, xs, rx, rstart, h, hw):
    """Size of a maximum matching between the left pixels ``(ys, xs)`` and the right pixels (listed in row-major
    order: columns ``rx``, row pointers ``rstart``; a right pixel's id is its index), a pair being allowed when
    ``|dx| <= hw[dy + R]`` (:func:`_half_widths`).

    A greedy start gives each left pixel the first free candidate (rows nearest first); then Hopcroft-Karp phases
    until a BFS from the free left pixels reaches no free right pixel. Candidate lists are built only for the left
    pixels a BFS reaches, on first use (most pixels are matched by the greedy pass and never reached)."""
    n = ys.shape[0]
    n_right = rx.shape[0]
    r = (hw.shape[0] - 1) // 2
    match_l = np.full(n, -1, dtype=np.int64)
    match_r = np.full(n_right, -1, dtype=np.int64)
    size = 0
    for u in range(n):  # greedy
        for m in range(2 * r + 1):
            dy = (m + 1) // 2 if m % 2 else -(m // 2)
            y = ys[u] + dy
            if hw[dy + r] < 0 or y < 0 or y >= h:
                continue
            i, j = _row_range(y, xs[u], hw[dy + r], rx, rstart)
            for v in range(i, j):
                if match_r[v] < 0:
                    match_l[u] = v
                    match_r[v] = u
                    size += 1
                    break
            if match_l[u] >= 0:
                break
    lo = np.full(n, -1, dtype=np.int64)  # candidates of u: buf[lo[u]:hi[u]] once built
    hi = np.full(n, -1, dtype=np.int64)
    buf = np.empty(max(64, 4 * n), dtype=np.int64)
    nbuf = 0
    inf = np.int64(1) << 60
    dist = np.empty(n, dtype=np.int64)
    queue = np.empty(n, dtype=np.int64)
    it = np.empty(n, dtype=np.int64)
    stack = np.empty(n + 1, dtype=np.int64)
    vstack = np.empty(n + 1, dtype=np.int64)
    while True:
        head = 0
        tail = 0
        for u in range(n):
            dist[u] = inf
            if match_l[u] < 0:
                if lo[u] < 0:
                    lo[u] = nbuf
                    buf, nbuf = _candidates(u, ys, xs, rx, rstart, h, hw, buf, nbuf)
                    hi[u] = nbuf
                if hi[u] > lo[u]:
                    dist[u] = 0
                    queue[tail] = u
                    tail += 1
        found = False
        while head < tail:
            u = queue[head]
            head += 1
            if lo[u] < 0:
                lo[u] = nbuf
                buf, nbuf = _candidates(u, ys, xs, rx, rstart, h, hw, buf, nbuf)
                hi[u] = nbuf
            for e in range(lo[u], hi[u]):
                m = match_r[buf[e]]
                if m < 0:
                    found = True
                elif dist[m] == inf:
                    dist[m] = dist[u] + 1
                    queue[tail] = m
                    tail += 1
        if not found:
            return size
        for u in range(n):
            it[u] = lo[u]  # every u with a finite dist has its list (the BFS built it)
        for root in range(n):
            if match_l[root] >= 0 or dist[root] != 0:
                continue
            stack[0] = root
            sp = 1
            while sp > 0:
                u = stack[sp - 1]
                if it[u] == hi[u]:
                    dist[u] = inf  # dead end for the rest of this phase
                    sp -= 1
                    continue
                v = buf[it[u]]
                it[u] += 1
                m = match_r[v]
                if m < 0:  # augmenting path root -> ... -> u -> v
                    vstack[sp - 1] = v
                    for k in range(sp):
                        match_l[stack[k]] = vstack[k]
                        match_r[vstack[k]] = stack[k]
                    size += 1
                    break
                if dist[m] == dist[u] + 1:
                    vstack[sp - 1] = v
                    stack[sp] = m
                    sp += 1


@njit(cache=True)
def _threshold_counts(prob, valid, near, gt, n_gt, thresholds, hw, do_thin, luts):
    """``(matched, predicted)`` pixel counts per threshold (ascending) for one image: binarise ``prob >= t``,
    thin (optional), drop invalid pixels, match against the ground truth ``gt`` (only predicted pixels in
    ``near``, the pixels within the radius of some ground-truth pixel, can match). A threshold that keeps the same
    pixels as the previous one (the maps are nested: same count, same map) reuses its counts."""
    h, w = prob.shape
    hp, wp = h + 2, w + 2
    out = np.zeros((thresholds.shape[0], 2), dtype=np.int64)
    img = np.zeros(hp * wp, dtype=np.uint8)
    ys = np.empty(h * w, dtype=np.int64)
    xs = np.empty(h * w, dtype=np.int64)
    gy = np.empty(n_gt, dtype=np.int64)
    gx = np.empty(n_gt, dtype=np.int64)
    i = 0
    for y in range(h):
        for x in range(w):
            if gt[y, x]:
                gy[i] = y
                gx[i] = x
                i += 1
    gstart = _row_start(gy, h)
    last_on = -1
    for k in range(thresholds.shape[0]):
        t = thresholds[k]
        on = 0
        for y in range(h):
            for x in range(w):
                b = prob[y, x] >= t
                img[(y + 1) * wp + x + 1] = b
                on += b
        if on == last_on:
            out[k] = out[k - 1]
            continue
        last_on = on
        if do_thin and on:
            _thin_padded(img, hp, wp, luts)
        n_pred = 0
        n = 0
        for y in range(h):
            for x in range(w):
                if img[(y + 1) * wp + x + 1] and valid[y, x]:
                    n_pred += 1
                    if near[y, x]:
                        ys[n] = y
                        xs[n] = x
                        n += 1
        out[k, 1] = n_pred
        if n == 0 or n_gt == 0:
            continue
        if n <= n_gt:  # the smaller side on the left: fewer free vertices to grow the BFS from
            out[k, 0] = _max_matching(ys[:n], xs[:n], gx, gstart, h, hw)
        else:
            out[k, 0] = _max_matching(gy, gx, xs[:n], _row_start(ys[:n], h), h, hw)
    return out


def threshold_counts(prob: np.ndarray, gt: np.ndarray, valid: np.ndarray, thresholds: np.ndarray, radius: float,
                     do_thin: bool = True) -> np.ndarray:
    """``(matched, predicted)`` pixel counts per threshold, shape ``(T, 2)`` int64, for one H x W image.

    ``gt``: boolean boundary map (already restricted to ``valid``); ``valid``: pixels that count (predicted pixels
    outside it are dropped after thinning); ``thresholds`` ascending.
    """
    from scipy import ndimage

    gt = np.ascontiguousarray(gt, dtype=bool)
    n_gt = int(gt.sum())
    if n_gt:
        near = ndimage.distance_transform_edt(~gt) <= radius * (1 + 1e-9) + 1e-12
    else:
        near = np.zeros(gt.shape, dtype=bool)
    return _threshold_counts(np.ascontiguousarray(prob, dtype=np.float64), np.ascontiguousarray(valid, dtype=bool),
                             near, gt, n_gt, np.ascontiguousarray(thresholds, dtype=np.float64),
                             _half_widths(offsets(radius)), bool(do_thin), GUO_HALL_LUTS)


def match_count(pred: np.ndarray, gt: np.ndarray, radius: float, offs: np.ndarray | None = None) -> int:
    """Size of a maximum one-to-one matching between the True pixels of ``pred`` and ``gt`` within ``radius`` px
    (Euclidean, inclusive). ``offs`` (from :func:`offsets`) may be passed to skip recomputing it."""
    pred = np.asarray(pred, dtype=bool)
    gt = np.asarray(gt, dtype=bool)
    if not pred.any() or not gt.any():
        return 0
    py, px = (a.astype(np.int64) for a in np.nonzero(pred))
    gy, gx = (a.astype(np.int64) for a in np.nonzero(gt))
    return int(_max_matching(py, px, gx, _row_start(gy, gt.shape[0]), gt.shape[0],
                             _half_widths(offsets(radius) if offs is None else offs)))


def _conv_tri(img: np.ndarray, r: int) -> np.ndarray:
    """Piotr Dollar's ``convTri``: separable triangle filter of radius ``r`` (r = 1: [1 2 1]/4), symmetric padding."""
    if r <= 1:
        f = np.array([1.0, 2.0, 1.0]) / 4.0
        r = 1
    else:
        f = np.array(list(range(1, r + 1)) + [r + 1] + list(range(r, 0, -1)), dtype=np.float64) / (r + 1) ** 2
    p = np.pad(img, r, mode="symmetric")
    k = len(f)
    rows = sum(f[i] * p[:, i : i + p.shape[1] - k + 1] for i in range(k))
    return sum(f[i] * rows[i : i + rows.shape[0] - k + 1, :] for i in range(k))


def _interp(e: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear sample of ``e`` at columns ``x``, rows ``y``, clamped as ``edgesNmsMex``'s ``interp``."""
    h, w = e.shape
    x = np.clip(x, 0, w - 1.001)
    y = np.clip(y, 0, h - 1.001)
    x0, y0 = x.astype(np.int64), y.astype(np.int64)
    dx0, dy0 = x - x0, y - y0
    dx1, dy1 = 1 - dx0, 1 - dy0
    return (e[y0, x0] * dx1 * dy1 + e[y0, x0 + 1] * dx0 * dy1 + e[y0 + 1, x0] * dx1 * dy0
            + e[y0 + 1, x0 + 1] * dx0 * dy0)


def edge_nms(prob: np.ndarray, r: int = 1, s: int = 5, m: float = 1.01) -> np.ndarray:
    """Non-maximum suppression of a soft edge map as the reference codebases' ``nms_process.m`` (HED / RCF / ATRC,
    Piotr Dollar's structured-edge toolbox ``edgesNmsMex``): ``E = convTri(E, 1)``; orientation from the second
    derivatives of ``convTri(E, 4)``, ``O = mod(atan(Oyy * sign(-Oxy) / (Oxx + 1e-5)), pi)``; a pixel is zeroed if
    ``m * E`` is below the bilinear sample of E at distance 1..r on either side along O; values within ``s`` pixels
    of the image border are scaled down linearly to 0 at the border."""
    e = _conv_tri(np.asarray(prob, dtype=np.float64), 1)
    oy, ox = np.gradient(_conv_tri(e, 4))
    _, oxx = np.gradient(ox)
    oyy, oxy = np.gradient(oy)
    with np.errstate(divide="ignore", invalid="ignore"):
        o = np.mod(np.arctan(oyy * np.sign(-oxy) / (oxx + 1e-5)), np.pi)
    h, w = e.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    c, sn = np.cos(o), np.sin(o)
    keep = np.ones_like(e, dtype=bool)
    for d in [d for d in range(-r, r + 1) if d]:
        keep &= ~(e * m < _interp(e, xx + d * c, yy + d * sn))
    out = np.where(keep, e, 0.0)
    s = min(s, w // 2, h // 2)
    ramp_x = np.minimum(np.arange(w), np.arange(w)[::-1])
    ramp_y = np.minimum(np.arange(h), np.arange(h)[::-1])
    if s > 0:
        out = out * np.minimum(ramp_x / s, 1.0)[None, :] * np.minimum(ramp_y / s, 1.0)[:, None]
    return out


def image_counts(prob: np.ndarray, gt: np.ndarray, thresholds: np.ndarray, max_dist: float, do_thin: bool = True,
                 nms: bool = False, quantize: bool = False) -> np.ndarray | None:
    """Per-threshold ``(cntP, sumP, cntR, sumR)`` for one image, shape ``(T, 4)`` float64; None if no pixel is valid.

    ``prob``: H x W edge probabilities in [0, 1]; ``gt``: H x W with 1 = boundary, 0 = not, any negative = invalid;
    ``thresholds`` ascending. ``nms`` applies :func:`edge_nms` first, ``quantize`` then rounds to k/255 (the 8-bit
    PNGs the reference codebases evaluate). The radius is ``max_dist`` x the image diagonal.
    """
    prob = np.asarray(prob, dtype=np.float64)
    gt = np.asarray(gt)
    valid = gt >= 0
    if not valid.any():
        return None
    if nms:
        prob = edge_nms(prob)
    if quantize:
        prob = np.round(np.clip(prob, 0.0, 1.0) * 255.0) / 255.0
    gtb = (gt > 0.5) & valid
    radius = max_dist * math.hypot(*prob.shape)
    c = threshold_counts(prob, gtb, valid, thresholds, radius, do_thin)
    n_gt = float(gtb.sum())
    # one ground truth per image: matched predicted pixels = matched ground-truth pixels
    return np.stack([c[:, 0], c[:, 1], c[:, 0], np.full(len(c), n_gt)], axis=1).astype(np.float64)

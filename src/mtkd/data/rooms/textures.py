"""Materials of ``rooms`` (colour families, texture kinds, drawn from the scene's generator) and their procedural
solid textures (flat mottle, checker, stripes, value noise, wood grain) evaluated at 3-D points."""

from __future__ import annotations

import colorsys

import numpy as np


# ------------------------------------------------------------------------------------------------------ materials


def _pick(rng: np.random.Generator, probs: list[float]) -> int:
    """An index drawn with the given probabilities (cheaper than ``rng.choice`` for a handful of items)."""
    u, acc = rng.random(), 0.0
    for i, p in enumerate(probs):
        acc += p
        if u < acc:
            return i
    return len(probs) - 1


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, float(np.clip(s, 0, 1)), float(np.clip(v, 0, 1))))


def _colour(rng: np.random.Generator, family: str) -> np.ndarray:
    if family == "object":  # overlapping palettes: objects sometimes take wall or wood colours
        u = rng.random()
        if u < 0.2:
            family = "wall"
        elif u < 0.3:
            family = "wood"
        else:
            return _hsv(rng.random(), rng.uniform(0.15, 0.85), rng.uniform(0.25, 0.95))
    if family == "wall":
        return _hsv(rng.random(), rng.uniform(0.0, 0.3), rng.uniform(0.55, 0.95))
    if family == "wood":
        return _hsv(rng.uniform(0.04, 0.12), rng.uniform(0.3, 0.75), rng.uniform(0.25, 0.75))
    if family == "ceiling":
        return _hsv(rng.random(), rng.uniform(0.0, 0.08), rng.uniform(0.75, 0.95))
    return _hsv(rng.random(), rng.uniform(0.0, 0.6), rng.uniform(0.2, 0.8))  # "any": carpets, tiles


def _material(rng: np.random.Generator, family: str) -> dict:
    """A solid texture: ``colour = c1 + (c2 - c1) * pattern(freq * p + offset)`` at the hit point p (metres)."""
    kinds = {
        "object": (["flat", "checker", "stripes", "noise", "wood"], [0.35, 0.15, 0.2, 0.2, 0.1]),
        "wall": (["flat", "stripes", "noise"], [0.55, 0.25, 0.2]),
        "floor": (["wood", "checker", "noise"], [0.45, 0.3, 0.25]),
        "ceiling": (["flat", "checker", "noise"], [0.6, 0.2, 0.2]),
    }[family]
    kind = kinds[0][_pick(rng, kinds[1])]
    if family == "floor":
        c1 = _colour(rng, "wood" if kind == "wood" else "any")
    else:
        c1 = _colour(rng, family)
    if kind in ("checker", "stripes") and rng.random() < 0.5:
        c2 = _colour(rng, "any" if family != "ceiling" else "ceiling")
    else:  # a darker / lighter shade of the same colour
        c2 = np.clip(c1 * rng.uniform(0.45, 1.35), 0, 1)
    if kind == "flat":
        c2 = np.clip(c1 * rng.uniform(0.85, 1.15), 0, 1)
    freq = {"flat": rng.uniform(1, 4), "checker": rng.uniform(1.5, 7), "stripes": rng.uniform(3, 14),
            "noise": rng.uniform(2, 10), "wood": rng.uniform(2, 8)}[kind]
    axis = rng.normal(size=3)
    return {"kind": kind, "c1": c1, "c2": c2, "freq": freq, "offset": rng.uniform(0, 16, 3),
            "axis": axis / np.linalg.norm(axis)}


# ------------------------------------------------------------------------------------------------------ textures


def _value_noise(p: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Trilinear value noise in [0, 1] with smoothstep weights on a periodic m^3 lattice of random values."""
    m = table.shape[0]
    flat = table.ravel()
    base = np.floor(p)
    f = p - base
    w1 = f * f * (3 - 2 * f)
    w0 = 1 - w1
    i0 = base.astype(np.int64) % m
    i1 = (i0 + 1) % m
    xs = (i0[:, 0] * (m * m), i1[:, 0] * (m * m))
    ys = (i0[:, 1] * m, i1[:, 1] * m)
    zs = (i0[:, 2], i1[:, 2])
    ws = (w0, w1)
    out = np.zeros(len(p))
    for cx in (0, 1):
        for cy in (0, 1):
            xy = xs[cx] + ys[cy]
            wxy = ws[cx][:, 0] * ws[cy][:, 1]
            out += wxy * (ws[0][:, 2] * flat[xy + zs[0]] + ws[1][:, 2] * flat[xy + zs[1]])
    return out


def _pattern(mat: dict, p: np.ndarray, table: np.ndarray) -> np.ndarray:
    q = p * mat["freq"] + mat["offset"]
    kind = mat["kind"]
    if kind == "checker":
        return (np.floor(q).astype(np.int64).sum(axis=1) % 2).astype(float)
    if kind == "stripes":
        return (np.sin(2 * np.pi * (q @ mat["axis"])) > 0).astype(float)
    if kind == "wood":
        warp = 1.5 * _value_noise(q * 0.5, table)
        return 0.5 + 0.5 * np.sin(2 * np.pi * (q @ mat["axis"] + warp))
    if kind == "flat":  # a faint mottle
        return _value_noise(q, table)
    n = _value_noise(q, table) * 0.65 + _value_noise(q * 2.7 + 5.0, table) * 0.35
    return np.clip((n - 0.5) * 2.0 + 0.5, 0, 1)

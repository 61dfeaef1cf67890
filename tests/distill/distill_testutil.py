"""Helpers for the distillation-loss tests: fixed inputs and loop-based NumPy references (written independently of
the vectorised implementations in mtkd.distill.losses)."""

from __future__ import annotations

import math

import numpy as np
import torch


def maps(shape, seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g) * scale


def rand_mask(b, h, w, seed, p=0.7):
    g = torch.Generator().manual_seed(seed)
    m = torch.rand(b, h, w, generator=g) < p
    m[0, 0, 0] = True
    return m


def np_softmax(v):
    v = np.asarray(v, dtype=np.float64)
    e = np.exp(v - v.max())
    return e / e.sum()


def np_cs(p, q):
    """Cauchy-Schwarz divergence, scalar loops."""
    pq = sum(a * b for a, b in zip(p, q))
    pp = sum(a * a for a in p)
    qq = sum(b * b for b in q)
    return -math.log(pq / math.sqrt(pp * qq))


def valid_pixels(b, h, w, mask):
    for i in range(b):
        for y in range(h):
            for x in range(w):
                if mask is None or bool(mask[i, y, x]):
                    yield i, y, x

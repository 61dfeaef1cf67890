"""Exact ray / primitive intersections for the ``rooms`` renderer, vectorised over rays with NumPy.

Every function takes one ray origin ``o`` (3,) and many ray directions ``d`` (M, 3) in world coordinates and returns
a :class:`Hit`: the ray parameter ``t`` (M,) of the first intersection in front of the origin (``inf`` where the
ray misses), the unit outward normal (M, 3) in world coordinates, the hit point in the primitive's own frame (M, 3,
used for solid textures) and a face index (M,) so that the caller can tell the faces of a box or the caps of a
cylinder apart (a face change is a crease, hence a boundary).

The directions are not normalised: the renderer passes ``d = R @ (x, y, 1)`` for a camera ray, so that ``t`` *is*
the z-depth along the optical axis. World frame: y up, the floor is ``y = 0``. Boxes and cylinders stand upright and
may only turn about the vertical axis (``yaw``), which is all an indoor scene needs.

Standard formulas (e.g. Shirley & Morley, *Realistic Ray Tracing*, ch. 2-3): slab test for boxes, the quadratic
for spheres and for the side of a cylinder, plane tests for its caps. The ``room`` is the inside of an axis-aligned
box seen from within: the first face a ray exits through.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["Hit", "ray_box", "ray_sphere", "ray_cylinder", "ray_room", "rot_y"]

EPS = 1e-6


class Hit(NamedTuple):
    t: np.ndarray  # (M,) ray parameter, inf = miss
    normal: np.ndarray  # (M, 3) unit outward normal, world frame
    local: np.ndarray  # (M, 3) hit point in the primitive's frame
    face: np.ndarray  # (M,) int, which face of the primitive


def rot_y(yaw: float) -> np.ndarray:
    """Rotation about the world's vertical (y) axis; maps a primitive's frame to the world frame."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def ray_box(o: np.ndarray, d: np.ndarray, center: np.ndarray, half: np.ndarray, yaw: float = 0.0) -> Hit:
    """Entry point of the rays into the box ``|R^T (p - center)| <= half`` (slab test). Faces 2*axis + (side > 0)."""
    rot = rot_y(yaw)
    ol = rot.T @ (np.asarray(o, float) - center)
    dl = d @ rot  # == (rot.T @ d.T).T
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / dl
        t1 = (-half - ol) * inv
        t2 = (half - ol) * inv
    tmin = np.minimum(t1, t2)
    rows = np.arange(len(d))
    axis = np.argmax(tmin, axis=1)
    tnear = tmin[rows, axis]
    tfar = np.maximum(t1, t2).min(axis=1)
    hit = (tnear <= tfar) & (tnear > EPS)
    t = np.where(hit, tnear, np.inf)
    sign = np.where(dl[rows, axis] < 0, 1.0, -1.0)  # the entry face looks against the ray
    nl = np.zeros_like(dl)
    nl[rows, axis] = sign
    local = ol + np.where(hit, tnear, 0.0)[:, None] * dl
    face = 2 * axis + (sign > 0)
    return Hit(t, nl @ rot.T, local, face)


def ray_sphere(o: np.ndarray, d: np.ndarray, center: np.ndarray, radius: float) -> Hit:
    """Nearest root of ``|o + t d - center|^2 = radius^2`` in front of the origin. One face."""
    oc = np.asarray(o, float) - center
    a = np.einsum("ij,ij->i", d, d)
    b = d @ oc
    c = oc @ oc - radius * radius
    disc = b * b - a * c
    ok = disc >= 0
    t = (-b - np.sqrt(np.where(ok, disc, 0.0))) / a
    hit = ok & (t > EPS)
    t = np.where(hit, t, np.inf)
    local = oc + np.where(hit, t, 0.0)[:, None] * d
    normal = local / radius
    return Hit(t, normal, local, np.zeros(len(d), dtype=np.int64))


def ray_cylinder(o: np.ndarray, d: np.ndarray, base: np.ndarray, radius: float, height: float) -> Hit:
    """Upright cylinder from ``base`` (centre of the bottom disc) up by ``height``. Faces: 0 side, 1 top, 2 bottom."""
    ol = np.asarray(o, float) - base
    dx, dy, dz = d[:, 0], d[:, 1], d[:, 2]
    a = dx * dx + dz * dz
    b = dx * ol[0] + dz * ol[2]
    c = ol[0] ** 2 + ol[2] ** 2 - radius * radius
    disc = b * b - a * c
    with np.errstate(divide="ignore", invalid="ignore"):
        ts = (-b - np.sqrt(np.where(disc >= 0, disc, 0.0))) / a
        ys = ol[1] + ts * dy
        side = (disc >= 0) & (a > 0) & (ts > EPS) & (ys >= 0) & (ys <= height)
        t_side = np.where(side, ts, np.inf)
        best, face = t_side, np.zeros(len(d), dtype=np.int64)
        for k, yc in ((1, height), (2, 0.0)):
            tc = (yc - ol[1]) / dy
            px = ol[0] + tc * dx
            pz = ol[2] + tc * dz
            cap = (tc > EPS) & (px * px + pz * pz <= radius * radius)
            tc = np.where(cap, tc, np.inf)
            better = tc < best
            best = np.where(better, tc, best)
            face = np.where(better, k, face)
    hit = np.isfinite(best)
    local = ol + np.where(hit, best, 0.0)[:, None] * d
    normal = np.zeros_like(d)
    radial = local[:, [0, 2]] / radius
    normal[:, 0] = np.where(face == 0, radial[:, 0], 0.0)
    normal[:, 2] = np.where(face == 0, radial[:, 1], 0.0)
    normal[:, 1] = np.select([face == 1, face == 2], [1.0, -1.0], 0.0)
    return Hit(best, normal, local, face)


def ray_room(o: np.ndarray, d: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> Hit:
    """Exit point of rays cast from inside the box ``lo <= p <= hi``; normals point into the room.

    Faces: 0 x = lo, 1 x = hi, 2 y = lo (floor), 3 y = hi (ceiling), 4 z = lo, 5 z = hi.
    """
    o = np.asarray(o, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        tt = np.where(d > 0, (hi - o) / d, np.where(d < 0, (lo - o) / d, np.inf))
    rows = np.arange(len(d))
    axis = np.argmin(tt, axis=1)
    t = tt[rows, axis]
    positive = d[rows, axis] > 0
    normal = np.zeros_like(d)
    normal[rows, axis] = np.where(positive, -1.0, 1.0)
    local = o + t[:, None] * d
    return Hit(t, normal, local, 2 * axis + positive)

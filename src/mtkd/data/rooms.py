"""``rooms``: an embedded, procedurally rendered indoor dataset (NYUv2-like tasks, no download).

What. Each scene is a random room box (floor, walls, ceiling, 0-2 windows) seen from a camera standing inside it,
furnished with cabinets (boxes), balls (spheres), barrels (cylinders), tables (a top on four legs) and lamps (floor,
table or pendant lamps: base, pole and shade) plus a little "clutter" that is deliberately left unlabelled. Every
pixel is ray cast exactly (:mod:`mtkd.data.rooms_raycast`, vectorised over pixels), which gives per pixel

- ``label``  semantic class id in ``CLASSES`` (int16), -1 on clutter (ignore); windows keep the ``wall`` label;
- ``depth``  z-depth along the optical axis in metres (as NYUv2), 0 where invalid: windows (glass, as a Kinect sees
  it), a few blob-shaped dropouts and the one- or two-pixel "projector shadow" beside occluding edges;
- ``normal`` unit surface normal in the camera frame, **x right, y up, z toward the camera** (it faces the camera:
  negative dot product with the pixel's viewing ray; z > 0 on most pixels); a horizontal image flip maps it to the
  flipped scene by negating x. All-zero where the depth is invalid;
- ``edge``   1 on surface boundaries: wherever the (object, face) id changes between 4-neighbours — object and
  semantic boundaries plus creases such as box edges and cylinder rims — marked on the nearer side, ~1 px wide.

Appearance: procedural solid textures per surface (flat, checker, stripes, value noise, wood grain) with colours
drawn from overlapping palettes (an object's colour does not tell its class; its shape does), Lambertian shading
with the exact normals under one or two point lights and a weak directional fill (no shadows), ambient light,
glowing lamp shades, bright windows, then a random exposure, contrast and colour cast and Gaussian sensor noise.

Why. Tests and tutorials need a multi-task dense dataset that is always available, small, exact and learnable in
minutes on a CPU, where segmentation, depth and normals all carry signal and are coupled through the geometry.

Determinism. Scene ``i`` of a split is drawn from ``np.random.default_rng([seed, split_id, i])`` alone (the sensor
noise from ``[seed, split_id, i, 1]``), so growing ``n`` leaves earlier scenes unchanged and the geometry does not
depend on the image size. Bump ``GENERATOR_VERSION`` whenever the output for a given seed changes.

Camera: pinhole, square pixels, horizontal field of view ``HFOV`` (64 degrees, about NYUv2's Kinect), principal
point at the image centre, pixel (i, j) sampled at its centre (j + 0.5, i + 0.5).
"""

from __future__ import annotations

import colorsys
import json
import math
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mtkd.data.rooms_raycast import Hit, ray_box, ray_cylinder, ray_room, ray_sphere, rot_y
from mtkd.errors import MtkdError

__all__ = ["CLASSES", "GENERATOR_VERSION", "HFOV", "SPLITS", "render_scene", "render_scenes", "write_rooms"]

CLASSES: tuple[str, ...] = ("floor", "wall", "ceiling", "cabinet", "ball", "barrel", "table", "lamp")
FLOOR, WALL, CEILING, CABINET, BALL, BARREL, TABLE, LAMP = range(len(CLASSES))
IGNORE = -1
GENERATOR_VERSION = 1
HFOV = np.deg2rad(64.0)
SPLITS = {"train": 0, "val": 1, "test": 1}  # 'val' is the MTAN folder name of the test split
FOLDERS = ("image", "label", "depth", "normal", "edge")


# --------------------------------------------------------------------------------------------------------- scene


@dataclass
class _Prim:
    kind: str  # "box" | "sphere" | "cyl"
    args: tuple
    label: int
    material: int
    emission: float = 0.0
    surface: int = 0  # first surface id; a face adds its index

    def corners(self) -> np.ndarray:
        """The 8 corners of a world-space box that contains the primitive."""
        if self.kind == "box":
            center, half, yaw = self.args
            sgn = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float)
            return center + (sgn * half) @ rot_y(yaw).T
        if self.kind == "sphere":
            center, r = self.args
            lo, hi = center - r, center + r
        else:
            base, r, h = self.args
            lo, hi = base - [r, 0, r], base + [r, h, r]
        return np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])

    def intersect(self, o: np.ndarray, d: np.ndarray) -> Hit:
        if self.kind == "box":
            return ray_box(o, d, *self.args)
        if self.kind == "sphere":
            return ray_sphere(o, d, *self.args)
        return ray_cylinder(o, d, *self.args)


@dataclass
class _Scene:
    lo: np.ndarray
    hi: np.ndarray
    eye: np.ndarray
    rot: np.ndarray  # camera (x right, y down, z forward) -> world
    prims: list[_Prim]
    materials: list[dict]
    lights: list[tuple[np.ndarray, float]]  # point lights (position, intensity)
    fill: tuple[np.ndarray, float]  # directional fill light (direction towards the light, intensity)
    ambient: float
    windows: list[tuple[int, float, float, float, float]]  # (room face, centre, half width, y0, y1)
    noise_table: np.ndarray
    accent: bool = False
    look: dict = field(default_factory=dict)  # exposure / sensor parameters


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


def _pick(rng: np.random.Generator, probs: list[float]) -> int:
    """An index drawn with the given probabilities (cheaper than ``rng.choice`` for a handful of items)."""
    u, acc = rng.random(), 0.0
    for i, p in enumerate(probs):
        acc += p
        if u < acc:
            return i
    return len(probs) - 1


def _sample_scene(rng: np.random.Generator) -> _Scene:
    """Draw one scene's geometry, materials and lighting (independent of the image size)."""
    sx, sz, sy = rng.uniform(3.2, 6.0), rng.uniform(3.5, 6.5), rng.uniform(2.5, 3.0)
    lo, hi = np.array([-sx / 2, 0.0, -sz / 2]), np.array([sx / 2, sy, sz / 2])
    eye = np.array([rng.uniform(-0.3, 0.3) * sx, rng.uniform(1.2, 1.8), -sz / 2 + rng.uniform(0.3, 1.2)])
    yaw, pitch, roll = rng.uniform(-0.6, 0.6), rng.uniform(-0.65, 0.12), rng.normal(0, 0.03)
    fwd = np.array([np.sin(yaw) * np.cos(pitch), np.sin(pitch), np.cos(yaw) * np.cos(pitch)])
    right = np.cross(fwd, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    down = np.cross(fwd, right)
    c, s = np.cos(roll), np.sin(roll)
    right, down = c * right + s * down, -s * right + c * down
    rot = np.stack([right, down, fwd], axis=1)

    materials = [_material(rng, "floor"), _material(rng, "wall"), _material(rng, "ceiling")]
    accent = bool(rng.random() < 0.35)  # the far wall in another wallpaper
    if accent:
        materials.append(_material(rng, "wall"))
    prims: list[_Prim] = []
    taken: list[tuple[float, float, float]] = []  # footprints (x, z, radius) of what stands on the floor

    def new_material(family: str = "object") -> int:
        materials.append(_material(rng, family))
        return len(materials) - 1

    def free(x: float, z: float, r: float, reach: float | None = None) -> bool:
        """No overlap with placed footprints, and at least 0.7 m between the camera and the object's reach."""
        if math.hypot(x - eye[0], z - eye[2]) < (r if reach is None else reach) + 0.7:
            return False
        return all((x - a) ** 2 + (z - b) ** 2 > (r + q) ** 2 for a, b, q in taken)

    def place(r: float, near: float = 0.9, reach: float | None = None) -> tuple[float, float] | None:
        """A free floor spot for a footprint of radius r, mostly inside the camera's view."""
        for _ in range(25):
            ang = yaw + rng.uniform(-0.55, 0.55) * HFOV
            dist = rng.uniform(near, 4.5)
            x = min(max(eye[0] + dist * math.sin(ang), lo[0] + r + 0.02), hi[0] - r - 0.02)
            z = min(max(eye[2] + dist * math.cos(ang), lo[2] + r + 0.02), hi[2] - r - 0.02)
            if free(x, z, r, reach):
                taken.append((x, z, r))
                return x, z
        return None

    def lamp(x: float, z: float, y0: float, scale: float, mat: int, glow: float) -> None:
        base_r = rng.uniform(0.1, 0.18) * scale
        pole_h = rng.uniform(1.1, 1.55) * scale
        shade_r = rng.uniform(0.16, 0.3) * scale
        shade_h = rng.uniform(0.2, 0.35) * scale
        prims.append(_Prim("cyl", (np.array([x, y0, z]), base_r, 0.04 * scale), LAMP, mat))
        prims.append(_Prim("cyl", (np.array([x, y0, z]), rng.uniform(0.015, 0.03) * scale, pole_h), LAMP, mat))
        shade_mat = new_material("wall")
        top = y0 + pole_h
        if rng.random() < 0.5:
            prims.append(_Prim("cyl", (np.array([x, top - 0.6 * shade_h, z]), shade_r, shade_h), LAMP, shade_mat, glow))
        else:
            prims.append(_Prim("sphere", (np.array([x, top, z]), shade_r * 0.8), LAMP, shade_mat, glow))

    def clutter(x: float, z: float, y0: float) -> None:
        mat = new_material()
        size = rng.uniform(0.08, 0.24, 3)
        kind = rng.integers(3)
        if kind == 0:
            prims.append(_Prim("box", (np.array([x, y0 + size[1], z]), size, rng.uniform(0, np.pi)), IGNORE, mat))
        elif kind == 1:
            prims.append(_Prim("sphere", (np.array([x, y0 + size[0], z]), size[0]), IGNORE, mat))
        else:
            prims.append(_Prim("cyl", (np.array([x, y0, z]), size[0] * 0.7, 2 * size[1]), IGNORE, mat))

    lights: list[tuple[np.ndarray, float]] = []
    n_main = int(rng.integers(8, 13))
    kinds = rng.choice([CABINET, BALL, BARREL, TABLE, LAMP], size=n_main, p=[0.28, 0.2, 0.2, 0.14, 0.18])
    for k in kinds:
        if k == CABINET:
            half = np.array([rng.uniform(0.3, 0.9), rng.uniform(0.3, 1.05), rng.uniform(0.2, 0.45)])
            if rng.random() < 0.6:  # against the far or a side wall
                wall = int(rng.integers(3))
                if wall == 0:
                    x = rng.uniform(lo[0] + half[0] + 0.01, hi[0] - half[0] - 0.01) if sx > 2 * half[0] + 0.02 else 0.0
                    z, yaw_o = hi[2] - half[2] - 0.01, 0.0
                else:
                    sign = -1 if wall == 1 else 1
                    z = rng.uniform(min(eye[2] + 1.0, hi[2] - half[0]), hi[2] - half[0])
                    x, yaw_o = sign * (sx / 2 - half[2] - 0.01), np.pi / 2
                if not free(x, z, half[0], float(np.hypot(half[0], half[2]))):
                    continue
                taken.append((x, z, half[0]))
            else:
                spot = place(float(np.hypot(half[0], half[2])) * 0.8, reach=float(np.hypot(half[0], half[2])))
                if spot is None:
                    continue
                (x, z), yaw_o = spot, rng.uniform(0, np.pi)
            prims.append(_Prim("box", (np.array([x, half[1], z]), half, yaw_o), CABINET, new_material()))
        elif k == BALL:
            r = rng.uniform(0.2, 0.55)
            spot = place(r)
            if spot is not None:
                prims.append(_Prim("sphere", (np.array([spot[0], r, spot[1]]), r), BALL, new_material()))
        elif k == BARREL:
            r, h = rng.uniform(0.2, 0.45), rng.uniform(0.5, 1.3)
            spot = place(r)
            if spot is not None:
                prims.append(_Prim("cyl", (np.array([spot[0], 0.0, spot[1]]), r, h), BARREL, new_material()))
        elif k == TABLE:
            w, d, h = rng.uniform(0.5, 0.9), rng.uniform(0.35, 0.55), rng.uniform(0.65, 0.8)
            spot = place(float(np.hypot(w, d)) * 0.85, reach=float(np.hypot(w, d)))
            if spot is None:
                continue
            x, z = spot
            yaw_t, mat = rng.uniform(0, np.pi), new_material()
            rt, thick, leg = rot_y(yaw_t), rng.uniform(0.04, 0.08), rng.uniform(0.025, 0.045)
            prims.append(_Prim("box", (np.array([x, h - thick, z]), np.array([w, thick, d]), yaw_t), TABLE, mat))
            for a, b in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
                off = rt @ [a * (w - 2 * leg), 0.0, b * (d - 2 * leg)]
                half = np.array([leg, (h - 2 * thick) / 2, leg])
                prims.append(_Prim("box", (np.array([x, half[1], z]) + off, half, yaw_t), TABLE, mat))
            for _ in range(int(rng.integers(0, 3))):  # things on the table
                off = rt @ [rng.uniform(-0.7, 0.7) * w, 0.0, rng.uniform(-0.6, 0.6) * d]
                u = rng.random()
                if u < 0.3:
                    r = rng.uniform(0.08, 0.16)
                    prims.append(_Prim("sphere", (np.array([x + off[0], h + r, z + off[2]]), r), BALL, new_material()))
                elif u < 0.5:
                    lamp(x + off[0], z + off[2], h, 0.4, new_material(), rng.uniform(0.2, 0.5))
                else:
                    clutter(x + off[0], z + off[2], h)
        else:  # lamp: standing on the floor or hanging from the ceiling
            if rng.random() < 0.65:
                spot = place(0.3)
                if spot is None:
                    continue
                glow = rng.uniform(0.2, 0.6) if rng.random() < 0.7 else 0.0
                lamp(spot[0], spot[1], 0.0, 1.0, new_material(), glow)
                if glow > 0:
                    lights.append((np.array([spot[0], 1.4, spot[1]]), rng.uniform(0.3, 0.6)))
            else:
                spot = place(0.3, near=1.8)
                if spot is None:
                    continue
                x, z = spot
                drop = rng.uniform(0.5, 0.9)
                mat = new_material()
                prims.append(_Prim("cyl", (np.array([x, sy - drop, z]), 0.012, drop), LAMP, mat))
                shade_r = rng.uniform(0.18, 0.32)
                if rng.random() < 0.5:
                    prims.append(_Prim("sphere", (np.array([x, sy - drop, z]), shade_r), LAMP, new_material("wall"),
                                       rng.uniform(0.2, 0.6)))
                else:
                    prims.append(_Prim("cyl", (np.array([x, sy - drop - 0.25, z]), shade_r, 0.28), LAMP,
                                       new_material("wall"), rng.uniform(0.2, 0.6)))
    for _ in range(int(rng.integers(1, 5))):  # clutter on the floor (unlabelled: ignore)
        spot = place(0.2)
        if spot is not None:
            clutter(spot[0], spot[1], 0.0)

    for n, p in enumerate(prims):  # surface ids: 0-5 the room's faces, then 6 per primitive (a box has 6 faces)
        p.surface = 6 * (n + 1)

    for _ in range(1 + int(rng.random() < 0.5)):
        pos = np.array([rng.uniform(lo[0] + 0.5, hi[0] - 0.5), sy - rng.uniform(0.2, 0.6),
                        rng.uniform(lo[2] + 0.5, hi[2] - 0.5)])
        lights.append((pos, rng.uniform(0.6, 1.1)))
    fill_dir = rng.normal(size=3)
    fill_dir[1] = abs(fill_dir[1])
    fill = (fill_dir / np.linalg.norm(fill_dir), rng.uniform(0.1, 0.35))

    windows = []
    for _ in range(int(rng.choice([0, 1, 2], p=[0.35, 0.45, 0.2]))):
        face = int(rng.choice([0, 1, 5]))  # the side walls and the far wall
        span = sz if face < 2 else sx
        half_w = rng.uniform(0.4, 0.9)
        centre = rng.uniform(-span / 2 + half_w + 0.1, span / 2 - half_w - 0.1)
        windows.append((face, centre, half_w, rng.uniform(0.8, 1.1), min(sy - 0.15, rng.uniform(1.9, 2.3))))

    look = {
        "exposure": rng.uniform(0.35, 0.55), "contrast": rng.uniform(0.8, 1.2), "gain": 1 + rng.uniform(-0.07, 0.07, 3),
        "sigma": rng.uniform(0.004, 0.025), "holes": rng.uniform(0.0, 0.03) if rng.random() < 0.7 else 0.0,
        "hole_freq": rng.uniform(3, 8), "shadow": int(rng.choice([0, 1, 2], p=[0.3, 0.4, 0.3])),
        "sky": _hsv(rng.uniform(0.5, 0.65), rng.uniform(0.0, 0.35), rng.uniform(0.85, 1.0)),
        "ambient": rng.uniform(0.2, 0.4),
    }
    return _Scene(lo, hi, eye, rot, prims, materials, lights, fill, look["ambient"], windows,
                  rng.random((16, 16, 16)), accent, look)


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


# ----------------------------------------------------------------------------------------------------- rendering


def _intrinsics(height: int, width: int) -> np.ndarray:
    f = (width / 2) / np.tan(HFOV / 2)
    return np.array([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])


def _rays(k: np.ndarray, height: int, width: int) -> np.ndarray:
    """Camera-frame directions (x right, y down, z forward) with z = 1 through the pixel centres, H×W×3."""
    j, i = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    return np.stack([(j - k[0, 2]) / k[0, 0], (i - k[1, 2]) / k[1, 1], np.ones_like(j)], axis=-1)


def _screen_box(prim: _Prim, scene: _Scene, k: np.ndarray, height: int, width: int) -> tuple[int, int, int, int] | None:
    """Pixel rectangle (v0, v1, u0, u1) that contains the primitive's projection, None when off screen."""
    cam = (prim.corners() - scene.eye) @ scene.rot
    if (cam[:, 2] < 0.05).any():
        return 0, height, 0, width
    u = k[0, 0] * cam[:, 0] / cam[:, 2] + k[0, 2]
    v = k[1, 1] * cam[:, 1] / cam[:, 2] + k[1, 2]
    u0, u1 = max(0, int(np.floor(u.min())) - 1), min(width, int(np.floor(u.max())) + 2)
    v0, v1 = max(0, int(np.floor(v.min())) - 1), min(height, int(np.floor(v.max())) + 2)
    if u0 >= u1 or v0 >= v1:
        return None
    return v0, v1, u0, u1


def _render(scene: _Scene, height: int, width: int, noise_rng: np.random.Generator) -> dict[str, np.ndarray]:
    k = _intrinsics(height, width)
    dirs = _rays(k, height, width) @ scene.rot.T  # world directions, camera z-component 1
    flat = dirs.reshape(-1, 3)
    o = scene.eye

    room = ray_room(o, flat, scene.lo, scene.hi)
    t = room.t.reshape(height, width).copy()
    normal = room.normal.reshape(height, width, 3).copy()
    local = room.local.reshape(height, width, 3).copy()
    surf = room.face.reshape(height, width).astype(np.int32)
    label = np.select([surf == 2, surf == 3], [FLOOR, CEILING], WALL).astype(np.int16)
    material = np.select([surf == 2, surf == 3], [0, 2], 1).astype(np.int32)
    emission = np.zeros((height, width))

    # windows: on the room surface, before objects occlude them
    window = np.zeros((height, width), dtype=bool)
    hit_pts = o + t[..., None] * dirs
    for face, centre, half_w, y0, y1 in scene.windows:
        along = hit_pts[..., 2] if face < 2 else hit_pts[..., 0]
        window |= (surf == face) & (np.abs(along - centre) < half_w) & (hit_pts[..., 1] > y0) & (hit_pts[..., 1] < y1)
    if scene.accent:  # the far wall in its own wallpaper (material 3)
        material[surf == 5] = 3

    for prim in scene.prims:
        box = _screen_box(prim, scene, k, height, width)
        if box is None:
            continue
        v0, v1, u0, u1 = box
        sub = dirs[v0:v1, u0:u1]
        hit = prim.intersect(o, sub.reshape(-1, 3))
        th = hit.t.reshape(sub.shape[:2])
        closer = th < t[v0:v1, u0:u1]
        if not closer.any():
            continue
        t[v0:v1, u0:u1][closer] = th[closer]
        normal[v0:v1, u0:u1][closer] = hit.normal.reshape(sub.shape)[closer]
        local[v0:v1, u0:u1][closer] = hit.local.reshape(sub.shape)[closer]
        surf[v0:v1, u0:u1][closer] = prim.surface + hit.face.reshape(sub.shape[:2])[closer]
        label[v0:v1, u0:u1][closer] = prim.label
        material[v0:v1, u0:u1][closer] = prim.material
        emission[v0:v1, u0:u1][closer] = prim.emission
        window[v0:v1, u0:u1][closer] = False

    # albedo from the solid textures, one material at a time (pixels grouped by a stable sort)
    albedo = np.empty((height * width, 3))
    order = np.argsort(material.ravel(), kind="stable")
    ids, starts = np.unique(material.ravel()[order], return_index=True)
    local_flat = local.reshape(-1, 3)
    for m, idx in zip(ids, np.split(order, starts[1:])):
        mat = scene.materials[m]
        pat = _pattern(mat, local_flat[idx], scene.noise_table)
        albedo[idx] = mat["c1"] + (mat["c2"] - mat["c1"]) * pat[:, None]
    albedo = albedo.reshape(height, width, 3)

    # Lambertian shading with the exact normals (no shadows)
    pts = o + t[..., None] * dirs
    light = np.full((height, width), scene.ambient)
    for pos, power in scene.lights:  # point lights, irradiance falling off as 1 / (1 + (d / 3 m)^2)
        vec = pos - pts
        dist2 = np.einsum("hwc,hwc->hw", vec, vec)
        cos = np.maximum(0.0, np.einsum("hwc,hwc->hw", normal, vec)) / np.sqrt(dist2)
        light += (2.0 * power) * cos / (1 + dist2 / 9.0)
    light += scene.fill[1] * np.maximum(0.0, normal @ scene.fill[0])
    img = albedo * light[..., None] + emission[..., None] * (0.6 + 0.4 * albedo)
    look = scene.look
    j, i = np.meshgrid(np.arange(width) / width, np.arange(height) / height)

    # camera: exposure, contrast, colour cast, sensor noise; windows are bright whatever the exposure
    img = img * (look["exposure"] / max(img[~window].mean() if (~window).any() else 1.0, 1e-6))
    knee = 0.8  # soft highlight roll-off instead of hard clipping near lamps and lights
    hot = img > knee
    img[hot] = knee + (1 - knee) * np.tanh((img[hot] - knee) / (1 - knee))
    img[window] = look["sky"] * (0.9 + 0.15 * i[window])[:, None]
    mean = img.mean()
    img = (img - mean) * look["contrast"] + mean
    img = img * look["gain"]
    img = img + look["sigma"] * noise_rng.standard_normal(img.shape, dtype=np.float32)
    img = np.clip(img, 0.0, 1.0)

    # boundaries: surface-id changes between 4-neighbours, marked on the nearer side
    edge = np.zeros((height, width), dtype=bool)
    dh = surf[:, 1:] != surf[:, :-1]
    near = t[:, :-1] <= t[:, 1:]
    edge[:, :-1] |= dh & near
    edge[:, 1:] |= dh & ~near
    dv = surf[1:, :] != surf[:-1, :]
    near = t[:-1, :] <= t[1:, :]
    edge[:-1, :] |= dv & near
    edge[1:, :] |= dv & ~near

    # invalid depth: windows, blob dropouts, projector shadow right of occluding edges
    invalid = window.copy()
    if look["holes"] > 0:
        q = np.stack([j * look["hole_freq"] * width / height, i * look["hole_freq"], np.full_like(i, 7.5)], -1)
        n = _value_noise(q.reshape(-1, 3), scene.noise_table).reshape(height, width)
        kth = min(n.size - 1, int(n.size * (1 - look["holes"])))
        invalid |= n > np.partition(n.ravel(), kth)[kth]
    if look["shadow"]:
        jump = np.zeros((height, width), dtype=bool)
        jump[:, 1:] = t[:, 1:] - t[:, :-1] > 0.25
        for s in range(look["shadow"]):
            invalid[:, s:] |= jump[:, : width - s]

    depth = np.where(invalid, 0.0, t)
    # world -> camera (x right, y down, z forward) -> x right, y up, z toward the camera; already unit length
    n_cam = normal @ (scene.rot * np.array([1.0, -1.0, -1.0]))
    n_cam[invalid] = 0.0
    return {
        "image": img.astype(np.float32),
        "label": label,
        "depth": depth[..., None].astype(np.float32),
        "normal": n_cam.astype(np.float32),
        "edge": edge.astype(np.float32),
    }


def _split_id(split: str) -> int:
    if split not in SPLITS:
        raise MtkdError(f"rooms: unknown split {split!r}; valid: {', '.join(SPLITS)}")
    return SPLITS[split]


def render_scene(index: int, height: int = 96, width: int = 128, seed: int = 0, split: str = "train"
                 ) -> tuple[dict[str, np.ndarray], dict]:
    """Scene ``index`` of a split: the arrays of one sample (as :func:`render_scenes`, without the leading n) and
    the camera (``K`` intrinsics, ``R`` camera->world rotation for x right / y down / z forward, ``eye`` position,
    world y up, floor at y = 0) and room (``lo``, ``hi`` corners) it was rendered with."""
    sid = _split_id(split)
    if not isinstance(seed, (int, np.integer)) or seed < 0 or index < 0:
        raise MtkdError(f"rooms: seed and index must be integers >= 0, got seed={seed!r}, index={index!r}")
    scene = _sample_scene(np.random.default_rng([seed, sid, index]))
    arrays = _render(scene, height, width, np.random.default_rng([seed, sid, index, 1]))
    info = {"K": _intrinsics(height, width), "R": scene.rot, "eye": scene.eye, "lo": scene.lo, "hi": scene.hi}
    return arrays, info


def render_scenes(n: int, height: int = 96, width: int = 128, seed: int = 0, split: str = "train",
                  start: int = 0) -> dict[str, np.ndarray]:
    """Render scenes ``start .. start + n - 1`` of a split.

    Returns image n×H×W×3 float32 in [0, 1]; label n×H×W int16 (-1 ignore); depth n×H×W×1 float32 metres
    (0 invalid); normal n×H×W×3 float32 (unit, x right / y up / z toward the camera, zero where invalid);
    edge n×H×W float32 in {0, 1}.
    """
    if n < 0 or height < 2 or width < 2:
        raise MtkdError(f"rooms: need n >= 0 and an image of at least 2×2, got n={n}, {height}×{width}")
    out = {"image": np.empty((n, height, width, 3), np.float32), "label": np.empty((n, height, width), np.int16),
           "depth": np.empty((n, height, width, 1), np.float32), "normal": np.empty((n, height, width, 3), np.float32),
           "edge": np.empty((n, height, width), np.float32)}
    for i in range(n):
        sample, _ = render_scene(start + i, height, width, seed, split)
        for key, arr in sample.items():
            out[key][i] = arr
    return out


# ------------------------------------------------------------------------------------------------------- writing

_META_KEYS = ("name", "generator_version", "seed", "sizes", "height", "width", "classes")


def _meta(n_train: int, n_test: int, height: int, width: int, seed: int) -> dict:
    return {
        "name": "rooms",
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "sizes": {"train": n_train, "val": n_test},
        "height": height,
        "width": width,
        "classes": {"semseg": list(CLASSES)},
        "ignore_index": IGNORE,
        "folders": list(FOLDERS),
        "depth": "z-depth along the optical axis in metres, 0 invalid",
        "normal": "unit, camera frame: x right, y up, z toward the camera; all-zero invalid",
        "edge": "1 where the (object, face) id changes between 4-neighbours, nearer side",
        "hfov_deg": float(np.rad2deg(HFOV)),
        "note": "'val' is the test split (MTAN layout); hold a validation split out of 'train'",
    }


def _read_meta(root: Path) -> dict | None:
    try:
        meta = json.loads((root / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _matches(root: Path, want: dict) -> bool:
    have = _read_meta(root)
    return have is not None and all(have.get(k) == want[k] for k in _META_KEYS)


def write_rooms(root, n_train: int = 800, n_test: int = 200, height: int = 96, width: int = 128, seed: int = 0,
                progress: bool = True) -> Path:
    """Write ``{root}/{train,val}/{image,label,depth,normal,edge}/{i}.npy`` (MTAN layout, ``val`` = test split)
    and ``{root}/meta.json`` (name ``rooms``, classes, generator version, seed, sizes); return ``root``.

    Idempotent: when ``meta.json`` already matches the request this returns at once. Otherwise everything is
    written into a temporary sibling folder that is renamed into place at the end, so an interrupted write never
    leaves a folder that looks complete. An existing ``rooms`` folder made for another request (or by another
    generator version) is replaced; any other non-empty folder is refused rather than overwritten.
    """
    root = Path(root)
    for name, value in (("n_train", n_train), ("n_test", n_test), ("height", height), ("width", width)):
        if not isinstance(value, (int, np.integer)) or value < (0 if name.startswith("n_") else 2):
            raise MtkdError(f"rooms: {name}={value!r} must be an integer >= {0 if name.startswith('n_') else 2}")
    want = _meta(int(n_train), int(n_test), int(height), int(width), int(seed))
    if _matches(root, want):
        return root
    if root.exists():
        if not root.is_dir():
            raise MtkdError(f"rooms: {root} exists and is not a folder")
        have = _read_meta(root)
        if any(root.iterdir()) and (have is None or have.get("name") != "rooms"):
            raise MtkdError(f"rooms: {root} is a non-empty folder without a rooms meta.json; refusing to overwrite it")
    root.parent.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp = root.parent / f".{root.name}.tmp-{tag}"
    try:
        _write_splits(tmp, want, progress)
        meta_tmp = tmp / "meta.json.tmp"
        meta_tmp.write_text(json.dumps(want, indent=2) + "\n")
        os.replace(meta_tmp, tmp / "meta.json")
        old = None
        if root.exists():  # a stale rooms folder (or an empty one): move it aside, then swap
            old = root.parent / f".{root.name}.old-{tag}"
            os.replace(root, old)
        try:
            os.replace(tmp, root)
        except OSError:
            if _matches(root, want):  # another process finished the same request first
                shutil.rmtree(tmp, ignore_errors=True)
                return root
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def _write_splits(tmp: Path, meta: dict, progress: bool) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    sizes = meta["sizes"]
    height, width, seed = meta["height"], meta["width"], meta["seed"]
    columns = (TextColumn("[bold]rooms[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeRemainingColumn())
    with Progress(*columns, disable=not progress, transient=True) as bar:
        for split in ("train", "val"):
            for folder in FOLDERS:
                (tmp / split / folder).mkdir(parents=True, exist_ok=True)
            task = bar.add_task(split, total=sizes[split])
            for i in range(sizes[split]):
                sample, _ = render_scene(i, height, width, seed, split)
                for folder in FOLDERS:
                    np.save(tmp / split / folder / f"{i}.npy", sample[folder])
                bar.advance(task)

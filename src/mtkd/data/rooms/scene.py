"""Scene sampling of ``rooms``: a room box, a camera inside it, furniture, lamps, clutter, lights and the sensor's
look, all drawn from one ``np.random.Generator`` (the draw order is the dataset: do not reorder draws)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from mtkd.data.rooms.raycast import Hit, ray_box, ray_cylinder, ray_sphere, rot_y
from mtkd.data.rooms.textures import _hsv, _material


CLASSES: tuple[str, ...] = ("floor", "wall", "ceiling", "cabinet", "ball", "barrel", "table", "lamp")
FLOOR, WALL, CEILING, CABINET, BALL, BARREL, TABLE, LAMP = range(len(CLASSES))
IGNORE = -1
HFOV = np.deg2rad(64.0)  # the camera's horizontal field of view (about NYUv2's Kinect)



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

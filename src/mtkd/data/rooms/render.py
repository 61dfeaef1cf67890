"""Rendering of ``rooms``: ray cast a sampled scene into image, label, depth, normal and edge arrays (see the package
docstring for what each holds), and the deterministic per-index entry points."""

from __future__ import annotations

import numpy as np

from mtkd.data.rooms.raycast import ray_room
from mtkd.data.rooms.scene import CEILING, FLOOR, HFOV, WALL, _Prim, _sample_scene, _Scene
from mtkd.data.rooms.textures import _pattern, _value_noise
from mtkd.errors import MtkdError

SPLITS = {"train": 0, "val": 1, "test": 1}  # 'val' is the MTAN folder name of the test split


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

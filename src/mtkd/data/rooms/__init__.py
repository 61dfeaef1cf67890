"""``rooms``: an embedded, procedurally rendered indoor dataset (NYUv2-like tasks, no download).

What. Each scene is a random room box (floor, walls, ceiling, 0-2 windows) seen from a camera standing inside it,
furnished with cabinets (boxes), balls (spheres), barrels (cylinders), tables (a top on four legs) and lamps (floor,
table or pendant lamps: base, pole and shade) plus a little "clutter" that is deliberately left unlabelled. Every
pixel is ray cast exactly (:mod:`mtkd.data.rooms.raycast`, vectorised over pixels), which gives per pixel

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

Layout: :mod:`~mtkd.data.rooms.scene` samples a scene (room, camera, furniture, lights, look) from its seed,
:mod:`~mtkd.data.rooms.textures` draws materials and evaluates their solid textures, :mod:`~mtkd.data.rooms.raycast`
intersects rays with the primitives, :mod:`~mtkd.data.rooms.render` turns a scene into the arrays and
:mod:`~mtkd.data.rooms.cache` writes the MTAN-layout folder once per request.
"""

from mtkd.data.rooms.cache import FOLDERS, GENERATOR_VERSION, write_rooms
from mtkd.data.rooms.render import SPLITS, render_scene, render_scenes
from mtkd.data.rooms.scene import CLASSES, HFOV, IGNORE

__all__ = ["CLASSES", "GENERATOR_VERSION", "HFOV", "SPLITS", "render_scene", "render_scenes", "write_rooms"]

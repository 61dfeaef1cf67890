"""Turn one task's raw output or label into the array a user wants, and that array into a uint8 RGB picture.

Arrays are in image layout: H×W maps (class ids, depth, probabilities) and H×W×3 normals. Invalid pixels (class −1,
depth 0, all-zero normal, edge/saliency −1) are black in every picture, so "no data" looks the same everywhere.

- classes (semseg, parts): a fixed palette (matplotlib's tab20, dark shades first, then golden-ratio hues), the same
  colour for class k in every picture; :func:`add_legend` names them;
- depth: a colormap over an explicit ``[vmin, vmax]`` (clipped), so several pictures can share one scale;
- normals: RGB = (n + 1) / 2 of the unit vector (x right → red, y up → green, z toward the camera → blue);
- edge, saliency: grey levels of probabilities in [0, 1].
"""

from __future__ import annotations

import colorsys

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.colors import to_rgb

from mtkd.errors import MtkdError
from mtkd.functional import unit_vectors
from mtkd.tasks import TASKS, tasks_of_kind

CLASS_TASKS = tasks_of_kind("classes")  # integer class maps (TaskSpec.kind)
DEPTH_CMAP = "viridis"  # its darkest colour is purple, never the black of invalid depth
_TAB20 = colormaps["tab20"].colors
_BASE = [_TAB20[i] for i in range(0, 20, 2)] + [_TAB20[i] for i in range(1, 20, 2)]  # tab10, then its light shades


def palette(n: int) -> np.ndarray:
    """``n`` distinct uint8 RGB colours, fixed (class k has the same colour whatever ``n``); none is black."""
    colours = [to_rgb(c) for c in _BASE[:n]]
    for k in range(len(colours), n):  # beyond 20 classes: golden-ratio hues at alternating brightness
        colours.append(colorsys.hsv_to_rgb((k * 0.618033988749895) % 1.0, 0.65, 0.95 if k % 2 else 0.7))
    return np.round(np.asarray(colours, dtype=np.float64).reshape(n, 3) * 255).astype(np.uint8)


def colorize_classes(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """H×W class ids → H×W×3 palette colours; −1 (ignore) is black; an id ≥ ``num_classes`` is refused."""
    labels = np.asarray(labels)
    if labels.size and labels.max() >= num_classes:
        raise MtkdError(f"class id {int(labels.max())} outside [0, {num_classes})")
    lut = np.concatenate([palette(num_classes), np.zeros((1, 3), np.uint8)])  # index −1 → the black last row
    return lut[np.where(labels < 0, -1, labels)]


def colorize_depth(depth: np.ndarray, vmin: float | None = None, vmax: float | None = None,
                   cmap: str = DEPTH_CMAP) -> np.ndarray:
    """H×W depth → H×W×3 through ``cmap`` over [vmin, vmax] (default: the valid range), clipped; depth ≤ 0 is black."""
    depth = np.asarray(depth, dtype=np.float64)
    valid = (depth > 0) & np.isfinite(depth)
    lo, hi = depth_range([depth])
    vmin, vmax = lo if vmin is None else vmin, hi if vmax is None else vmax
    scaled = np.clip((depth - vmin) / max(vmax - vmin, 1e-12), 0.0, 1.0)
    rgb = colormaps[cmap](np.where(valid, scaled, 0.0))[..., :3]
    return np.where(valid[..., None], np.round(rgb * 255), 0).astype(np.uint8)


def depth_range(depths: list[np.ndarray]) -> tuple[float, float]:
    """(min, max) of the valid (> 0, finite) pixels over several depth maps: one shared colour scale; (0, 1) if none."""
    valid = [d[(d > 0) & np.isfinite(d)] for d in (np.asarray(x, dtype=np.float64) for x in depths)]
    values = np.concatenate([v.ravel() for v in valid]) if valid else np.empty(0)
    return (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)


def colorize_normals(normals: np.ndarray) -> np.ndarray:
    """H×W×3 normals (any length) → RGB = (n̂ + 1) / 2 of the unit vector; all-zero vectors are black."""
    n = np.asarray(normals, dtype=np.float64)
    norm = np.linalg.norm(n, axis=-1, keepdims=True)
    unit = n / np.maximum(norm, 1e-12)
    return np.where(norm > 0, np.round((unit + 1.0) / 2.0 * 255), 0).astype(np.uint8)


def colorize_gray(prob: np.ndarray) -> np.ndarray:
    """H×W values in [0, 1] (edge or saliency probabilities, labels) → grey H×W×3; invalid (< 0) is black."""
    grey = np.round(np.clip(np.asarray(prob, dtype=np.float64), 0.0, 1.0) * 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def colorize(task: str, array: np.ndarray, num_classes: int | None = None, vmin: float | None = None,
             vmax: float | None = None) -> np.ndarray:
    """The picture of one task's array (see the module docstring); ``num_classes`` is needed for class tasks."""
    if task not in TASKS:
        raise MtkdError(f"no picture for task {task!r}")
    picture = TASKS[task].picture  # the task's colouriser
    if picture == "classes":
        if num_classes is None:
            raise MtkdError(f"colorize({task!r}) needs num_classes")
        return colorize_classes(array, num_classes)
    if picture == "depth":
        return colorize_depth(array, vmin, vmax)
    if picture == "normal":
        return colorize_normals(array)
    return colorize_gray(array)


def to_prediction(task: str, logits: torch.Tensor) -> np.ndarray:
    """One image's raw model output (C×H×W) → what a user wants, in image layout.

    semseg / parts: H×W int64 class ids (argmax); depth: H×W as predicted; normal: H×W×3 unit vectors;
    edge / sal: H×W sigmoid probabilities.
    """
    if logits.ndim != 3:
        raise MtkdError(f"to_prediction({task!r}) takes one C×H×W output, got shape {tuple(logits.shape)}")
    if task not in TASKS:
        raise MtkdError(f"no prediction rule for task {task!r}")
    logits = logits.detach().float().cpu()
    spec = TASKS[task]
    if spec.kind == "classes":
        return logits.argmax(0).numpy()
    if spec.kind == "binary":
        return torch.sigmoid(logits[0]).numpy()
    if spec.picture == "normal":
        return unit_vectors(logits, dim=0).permute(1, 2, 0).numpy()
    return logits[0].numpy()  # one-channel regression (depth)


def add_legend(target, names: list[str], **kwargs):
    """Draw a legend of class colour ↔ name on a matplotlib Axes or Figure; keyword arguments go to ``legend``."""
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=c / 255.0, edgecolor="0.3", label=name) for c, name in zip(palette(len(names)), names)]
    return target.legend(handles=handles, **kwargs)

"""Per-sample augmentation and normalisation on torch tensors (the MTAN recipe, made deterministic).

What. :class:`MultiTaskAugment` applies to one sample dict (layout of :class:`mtkd.data.folder.FolderDataset`:
image 3×H×W in [0, 1], semseg / parts H×W long, depth / edge / sal 1×H×W, normal 3×H×W):

1. random scale ``s`` from ``scales`` (default {1.0, 1.2, 1.5}, uniform): crop an ``int(H/s)×int(W/s)`` window at a
   random offset and resize it back to H×W — bilinear (``align_corners=True``, as MTAN) for the image, nearest for
   every label map (class ids, depth, normal, edge, sal keep values from the original set: no blending across
   boundaries or into invalid pixels). Zooming by ``s`` brings the scene ``s`` times closer, so depth is divided by
   ``s`` (MTAN's ``RandomScaleCrop``); when the depth target is disparity (``disparity=True``, e.g. Cityscapes kept
   as disparity) it is multiplied by ``s`` instead. 0 (invalid) stays 0 either way;
2. horizontal flip with probability ``flip_p`` (0.5): every map is mirrored and the normal's x component negated
   (normals are x right / y up / z toward the camera); all-zero (invalid) normals stay zero;
3. :class:`Normalize` (ImageNet mean / std) on the image.

Determinism. All randomness comes from the ``generator`` argument; called without one, the transform draws a
per-sample seed from torch's global RNG, which the DataLoader seeds per worker and per epoch (from its own
generator), so augmentations differ across workers and epochs yet repeat for a fixed seed and worker count.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F

from mtkd.tasks import TASKS

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "MultiTaskAugment", "Normalize", "flip", "scale_crop"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_IMAGE = "image"
_META = ("index",)


class Normalize:
    """``image <- (image - mean) / std`` per channel (ImageNet statistics by default); other keys untouched."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> None:
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __call__(self, sample: dict[str, Any], generator: torch.Generator | None = None) -> dict[str, Any]:
        out = dict(sample)
        out[_IMAGE] = (sample[_IMAGE].float() - self.mean) / self.std
        return out


def _nearest(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest resize of an H×W or C×H×W map of any dtype (pixel centres, i.e. ``nearest-exact``)."""
    squeeze = x.dim() == 2
    y = x[None, None] if squeeze else x[None]
    dtype = y.dtype
    y = F.interpolate(y.double() if not y.is_floating_point() else y, size=size, mode="nearest-exact")
    y = y.to(dtype)
    return y[0, 0] if squeeze else y[0]


def scale_crop(sample: dict[str, Any], scale: float, top: int, left: int, disparity: bool = False) -> dict[str, Any]:
    """Crop the ``int(H/scale)×int(W/scale)`` window at (top, left) and resize it back to H×W (see module doc)."""
    h, w = sample[_IMAGE].shape[-2:]
    ch, cw = int(h / scale), int(w / scale)
    out = dict(sample)
    for key, x in sample.items():
        if key in _META or not torch.is_tensor(x):
            continue
        crop = x[..., top:top + ch, left:left + cw]
        if key == _IMAGE:
            out[key] = F.interpolate(crop[None].float(), size=(h, w), mode="bilinear", align_corners=True)[0]
        else:
            out[key] = _nearest(crop, (h, w))
            if key in TASKS and TASKS[key].zoom_scales and scale != 1.0:
                out[key] = out[key] * scale if disparity else out[key] / scale
    return out


def flip(sample: dict[str, Any]) -> dict[str, Any]:
    """Mirror every map left-right and negate the channels its task declares (``TaskSpec.flip_negates``)."""
    out = dict(sample)
    for key, x in sample.items():
        if key in _META or not torch.is_tensor(x):
            continue
        out[key] = torch.flip(x, dims=(-1,))
        negate = TASKS[key].flip_negates if key in TASKS else ()
        if negate:
            out[key] = out[key].clone()
            for c in negate:
                out[key][c] = -out[key][c]
    return out


class MultiTaskAugment:
    """Random scale-crop, horizontal flip, then normalise (MTAN's recipe; see the module docstring)."""

    def __init__(self, scales: Sequence[float] = (1.0, 1.2, 1.5), flip_p: float = 0.5, disparity: bool = False,
                 normalize: Normalize | None = None) -> None:
        if not scales or any(s < 1.0 for s in scales):
            raise ValueError(f"scales {tuple(scales)}: need at least one, each >= 1")
        self.scales = tuple(float(s) for s in scales)
        self.flip_p = float(flip_p)
        self.disparity = bool(disparity)
        self.normalize = normalize if normalize is not None else Normalize()

    def __call__(self, sample: dict[str, Any], generator: torch.Generator | None = None) -> dict[str, Any]:
        if generator is None:
            generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,)).item()))
        h, w = sample[_IMAGE].shape[-2:]
        s = self.scales[int(torch.randint(len(self.scales), (1,), generator=generator))]
        ch, cw = int(h / s), int(w / s)
        top = int(torch.randint(h - ch + 1, (1,), generator=generator))
        left = int(torch.randint(w - cw + 1, (1,), generator=generator))
        do_flip = bool(torch.rand((), generator=generator) < self.flip_p)
        out = scale_crop(sample, s, top, left, self.disparity) if s != 1.0 else dict(sample)
        if do_flip:
            out = flip(out)
        return self.normalize(out)

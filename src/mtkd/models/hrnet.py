"""HRNet-18 as the dense multi-task protocol uses it (seed 003 Tables 1 and 3; ATRC's and MTI-Net's codebases).

The "HRNet18" of those tables is HRNetV2-W18-Small-v2 ("HRNet18-S" in brdav/atrc: stage 1 two bottlenecks, then 1/3/2
modules of two basic blocks per branch), whose four parallel branches give 18/36/72/144 channels at 1/4, 1/8, 1/16,
1/32 — 3.86 M parameters without the classifier. timm holds the same net as ``hrnet_w18_small_v2``; its
``features_only`` net takes ``feature_location``: ``"incre"`` (timm's default) returns the classification head's
channel-increase blocks (128/256/512/1024 channels), ``""`` the raw branch outputs. mtkd uses ``feature_location=""``
with ``out_indices=(1, 2, 3, 4)`` (index 0 is the 64-channel stem at 1/2, which the protocol does not read):

    backbone: hrnet18                                            # this file's registered name, offline-friendly
    backbone: "timm:hrnet_w18_small_v2"  backbone_options: {feature_location: "", out_indices: [1, 2, 3, 4]}

are the same module (the second can download ImageNet weights with ``pretrained: true``; both load a local file with
``pretrained: PATH``: timm's checkpoint keys match after ``backbones.load_weights``' normalisation). The heads then read
the HRNet-V2 concatenation of the four branches (``neck.ConcatNeck``, 270 channels at 1/4; ``head: hrnet``).
``hrnet18_full`` is the larger HRNetV2-W18 (``hrnet_w18``, 9.56 M) with the same outputs.

HRNet's fuse layers upsample by fixed factors of 2, so input sides must be multiples of 32 (``check_multiple``).
"""

from __future__ import annotations

import torch

from mtkd.errors import MtkdError
from mtkd.models.backbones import BACKBONES, Backbone

BRANCH_OPTIONS = {"feature_location": "", "out_indices": (1, 2, 3, 4)}


def _timm_hrnet(variant: str, **kw) -> Backbone:
    from mtkd.models.timm_backbone import TimmBackbone

    bad = sorted(set(kw) - {"pretrained"})
    if bad:
        raise MtkdError(f"backbone hrnet18: unknown option(s) {bad} in model.backbone_options (it takes none; use "
                        f"'timm:{variant}' for timm's own options)")
    net = TimmBackbone(variant, **BRANCH_OPTIONS)
    net.name = f"timm:{variant}"
    return net


@BACKBONES.register("hrnet18")
def hrnet18(**kw) -> Backbone:
    """HRNetV2-W18-Small-v2 branch outputs (18/36/72/144 at 1/4–1/32), random init (weights: ``pretrained=PATH``)."""
    return _timm_hrnet("hrnet_w18_small_v2", **kw)


@BACKBONES.register("hrnet18_full")
def hrnet18_full(**kw) -> Backbone:
    """HRNetV2-W18 (the full-size W18) branch outputs, same shapes as ``hrnet18``."""
    return _timm_hrnet("hrnet_w18", **kw)


def check_multiple(x: torch.Tensor, multiple: int, who: str) -> None:
    """Refuse an input whose sides are not multiples of ``multiple`` (one line naming the multiple)."""
    h, w = x.shape[-2:]
    if h % multiple or w % multiple:
        raise MtkdError(f"{who}: input {h}×{w} must have sides that are multiples of {multiple}; resize or crop it "
                        f"(e.g. to {max(multiple, h // multiple * multiple)}×{max(multiple, w // multiple * multiple)})")


__all__ = ["hrnet18", "hrnet18_full", "check_multiple", "BRANCH_OPTIONS"]

"""Backbones: a module that maps an image to one feature map per stage, plus the registry that builds them by name.

Every backbone is a ``Backbone``: ``forward(x) -> [map per stage]`` and ``feature_info`` (per stage: name, channels,
nominal reduction), so the neck, the heads and the distillers can size themselves without running a forward.

Built in: ``"tiny"`` (4 stages of conv-BN-ReLU, reductions 2/4/8/16, channels 16/32/64/96 × ``width``; trains fast
on a CPU at 96×128) and ``"small"`` (same family, wider and deeper, for teachers). ``"timm:<name>"`` wraps any timm
model in ``features_only`` mode (see timm_backbone.py). ``pretrained=PATH`` loads a local ``.pth``/``.safetensors``
file into any backbone (``load_weights``). ``model.backbone_options`` are keyword arguments of the backbone: ``width``
for the built-in ones; any ``timm.create_model`` argument for timm (``dynamic_img_size``, ``out_indices``, ...).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mtkd.errors import MtkdError
from mtkd.registry import Registry

log = logging.getLogger("mtkd.models")

BACKBONES = Registry("backbone")


class Backbone(nn.Module):
    """Base class: subclasses set ``feature_info`` and return one map per stage from ``forward``."""

    feature_info: list[dict]
    name: str = "backbone"


def conv_bn_relu(cin: int, cout: int, stride: int = 1, dilation: int = 1, k: int = 3) -> nn.Sequential:
    pad = dilation * (k // 2)
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, pad, dilation=dilation, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class ConvNet(Backbone):
    """Plain CNN: stage i = one stride-2 conv-BN-ReLU then ``depths[i]`` stride-1 ones (reduction 2, 4, 8, 16...)."""

    def __init__(self, channels: tuple[int, ...], depths: tuple[int, ...], width: float = 1.0, name: str = "convnet"):
        super().__init__()
        if len(channels) != len(depths):
            raise MtkdError(f"backbone {name!r}: channels {channels} and depths {depths} differ in length")
        chs = [max(4, round(c * width)) for c in channels]
        self.name = name
        self.stages = nn.ModuleList()
        cin = 3
        for c, d in zip(chs, depths):
            self.stages.append(nn.Sequential(conv_bn_relu(cin, c, stride=2), *[conv_bn_relu(c, c) for _ in range(d)]))
            cin = c
        self.feature_info = [
            {"name": f"stage{i + 1}", "num_chs": c, "reduction": 2 ** (i + 1)} for i, c in enumerate(chs)
        ]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for stage in self.stages:
            x = stage(x)
            out.append(x)
        return out


@BACKBONES.register("tiny")
def tiny(width: float = 1.0) -> Backbone:
    return ConvNet((16, 32, 64, 96), (0, 1, 1, 1), width, name="tiny")


@BACKBONES.register("small")
def small(width: float = 1.0) -> Backbone:
    return ConvNet((32, 64, 128, 192), (1, 2, 2, 2), width, name="small")


def _key(k: str) -> str:
    """Key normalisation that makes timm's flattened feature-module names (``stages_0``) match ``stages.0``, and a
    wrapped feature net's keys (``body.model.blocks.0``, timm's ViT ``features_only``) match ``blocks.0``."""
    for prefix in ("module.", "body.", "backbone.body.", "backbone.", "model."):
        if k.startswith(prefix):
            k = k[len(prefix):]
    return k.replace(".", "_")


def load_weights(backbone: Backbone, path: str | Path) -> dict[str, int]:
    """Load a local state dict (``.safetensors`` or ``.pth``) into ``backbone``, non-strictly.

    Accepts a backbone's own ``state_dict`` and a full timm classification checkpoint (the classifier keys are
    unexpected and ignored; keys are matched with ``.``/``_`` treated alike). Returns and logs the counts of missing,
    unexpected and shape-mismatched keys (``backbone.load_report``).
    """
    path = Path(path)
    if not path.is_file():
        raise MtkdError(f"pretrained weights file {str(path)!r} not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 — any unreadable file is a user error
        raise MtkdError(f"cannot read weights file {str(path)!r}: {type(e).__name__}: {e}".splitlines()[0]) from e
    for wrapper in ("state_dict", "model", "backbone"):
        if isinstance(sd, dict) and isinstance(sd.get(wrapper), dict):
            sd = sd[wrapper]
    if not isinstance(sd, dict):
        raise MtkdError(f"weights file {str(path)!r} holds a {type(sd).__name__}, not a state dict")
    own = backbone.state_dict()
    by_key = {_key(k): k for k in own}
    new, unexpected, mismatched, extra = {}, 0, 0, []
    for k, v in sd.items():
        target = by_key.get(_key(k))
        if target is None:
            unexpected += 1
            extra.append(k)
        elif own[target].shape != v.shape:
            mismatched += 1
        else:
            new[target] = v
    report = {"missing": len(own) - len(new), "unexpected": unexpected, "mismatched": mismatched}
    if not new:
        raise MtkdError(f"weights file {str(path)!r} matches no parameter of backbone {backbone.name!r}")
    if hasattr(backbone, "check_weights"):  # a backbone that refuses partial fits (timm's Swin: another size)
        backbone.check_weights(report, extra, path)
    backbone.load_state_dict(new, strict=False)
    backbone.load_report = report
    if report["missing"] or report["mismatched"]:
        log.warning("loaded %s into %s: %s", path, backbone.name, report)
    return report


def build_backbone(name: str, pretrained: bool | str | Path = False, **kw) -> Backbone:
    """Backbone by name: a registered one (``"tiny"``, ``"small"``) or ``"timm:<model>"``; ``kw`` = its options.

    ``pretrained``: False, True (download, timm only) or a path to a local weights file.
    """
    if name.startswith("timm:"):
        from mtkd.models.timm_backbone import TimmBackbone

        net: Backbone = TimmBackbone(name[len("timm:"):], pretrained=pretrained is True, **kw)
    else:
        factory = BACKBONES.get(name)
        try:
            net = factory(**kw)
        except TypeError as e:
            raise MtkdError(f"backbone {name!r}: bad option in model.backbone_options {sorted(kw)}: {e}") from e
        if pretrained is True:
            raise MtkdError(f"backbone {name!r} has no downloadable weights: pass pretrained=PATH to a local file")
    if pretrained not in (False, True, None):
        load_weights(net, pretrained)
    return net


def make_backbone(backbone: str | Backbone, pretrained: bool | str | Path = False,
                  options: Mapping[str, Any] | None = None) -> tuple[str, Backbone]:
    """``(name, backbone)`` from a name (built with ``options``) or a ready ``Backbone`` (taken as is)."""
    if isinstance(backbone, str):
        return backbone, build_backbone(backbone, pretrained=pretrained, **dict(options or {}))
    if options:
        raise MtkdError(f"backbone options {sorted(options)} apply to a backbone given by name, not to a built one")
    return getattr(backbone, "name", type(backbone).__name__), backbone

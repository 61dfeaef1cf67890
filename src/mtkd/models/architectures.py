"""Multi-task architectures by name (``ARCHITECTURES``), all with ``MultiTaskModel``'s interface
(``model(image) -> Output``, ``taps()``, ``shared_parameters()``, ``task_parameters(t)``, ``tasks``,
``backbone_name``, ``head_name``), so every weighting and every distiller runs on any of them.

- ``"shared"``: hard parameter sharing — one backbone + FPN neck, one head per task (multitask.py).
- ``"cross_stitch"``: one backbone copy per task linked by cross-stitch units (Misra et al. 2016; cross_stitch.py).
- ``"mtan"``: shared backbone + per-task soft-attention modules (Liu et al. 2019; mtan.py).
"""

from __future__ import annotations

from torch import nn

from mtkd.models.backbones import Backbone
from mtkd.models.cross_stitch import CrossStitchModel
from mtkd.models.mtan import MTANModel
from mtkd.models.multitask import MultiTaskModel
from mtkd.registry import Registry

ARCHITECTURES = Registry("architecture")
ARCHITECTURES.register("shared")(MultiTaskModel)
ARCHITECTURES.register("cross_stitch")(CrossStitchModel)
ARCHITECTURES.register("mtan")(MTANModel)


def build_model(arch: str, backbone: str | Backbone, tasks: dict[str, int], **kw) -> nn.Module:
    """``ARCHITECTURES[arch](backbone, tasks, **kw)``; an unknown ``arch`` is refused with the closest names."""
    return ARCHITECTURES.get(arch)(backbone, tasks, **kw)


__all__ = ["ARCHITECTURES", "build_model"]

"""Multi-task architectures by name (``ARCHITECTURES``), all with ``MultiTaskModel``'s interface
(``model(image) -> Output``, ``taps()``, ``shared_parameters()``, ``task_parameters(t)``, ``tasks``,
``backbone_name``, ``head_name``, ``head_names``), so every weighting and every distiller runs on any of them.

- ``"shared"``: hard parameter sharing — one backbone + FPN neck, one head per task (multitask.py).
- ``"cross_stitch"``: one backbone copy per task linked by cross-stitch units (Misra et al. 2016; cross_stitch.py).
- ``"mtan"``: shared backbone + per-task soft-attention modules (Liu et al. 2019; mtan.py).
- Decoder-focused (decoder_base.py; HRNet-V2 concatenation, initial predictions as deep supervision):
  ``"pad_net"`` (Xu et al. 2018; pad_net.py), ``"mti_net"`` (Vandenhende et al. 2020; mti_net.py),
  ``"atrc"`` (Brüggemann et al. 2021; atrc.py, ``arch_options: {preset: nyud | pascal_context | global}``),
  ``"nddr_cnn"`` (Gao et al. 2019; nddr_cnn.py), ``"pap_net"`` (Zhang et al. 2019; pap_net.py), ``"psd"`` (Zhou et al.
  2020; psd.py), ``"cross_stitch_hrnet"`` (cross-stitch units on the task branches; cross_stitch_hrnet.py).
- Transformer decoders (transformer_blocks.py; cross-task attention on Swin / ViT / any backbone):
  ``"invpt"`` (Ye & Xu 2022; invpt.py), ``"demt"`` (Xu et al. 2023; demt.py), ``"mqtransformer"`` (Xu et al.;
  mqtransformer.py); ``arch_options.grad_checkpointing: true`` recomputes activations in the backward.

``build_model_from_config`` is the one way a run's ``model`` section becomes a model (the LightningModule,
``load_model``, teachers given as weights, OKD's single-task nets), so every config key reaches every caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from mtkd.config import DEFAULTS
from mtkd.models.atrc import ATRC
from mtkd.models.backbones import Backbone
from mtkd.models.cross_stitch import CrossStitchModel
from mtkd.models.cross_stitch_hrnet import CrossStitchHRNet
from mtkd.models.demt import DeMT
from mtkd.models.invpt import InvPT
from mtkd.models.mqtransformer import MQTransformer
from mtkd.models.mtan import MTANModel
from mtkd.models.mti_net import MTINet
from mtkd.models.pad_net import PADNet
from mtkd.models.pap_net import PAPNet
from mtkd.models.psd import PSD
from mtkd.models.multitask import MultiTaskModel
from mtkd.models.nddr_cnn import NDDRCNN
from mtkd.errors import MtkdError, first_line
from mtkd.registry import Registry, construct

ARCHITECTURES = Registry("architecture")
ARCHITECTURES.register("shared")(MultiTaskModel)
ARCHITECTURES.register("cross_stitch")(CrossStitchModel)
ARCHITECTURES.register("mtan")(MTANModel)
ARCHITECTURES.register("pad_net")(PADNet)
ARCHITECTURES.register("mti_net")(MTINet)
ARCHITECTURES.register("atrc")(ATRC)
ARCHITECTURES.register("nddr_cnn")(NDDRCNN)
ARCHITECTURES.register("pap_net")(PAPNet)
ARCHITECTURES.register("psd")(PSD)
ARCHITECTURES.register("cross_stitch_hrnet")(CrossStitchHRNet)
ARCHITECTURES.register("invpt")(InvPT)
ARCHITECTURES.register("demt")(DeMT)
ARCHITECTURES.register("mqtransformer")(MQTransformer)


def build_model(arch: str, backbone: str | Backbone, tasks: dict[str, int], **kw) -> nn.Module:
    """``ARCHITECTURES[arch](backbone, tasks, **kw)``; an unknown ``arch`` is refused with the closest names."""
    return ARCHITECTURES.get(arch)(backbone, tasks, **kw)


def build_model_from_config(model_cfg: Mapping[str, Any], task_channels: Mapping[str, int]) -> nn.Module:
    """The model a ``model`` config section describes, for ``task_channels`` ({task: output channels}).

    Keys absent from the section (checkpoints written before they existed) take ``mtkd.config.DEFAULTS``' values.
    Callers that load weights afterwards pass ``pretrained: false`` so nothing is downloaded or read twice.
    """
    m = {**DEFAULTS["model"], **dict(model_cfg)}
    arch_options = dict(m.get("arch_options") or {})  # the architecture's own options (e.g. ATRC's context preset)
    context = dict(head=m["head"], decoder_channels=m["decoder_channels"], pretrained=m["pretrained"],
                   head_options=m["head_options"], backbone_options=m["backbone_options"])
    tasks = {t: int(c) for t, c in task_channels.items()}
    try:  # the options are the user's: a wrong name or value is one line, not a traceback
        return construct("architecture", m["arch"], ARCHITECTURES.get(m["arch"]), (m["backbone"], tasks), arch_options,
                         context)
    except (TypeError, ValueError) as err:
        if not (m["head_options"] or m["backbone_options"]):
            raise
        raise MtkdError(f"model.head_options / model.backbone_options: {first_line(err)}") from None


__all__ = ["ARCHITECTURES", "build_model", "build_model_from_config"]

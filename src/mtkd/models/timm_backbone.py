"""Any timm model as a ``Backbone``: ``timm.create_model(name, features_only=True, **options)`` with timm's
feature_info; ``options`` come from ``model.backbone_options``.

Vision transformers: timm builds them for one input size (``img_size``, 224 for ``vit_tiny_patch16_224``) and
asserts on any other. ``dynamic_img_size: true`` interpolates the position embedding to each input's patch grid (and
keeps the checkpoint's 14×14 embedding, so ``pretrained=PATH`` still loads it); ``dynamic_img_pad: true`` also pads
sides that are not a multiple of the patch. Such an input is refused here, before timm's bare assert, with the option
to set. In ``features_only`` mode a ViT returns its last three blocks (``out_indices`` picks others, e.g. all
twelve), each a 192×h/16×w/16 map for ViT-tiny: every stage has reduction 16, which the FPN neck and the
deepest-stage heads accept as is.

Swin (Liu et al. 2021; ``timm:swin_{tiny,small,base,large}_patch4_window7_224`` and the ``window12_384`` ones): timm
builds it for ``img_size`` (224) with ``strict_img_size`` and asserts on any other size. The dense protocols' inputs
(NYUD-v2 480×640 or 448×576, PASCAL-Context 512×512) need ``img_size: [H, W]`` (attention masks precomputed for that
size; the relative-position tables do not depend on it, so ImageNet weights still load) or ``dynamic_img_size: true``
(masks rebuilt for each input size; any size). Windows that do not tile a stage's map are padded by timm, so 480×640
(120×160 at 1/4, not a multiple of 7) works; the sides must still be multiples of the 4-pixel patch (32 keeps every
stage's map exact), refused here in one line. timm's Swin returns NHWC maps; they are permuted to NCHW using the
feature net's ``output_fmt`` (not a shape guess, which a map whose height equals its channel count would fool).
``grad_checkpointing: true`` (a backbone option of mtkd, not of timm) recomputes each stage's activations in the
backward (timm's ``set_grad_checkpointing``): less memory, ~30 % more time. A weights file for another Swin size or
window (a tensor of another shape or a missing block) is refused, naming the counts, instead of half-loading.

Offline, ``pretrained=True`` cannot download: the failure is turned into a one-line ``MtkdError`` that says to pass
a local file instead (``build_backbone(..., pretrained=PATH)``, loaded by ``backbones.load_weights``). When
huggingface.co does not resolve, the HF hub is switched to offline mode for the call, so weights already in the HF
cache still load and missing ones fail at once instead of after ~50 s of retries.
"""

from __future__ import annotations

import contextlib
import difflib
import socket

import torch
from timm.layers import PatchEmbed

from mtkd.errors import MtkdError
from mtkd.models.backbones import Backbone


@contextlib.contextmanager
def _offline_if_no_dns():
    try:
        from huggingface_hub import constants
    except ImportError:
        yield
        return
    try:
        socket.getaddrinfo("huggingface.co", 443)
        online = True
    except OSError:
        online = False
    old = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = old or not online
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = old


class TimmBackbone(Backbone):
    def __init__(self, model_name: str, pretrained: bool = False, out_indices: tuple[int, ...] | None = None,
                 grad_checkpointing: bool = False, **kw):
        super().__init__()
        import timm

        if not timm.is_model(model_name):
            close = difflib.get_close_matches(model_name, timm.list_models(), n=3, cutoff=0.6)
            hint = f"did you mean {', '.join(repr('timm:' + c) for c in close)}?" if close else "see timm.list_models()"
            raise MtkdError(f"unknown timm model {model_name!r}; {hint}")
        args = dict(features_only=True, pretrained=pretrained, **kw)
        if out_indices is not None:
            args["out_indices"] = tuple(out_indices)
        try:
            with _offline_if_no_dns() if pretrained else contextlib.nullcontext():
                self.body = timm.create_model(model_name, **args)
        except TypeError as e:
            raise MtkdError(f"timm:{model_name}: bad option in model.backbone_options {sorted(kw)}: {e}") from e
        except Exception as e:  # noqa: BLE001 — network errors come in many types (OSError, HF hub, urllib)
            if not pretrained:
                raise
            raise MtkdError(
                f"cannot download pretrained weights for timm:{model_name} ({type(e).__name__}); "
                "no network: pass pretrained=PATH to a local weights file"
            ) from e
        self.name = f"timm:{model_name}"
        info = self.body.feature_info
        self.feature_info = [
            {"name": f"stage{i + 1}", "num_chs": c, "reduction": r}
            for i, (c, r) in enumerate(zip(info.channels(), info.reduction()))
        ]
        embed = next((m for m in self.body.modules() if isinstance(m, PatchEmbed)), None)
        self.fixed_size = tuple(embed.img_size) if embed is not None and embed.strict_img_size else None
        self.patch = tuple(embed.patch_size) if embed is not None and not embed.dynamic_img_pad else None
        self.swin = model_name.startswith("swin")  # no dynamic_img_pad option: sides must be patch multiples
        self.nhwc = str(getattr(self.body, "output_fmt", "NCHW")).endswith("NHWC")
        if grad_checkpointing:
            self.set_grad_checkpointing(True)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute activations in the backward (timm's per-stage / per-block checkpointing)."""
        if not hasattr(self.body, "set_grad_checkpointing"):
            raise MtkdError(f"{self.name} has no activation checkpointing in timm: drop grad_checkpointing")
        self.body.set_grad_checkpointing(enable)

    def check_weights(self, report: dict[str, int], unexpected: list[str], path) -> None:
        """Called by ``backbones.load_weights`` before loading: refuse a Swin file of another size or window (a
        tensor of another shape, a block missing, or blocks this model lacks; a classifier's keys are fine)."""
        blocks = sum(k.split(".")[0] in ("layers", "layers_0", "layers_1", "layers_2", "layers_3") for k in unexpected)
        if self.swin and (report["mismatched"] or report["missing"] or blocks):
            raise MtkdError(f"weights file {str(path)!r} does not fit {self.name}: {report['mismatched']} tensors of "
                            f"another shape, {report['missing']} missing, {blocks} extra: it holds another Swin size "
                            "or window (or img_size is so small that timm shrank the windows: always_partition=true)")

    def check_size(self, x: torch.Tensor) -> None:
        """Refuse an input size the patch embedding would assert on, naming the option that allows it."""
        h, w = x.shape[-2:]
        if self.swin and self.patch is not None and (h % self.patch[0] or w % self.patch[1]):
            m = self.patch[0]
            raise MtkdError(f"{self.name}: input {h}×{w} is not a multiple of the {m}×{m} patch (Swin has no padding "
                            f"option): resize or crop it to multiples of {m}, best of 32 (e.g. {h // 32 * 32 or 32}×"
                            f"{w // 32 * 32 or 32})")
        if self.fixed_size is not None and (h, w) != self.fixed_size:
            raise MtkdError(f"{self.name} takes {self.fixed_size[0]}×{self.fixed_size[1]} inputs only, got {h}×{w}: "
                            f"set model.backbone_options.dynamic_img_size=true (or img_size=[{h}, {w}])")
        if self.patch is not None and (h % self.patch[0] or w % self.patch[1]):
            raise MtkdError(f"{self.name}: input {h}×{w} is not a multiple of the {self.patch[0]}×{self.patch[1]} "
                            "patch: resize it or set model.backbone_options.dynamic_img_pad=true")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        self.check_size(x)
        out = self.body(x)
        if self.nhwc:  # timm's Swin returns NHWC maps; the rest of mtkd wants NCHW
            return [f.permute(0, 3, 1, 2) for f in out]
        # a few other timm models return NHWC maps without saying so
        return [f.permute(0, 3, 1, 2) if f.shape[1] != fi["num_chs"] and f.shape[-1] == fi["num_chs"] else f
                for f, fi in zip(out, self.feature_info)]

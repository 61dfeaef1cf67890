"""Models: backbones (built-in CNNs and timm), the FPN neck, task heads and the multi-task model."""

from mtkd.models.backbones import BACKBONES, Backbone, build_backbone, load_weights
from mtkd.models.heads import HEADS
from mtkd.models import hrnet as _hrnet  # noqa: F401  (registers the hrnet18 backbones)
from mtkd.models.multitask import MultiTaskModel, Output

__all__ = ["BACKBONES", "Backbone", "build_backbone", "load_weights", "HEADS", "MultiTaskModel", "Output"]

from mtkd.models.architectures import ARCHITECTURES, build_model, build_model_from_config  # noqa: E402
from mtkd.models.cross_stitch import CrossStitchModel  # noqa: E402
from mtkd.models.mtan import MTANModel  # noqa: E402

__all__ += ["ARCHITECTURES", "build_model", "build_model_from_config", "CrossStitchModel", "MTANModel"]
from mtkd.models.mask_transformer import MaskRegHead, MaskSegHead  # noqa: E402,F401

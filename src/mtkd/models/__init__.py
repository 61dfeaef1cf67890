"""Models: backbones (built-in CNNs and timm), the FPN neck, task heads and the multi-task model."""

from mtkd.models.backbones import BACKBONES, Backbone, build_backbone, load_weights
from mtkd.models.heads import HEADS
from mtkd.models.multitask import MultiTaskModel, Output

__all__ = ["BACKBONES", "Backbone", "build_backbone", "load_weights", "HEADS", "MultiTaskModel", "Output"]

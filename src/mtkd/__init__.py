"""mtkd: multi-task dense prediction with knowledge distillation."""

__version__ = "0.1.0"

"""Converters from the real dataset releases to mtkd's training layout (docs/conventions.md, docs/datasets.md)."""

from mtkd.datasets.convert import CONVERTERS, convert, converter, is_complete

__all__ = ["CONVERTERS", "convert", "converter", "is_complete"]

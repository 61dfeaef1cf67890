"""Knowledge distillation: frozen teachers, the distiller interface, and the methods (by name in ``DISTILLERS``)."""

from __future__ import annotations

import inspect
from typing import Any

from mtkd.distill import feature_kd, output_kd  # noqa: F401  (registration)
from mtkd.distill import okd  # noqa: F401  (registration)
from mtkd.distill import jointdistill, kdam  # noqa: F401  (registration)
from mtkd.distill.base import DISTILLERS, Distiller
from mtkd.errors import MtkdError
from mtkd.registry import construct


CONTEXT = ("tasks", "student_taps", "teacher_taps", "model_config", "task_channels", "edge_pos_weight")


def needs_teachers(name: str) -> bool:
    """Whether method ``name`` distils from frozen teachers (``False`` for online methods that train their own)."""
    return getattr(DISTILLERS.get(name), "needs_teachers", True)


def check_options(name: str, options: dict[str, Any] | None) -> None:
    """Refuse an unknown method ``name`` or an option it does not have (with the valid ones), before building."""
    params = inspect.signature(DISTILLERS.get(name)).parameters
    valid = [p for p in params if p not in (*CONTEXT, "args", "kwargs")]
    if "kwargs" in params:  # presets forward to OutputDistiller
        valid = [p for p in inspect.signature(output_kd.OutputDistiller).parameters
                 if p not in ("preset", "tasks", "student_taps", "teacher_taps")]
    unknown = sorted(set(options or {}) - set(valid))
    if unknown:
        raise MtkdError(f"distillation method {name!r} has no option {', '.join(unknown)}; valid: {', '.join(valid)}")


def check_data(name: str, data: dict[str, Any]) -> None:
    """Refuse a ``data`` section method ``name`` cannot run on safely (e.g. JointDistill without a feedback split, or
    selecting on the test split), before teachers are loaded or anything is built."""
    check = getattr(DISTILLERS.get(name), "check_data", None)
    if check is not None:
        check(data)


def build_distiller(name: str, tasks: list[str], student_taps: dict, teacher_taps: dict,
                    options: dict[str, Any] | None = None, model_config: dict[str, Any] | None = None,
                    task_channels: dict[str, int] | None = None, edge_pos_weight: float = 0.95) -> Distiller:
    """The distiller ``name`` with ``options``; an unknown option is refused with the valid ones.

    ``model_config`` (the run's ``model`` section), ``task_channels`` and ``edge_pos_weight`` (the run's
    ``loss.edge_pos_weight``: one owner for the edge loss of every network a method trains) are passed to factories
    that declare them, e.g. methods that build networks or task losses of their own.
    """
    factory = DISTILLERS.get(name)
    options = dict(options or {})
    check_options(name, options)
    params = inspect.signature(factory).parameters
    context = {"model_config": model_config, "task_channels": task_channels, "edge_pos_weight": edge_pos_weight}
    extra = {k: v for k, v in context.items() if k in params}
    return construct("distillation method", name, factory, (tasks, student_taps, teacher_taps), options, extra)


__all__ = ["DISTILLERS", "Distiller", "build_distiller", "check_data", "check_options", "needs_teachers"]

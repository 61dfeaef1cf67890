"""Which head each task gets, and the one neck the heads share — for every architecture.

``model.head`` is one head name for every task (``"fpn"``) or a mapping ``{task: head name}`` that names each task of
the model (extra keys are ignored, so a single-task net can be built from a multi-task model section). A missing task
or an unknown head name is refused before anything is built.

``model.head_options`` maps a head NAME to keyword options of that head class (``{mask_reg: {n_queries: 64}}``); every
task using that head gets them. Every head also receives ``channels=decoder_channels`` unless its options set it.

The neck is one per model (per task stream for cross-stitch / MTAN), so every head reads the same "shared" map — the
``rep`` representation-gradient weightings differentiate and the tap KD4MTL distils: the FPN map when any head reads
the neck (``reads = "neck"``), the deepest backbone stage when every head reads it (``aspp``, ``mask_seg``,
``mask_reg``), the HRNet-V2 concatenation of the stages when every head is ``hrnet``. In a mixed model (``fpn`` with ``aspp``) the deepest-stage heads therefore read the FPN map.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from mtkd.errors import MtkdError
from mtkd.models.heads import HEADS
from mtkd.models.neck import ConcatNeck, DeepestStage, FPNNeck
from mtkd.registry import suggest


def head_per_task(head: str | Mapping[str, str], tasks) -> dict[str, str]:
    """``model.head`` as ``{task: head name}`` for ``tasks``; a missing task or unknown name is refused."""
    tasks = list(tasks)
    if isinstance(head, str):
        names = dict.fromkeys(tasks, head)
    elif isinstance(head, Mapping):
        missing = [t for t in tasks if t not in head]
        if missing:
            raise MtkdError(f"model.head names no head for task(s) {', '.join(missing)}: a mapping needs one head per "
                            f"task ({', '.join(tasks)}); it names {', '.join(map(str, head)) or 'none'}")
        names = {t: head[t] for t in tasks}
    else:
        raise MtkdError(f"model.head must be a head name or a mapping task -> head name, got {head!r}")
    for name in names.values():
        if not isinstance(name, str) or name not in HEADS:
            raise suggest(str(name), HEADS.names(), "head")
    return names


def check_head_options(head_options: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """``model.head_options`` as ``{head name: {option: value}}``; an unknown head name is refused."""
    if not head_options:
        return {}
    if not isinstance(head_options, Mapping):
        raise MtkdError(f"model.head_options must map a head name to its options, got {head_options!r}")
    for name, opts in head_options.items():
        if name not in HEADS:
            raise suggest(str(name), HEADS.names(), "head in model.head_options")
        if not isinstance(opts, Mapping):
            raise MtkdError(f"model.head_options.{name} must be a mapping of options, got {opts!r}")
    return {name: dict(opts) for name, opts in head_options.items()}


def make_neck_and_heads(info: list[dict], tasks: dict[str, int], head, decoder_channels: int,
                        head_options, n: int) -> tuple[dict[str, str], list[nn.Module], nn.ModuleDict]:
    """Per-task head names, ``n`` necks (1 = shared) sized from ``info``, and one head per task."""
    names = head_per_task(head, tasks)
    options = check_head_options(head_options)
    classes = {t: HEADS.get(name) for t, name in names.items()}
    reads = {cls.reads for cls in classes.values()}
    if "concat" in reads and len(reads) > 1:
        raise MtkdError(f"model.head {names}: the 'hrnet' head reads the HRNet-V2 concatenation and cannot share a "
                        "model with heads that read another neck; give every task 'hrnet' or none")
    neck_cls = ((lambda i: FPNNeck(i, decoder_channels)) if "neck" in reads
                else ConcatNeck if "concat" in reads else DeepestStage)
    necks = [neck_cls(info) for _ in range(n)]
    heads = nn.ModuleDict()
    for t, c in tasks.items():
        opts = {"channels": decoder_channels, **options.get(names[t], {})}
        try:
            heads[t] = classes[t](necks[0].channels, c, **opts)
        except TypeError as e:
            raise MtkdError(f"head {names[t]!r}: bad option in {sorted(opts)}: {e}") from e
    return names, necks, heads


def head_name(names: dict[str, str]) -> str | dict[str, str]:
    """The ``model.head`` value a model was built with: one name when every task shares it, else the mapping."""
    distinct = set(names.values())
    return next(iter(distinct)) if len(distinct) == 1 else dict(names)


__all__ = ["head_per_task", "check_head_options", "make_neck_and_heads", "head_name"]

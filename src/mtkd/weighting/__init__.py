"""Multi-task weighting methods: loss weighting (ew, fixed, uw, dwa, rlw, gradnorm, famo, imtl_l, gls, stch) and
gradient methods (mgda, pcgrad, cagrad, imtl, nashmtl, graddrop, gradvac, alignedmtl, dbmtl, upgrad, dualproj,
fairgrad, config, excessmtl, moco).

    w = mtkd.weighting.get("pcgrad", tasks=["semseg", "depth"])
    weights = w.backward(losses, extra=kd, shared_params=encoder.parameters(), rep=features)
    d = mtkd.weighting.get("mgda").combine(G)      # any gradient method, on a T×D matrix, no tasks needed
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mtkd.weighting import (  # noqa: F401  (registration)
    alignedmtl, cagrad, dbmtl, dwa, ew, famo, fixed, graddrop, gradnorm, gradvac, imtl, mgda, nashmtl, pcgrad, rlw,
    uw,
)
from mtkd.weighting import (  # noqa: F401  (registration: issue 17)
    config, dualproj, excessmtl, fairgrad, gls, imtl_l, moco, stch, upgrad,
)
from mtkd.registry import construct
from mtkd.weighting.base import WEIGHTINGS, GradientWeighting, LossWeighting, Weighting

__all__ = ["GradientWeighting", "LossWeighting", "Weighting", "get", "names"]


def get(name: str, tasks: Sequence[str] = (), **options: Any) -> Weighting:
    """Build the weighting method ``name``; an unknown name raises MtkdError with the closest names."""
    return construct("weighting", name, WEIGHTINGS.get(name), (tasks,), options)


def names() -> list[str]:
    return WEIGHTINGS.names()

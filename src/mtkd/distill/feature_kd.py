"""Feature distillation through a learned adaptor per task and tap: KD4MTL (seed 004) and FitNet.

KD4MTL (Li & Bilen 2020, Eq. 3–5): the student's shared features ``f_s`` go through a task-specific adaptor
``A_t`` and are compared with the frozen single-task teacher's features of the same tap by the normalised distance
``ℓ_d = ‖A_t(f_s)/‖A_t(f_s)‖ − f_t/‖f_t‖‖²`` (per pixel over channels, as the public code; ``normalize="map"``
for Eq. 4 read literally), summed over taps, × λ_t (Eq. 5). The student map is resized to the teacher's when
strides differ.

Adaptors (Table 4's column): ``linear`` (1×1 conv C_s→C_t, no bias, as the public code; default), ``nonlinear``
(1×1 C_s→2C_t, ReLU, 1×1 2C_t→C_t) or ``none`` (the ✗ row: the student's map is compared as it is, so its
channels must equal the teacher's).

Taps (Table 4's "#layers"): ``last`` = the last shared layer (tap ``shared``, the map every head reads; default),
``mid+last`` = also a middle layer: the deepest backbone stage, or the stage before it when ``shared`` *is* the
deepest stage (an ASPP / mask-head model has no neck, so ``shared`` has that stage's channels and stride; with a
ResNet-50 "mid" is then layer3 at 1/16 and "last" layer4 at 1/32 — the public SegNet code taps the end of the
encoder and the last decoder block). A list of tap names picks them explicitly. Every step checks that the tapped
maps are distinct tensors on both sides: one map tapped twice (which would double λ) is refused.

Schedule: the paper and the public code train the adaptors with their own Adam (lr 0.1, weight decay 5e-4,
``distill.lr`` / ``distill.weight_decay``) and **no** schedule, while the student's lr is halved at epoch 100.
``schedule_adaptors=false`` (default, the public code) keeps the adaptors' lr constant when the student has a
scheduler; ``true`` lets the student's schedule scale them too.

FitNet (Romero et al. 2015): a regressor (3×3 conv + BN) maps the student's tap to the teacher's, MSE.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from mtkd.distill.base import DISTILLERS, Distiller, check_tap
from mtkd.distill.losses import FitNetRegressor, fitnet_loss, kd4mtl_feature_loss
from mtkd.errors import MtkdError
from mtkd.models import Output

TAP_SETS = {"last": ("shared",), "mid+last": ("mid", "shared")}


def resolve_taps(taps: str | Sequence[str], student_taps: dict, teacher_taps: dict | None = None) -> list[str]:
    """Names of the taps to distil. ``mid`` is the deepest backbone stage, or the stage before it when ``shared``
    has the deepest stage's (channels, stride) — a model without a neck, whose ``shared`` is that stage."""
    if isinstance(taps, str):
        if taps not in TAP_SETS:
            raise MtkdError(f"distill option taps must be one of {', '.join(TAP_SETS)} or a list of tap names, "
                            f"got {taps!r}")
        stages = [name for name in student_taps if name.startswith("stage")]
        if "mid" in TAP_SETS[taps]:
            if student_taps.get("shared") == student_taps.get(stages[-1]):
                stages = stages[:-1]
            if not stages:
                raise MtkdError("distill option taps=mid+last: the student has no backbone stage besides the one "
                                "'shared' is; use taps=last")
        names = [stages[-1] if tap == "mid" else tap for tap in TAP_SETS[taps]]
    else:
        names = [str(t) for t in taps]
        if not names:
            raise MtkdError("distill option taps is an empty list; name at least one tap, e.g. [shared]")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise MtkdError(f"distill option taps names {', '.join(dup)} twice; each map may be distilled once")
    return names


def check_distinct(features: dict[str, Tensor], taps: Sequence[str], whose: str) -> None:
    """Refuse two taps that are the same tensor (a map distilled twice doubles its λ)."""
    for i, a in enumerate(taps):
        for b in taps[i + 1:]:
            if features[a] is features[b]:
                raise MtkdError(f"taps {a!r} and {b!r} of {whose} are the same tensor (its 'shared' map is that "
                                "backbone stage); distil one of them, e.g. taps=last")


def make_adaptor(kind: str, c_in: int, c_out: int) -> nn.Module:
    if kind == "linear":
        return nn.Conv2d(c_in, c_out, 1, bias=False)
    if kind == "nonlinear":
        return nn.Sequential(nn.Conv2d(c_in, 2 * c_out, 1, bias=False), nn.ReLU(inplace=True),
                             nn.Conv2d(2 * c_out, c_out, 1, bias=False))
    if kind == "fitnet":
        return FitNetRegressor(c_in, c_out, kernel_size=3, bn=True)
    if kind == "none":
        if c_in != c_out:
            raise MtkdError(f"distill option adaptor=none compares the student's map as it is, but it has {c_in} "
                            f"channels and the teacher's {c_out}; use adaptor=linear")
        return nn.Identity()
    raise MtkdError(f"distill option adaptor must be linear, nonlinear, none or fitnet, got {kind!r}")


class FeatureDistiller(Distiller):
    def __init__(self, tasks, student_taps, teacher_taps, weights=None, *, taps: str | Sequence[str] = "last",
                 adaptor: str = "linear", loss: str = "kd4mtl", normalize: str = "pixel",
                 schedule_adaptors: bool = True):
        super().__init__(tasks, student_taps, teacher_taps, weights)
        if not isinstance(schedule_adaptors, bool):
            raise MtkdError(f"distill option schedule_adaptors must be true or false, got {schedule_adaptors!r}")
        self.lr_scheduled = schedule_adaptors
        self.taps = resolve_taps(taps, student_taps, teacher_taps)
        self.loss, self.normalize = loss, normalize
        self.adaptors = nn.ModuleDict()
        for t in self.tasks:
            for tap in self.taps:
                check_tap(tap, student_taps, "the student")
                check_tap(tap, teacher_taps[t], f"the {t} teacher")
                key = f"{t}__{tap}"
                self.adaptors[key] = make_adaptor(adaptor, student_taps[tap][0], teacher_taps[t][tap][0])

    def forward(self, student: Output, teachers: dict[str, Output], batch: dict[str, Tensor],
                task_losses: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        out = {}
        check_distinct(student.features, self.taps, "the student")
        for t in self.active_tasks:
            check_distinct(teachers[t].features, self.taps, f"the {t} teacher")
            total = 0.0
            for tap in self.taps:
                mapped = self.adaptors[f"{t}__{tap}"](student.features[tap])
                target = teachers[t].features[tap].float()
                if self.loss == "kd4mtl":
                    total = total + kd4mtl_feature_loss(mapped, target, normalize=self.normalize)
                else:
                    total = total + fitnet_loss(mapped, target)
            out[f"{self.loss}/{t}"] = self.weights[t] * total
        return out


@DISTILLERS.register("kd4mtl")
def kd4mtl(tasks, student_taps, teacher_taps, weights=None, *, taps="last", adaptor="linear", normalize="pixel",
           schedule_adaptors=False):
    """KD4MTL (seed 004): linear adaptors on the shared features, normalised feature distance; adaptors' lr not
    scheduled (the public code)."""
    return FeatureDistiller(tasks, student_taps, teacher_taps, weights, taps=taps, adaptor=adaptor,
                            loss="kd4mtl", normalize=normalize, schedule_adaptors=schedule_adaptors)


@DISTILLERS.register("fitnet")
def fitnet(tasks, student_taps, teacher_taps, weights=None, *, taps="last"):
    """FitNet hints: a 3×3 conv + BN regressor per task and tap, MSE to the teacher's features."""
    return FeatureDistiller(tasks, student_taps, teacher_taps, weights, taps=taps, adaptor="fitnet", loss="fitnet")

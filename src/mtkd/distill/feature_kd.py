"""Feature distillation through a learned adaptor per task and tap: KD4MTL (seed 004) and FitNet.

KD4MTL (Li & Bilen 2020, Eq. 3–5): the student's shared features ``f_s`` go through a task-specific adaptor
``A_t`` and are compared with the frozen single-task teacher's features of the same tap by the normalised distance
``ℓ_d = ‖A_t(f_s)/‖A_t(f_s)‖ − f_t/‖f_t‖‖²`` (per pixel over channels, as the public code; ``normalize="map"``
for Eq. 4 read literally), summed over taps, × λ_t. Adaptors: ``linear`` (1×1 conv C_s→C_t, no bias, as the
public code) or ``nonlinear`` (1×1 C_s→2C_t, ReLU, 1×1 2C_t→C_t). Taps: ``last`` = the shared representation
(``shared``), ``mid+last`` = also the deepest backbone stage (Table 4). The student map is resized to the
teacher's when strides differ. The paper trains adaptors with Adam lr 0.1 beside the student's 1e-4
(``distill.lr``).

FitNet (Romero et al. 2015): a regressor (3×3 conv + BN) maps the student's tap to the teacher's, MSE.
"""

from __future__ import annotations

from torch import Tensor, nn

from mtkd.distill.base import DISTILLERS, Distiller, check_tap
from mtkd.distill.losses import FitNetRegressor, fitnet_loss, kd4mtl_feature_loss
from mtkd.errors import MtkdError
from mtkd.models import Output

TAP_SETS = {"last": ("shared",), "mid+last": ("deepest", "shared")}


def resolve_taps(taps: str, student_taps: dict, teacher_taps: dict) -> list[str]:
    """Names of the taps to distil; ``deepest`` is the last backbone stage (of the same name on both sides)."""
    if taps not in TAP_SETS:
        raise MtkdError(f"distill option taps must be one of {', '.join(TAP_SETS)}, got {taps!r}")
    stages = [name for name in student_taps if name.startswith("stage")]
    return [stages[-1] if tap == "deepest" else tap for tap in TAP_SETS[taps]]


def make_adaptor(kind: str, c_in: int, c_out: int) -> nn.Module:
    if kind == "linear":
        return nn.Conv2d(c_in, c_out, 1, bias=False)
    if kind == "nonlinear":
        return nn.Sequential(nn.Conv2d(c_in, 2 * c_out, 1, bias=False), nn.ReLU(inplace=True),
                             nn.Conv2d(2 * c_out, c_out, 1, bias=False))
    if kind == "fitnet":
        return FitNetRegressor(c_in, c_out, kernel_size=3, bn=True)
    raise MtkdError(f"distill option adaptor must be linear, nonlinear or fitnet, got {kind!r}")


class FeatureDistiller(Distiller):
    def __init__(self, tasks, student_taps, teacher_taps, weights=None, *, taps: str = "last",
                 adaptor: str = "linear", loss: str = "kd4mtl", normalize: str = "pixel"):
        super().__init__(tasks, student_taps, teacher_taps, weights)
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
        for t in self.active_tasks:
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
def kd4mtl(tasks, student_taps, teacher_taps, weights=None, *, taps="last", adaptor="linear", normalize="pixel"):
    """KD4MTL (seed 004): linear adaptors on the shared features, normalised feature distance."""
    return FeatureDistiller(tasks, student_taps, teacher_taps, weights, taps=taps, adaptor=adaptor,
                            loss="kd4mtl", normalize=normalize)


@DISTILLERS.register("fitnet")
def fitnet(tasks, student_taps, teacher_taps, weights=None, *, taps="last"):
    """FitNet hints: a 3×3 conv + BN regressor per task and tap, MSE to the teacher's features."""
    return FeatureDistiller(tasks, student_taps, teacher_taps, weights, taps=taps, adaptor="fitnet", loss="fitnet")

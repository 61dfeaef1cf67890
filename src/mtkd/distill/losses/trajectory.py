"""JointDistill's knowledge trajectories (Cheng et al., arXiv 2505.10057, seed 001 — only a summary of the paper is
available, so every detail below that the summary does not give is a choice, said as such).

What the paper gives: at each timeframe the features are turned into 2-D attention maps, the top-k pixel locations
with the highest attention (k = 10) are the "essential points", consecutive timeframes' points form trajectories over
the last t timeframes, and the student is constrained to follow the connector's trajectories with an L1 distance.

Choices made here:

- Attention map: ``a = mean_c f²`` (channel mean of squared activations, Zagoruyko & Komodakis' attention transfer),
  normalised per sample by its L2 norm over the H·W positions (as attention transfer does), so the values are
  comparable between the student and the connector whatever their activation scales and resolutions. (Dividing by
  the sum would give values of order 1/(H·W), which make a tiny L1.) ``size=`` resizes the map (bilinear) before the
  normalisation so student and connector maps live on the same grid.
- Key of a trajectory: (task, slot). A slot is a fixed *probe* image (e.g. the first S images of the held-out
  validation split, evaluated at every timeframe), so a trajectory follows the same image through training. The
  buffer does not care what a slot means: a dataset index works too if S = dataset size (memory S·T·t·k·12 bytes).
- A timeframe is one call to :meth:`TrajectoryBuffer.record` for a slot; each (task, slot) keeps a ring of the last
  ``t`` (default 5) frames: the points' flat indices and the connector's attention values there. Everything is held
  in fixed-size registered buffers (bounded memory, part of ``state_dict``, so a resumed run continues exactly).
- Loss: L1 between the student's attention (on the probe images) at every recorded point and the recorded value,
  averaged over all recorded (slot, frame, point) entries; zero when nothing is recorded yet.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from mtkd.distill.losses._common import check_4d, zero_like_graph
from mtkd.errors import MtkdError


def attention_map(feat: torch.Tensor, size: tuple[int, int] | None = None, eps: float = 1e-12) -> torch.Tensor:
    """Spatial attention ``B×H×W`` of a ``B×C×H×W`` feature: channel mean of f², L2-normalised per sample over H·W
    (optionally resized to ``size`` first). Computed in fp32."""
    check_4d(feat, "attention_map feature")
    a = feat.float().pow(2).mean(dim=1, keepdim=True)  # B×1×H×W
    if size is not None and tuple(a.shape[-2:]) != tuple(size):
        a = F.interpolate(a, size=tuple(size), mode="bilinear", align_corners=False)
    b, _, h, w = a.shape
    flat = a.reshape(b, h * w)
    flat = flat / flat.norm(dim=1, keepdim=True).clamp_min(eps)
    return flat.reshape(b, h, w)


def topk_points(att: torch.Tensor, k: int = 10) -> torch.Tensor:
    """Flat indices (into H·W) of the ``k`` highest values of each sample's ``B×H×W`` attention map, ``B×k`` long,
    highest first."""
    if att.dim() != 3:
        raise MtkdError(f"topk_points: expected a B×H×W attention map, got shape {tuple(att.shape)}")
    hw = att.shape[1] * att.shape[2]
    if not 1 <= k <= hw:
        raise MtkdError(f"topk_points: k={k} must be in [1, H·W={hw}]")
    return att.detach().reshape(att.shape[0], hw).topk(k, dim=1).indices


class TrajectoryBuffer(nn.Module):
    """Ring buffers of the last ``t`` timeframes of (top-k indices, connector attention values) per (task, slot).

    Buffers (all persistent, fixed size): ``indices`` and ``values`` ``T×S×t×k`` (T tasks, S slots), ``length``
    ``T×S`` (frames recorded, ≤ t), ``head`` ``T×S`` (where the next frame goes).
    """

    def __init__(self, tasks: Sequence[str], num_slots: int, size: tuple[int, int], k: int = 10, t: int = 5):
        super().__init__()
        if not tasks or num_slots < 1 or k < 1 or t < 1:
            raise MtkdError(f"TrajectoryBuffer: needs tasks, num_slots ≥ 1, k ≥ 1, t ≥ 1; got {list(tasks)}, {num_slots}, {k}, {t}")
        h, w = int(size[0]), int(size[1])
        if k > h * w:
            raise MtkdError(f"TrajectoryBuffer: k={k} exceeds the {h}×{w} attention grid")
        self.tasks = list(tasks)
        self.num_slots, self.size, self.k, self.t = int(num_slots), (h, w), int(k), int(t)
        n = len(self.tasks)
        self.register_buffer("indices", torch.zeros(n, num_slots, t, k, dtype=torch.long))
        self.register_buffer("values", torch.zeros(n, num_slots, t, k, dtype=torch.float32))
        self.register_buffer("length", torch.zeros(n, num_slots, dtype=torch.long))
        self.register_buffer("head", torch.zeros(n, num_slots, dtype=torch.long))

    def _task(self, task: str) -> int:
        if task not in self.tasks:
            from mtkd.registry import suggest

            raise suggest(task, self.tasks, "trajectory task")
        return self.tasks.index(task)

    def _slots(self, slots: torch.Tensor | Sequence[int] | None, batch: int) -> torch.Tensor:
        if slots is None:
            if batch != self.num_slots:
                raise MtkdError(f"TrajectoryBuffer: {batch} maps given without slots= but the buffer has {self.num_slots} slots")
            return torch.arange(batch, device=self.indices.device)
        s = torch.as_tensor(slots, dtype=torch.long, device=self.indices.device).reshape(-1)
        if s.numel() != batch:
            raise MtkdError(f"TrajectoryBuffer: {s.numel()} slots for {batch} maps")
        if s.numel() and (int(s.min()) < 0 or int(s.max()) >= self.num_slots):
            raise MtkdError(f"TrajectoryBuffer: slot ids must be in [0, {self.num_slots}), got {s.tolist()}")
        if s.unique().numel() != s.numel():
            raise MtkdError(f"TrajectoryBuffer: duplicate slot ids {s.tolist()}")
        return s

    def _check_att(self, att: torch.Tensor, what: str) -> None:
        if att.dim() != 3 or tuple(att.shape[1:]) != self.size:
            raise MtkdError(f"{what}: expected a B×{self.size[0]}×{self.size[1]} attention map, got {tuple(att.shape)}")

    @torch.no_grad()
    def record(self, task: str, att: torch.Tensor, slots: torch.Tensor | Sequence[int] | None = None) -> None:
        """Append one timeframe: the top-k points of the connector's attention ``att`` (``B×H×W``) and its values
        there, for the given slots (default: all slots, in order)."""
        self._check_att(att, "TrajectoryBuffer.record")
        ti = self._task(task)
        s = self._slots(slots, att.shape[0])
        a = att.detach().float().to(self.values.device)
        idx = topk_points(a, self.k)
        val = a.reshape(a.shape[0], -1).gather(1, idx)
        pos = self.head[ti, s]
        self.indices[ti, s, pos] = idx
        self.values[ti, s, pos] = val
        self.head[ti, s] = (pos + 1) % self.t
        self.length[ti, s] = (self.length[ti, s] + 1).clamp_max(self.t)

    def recorded(self, task: str, slots: torch.Tensor | Sequence[int] | None = None, batch: int | None = None):
        """``(indices B×t×k, values B×t×k, valid B×t)`` of the given slots; ``valid`` marks recorded frames."""
        ti = self._task(task)
        s = self._slots(slots, self.num_slots if batch is None else batch)
        frames = torch.arange(self.t, device=self.length.device)
        # in a ring that has not wrapped, frames 0..length-1 are filled; once full, all t are
        valid = frames[None, :] < self.length[ti, s][:, None]
        return self.indices[ti, s], self.values[ti, s], valid


def trajectory_loss(
    student_att: torch.Tensor,
    buffer: TrajectoryBuffer,
    task: str,
    slots: torch.Tensor | Sequence[int] | None = None,
) -> torch.Tensor:
    """L1 between the student's attention ``B×H×W`` (on the probe images of ``slots``) at every recorded point and the
    recorded connector value, averaged over the recorded (slot, frame, point) entries. fp32 scalar."""
    buffer._check_att(student_att, "trajectory_loss")
    idx, val, valid = buffer.recorded(task, slots, batch=student_att.shape[0])
    b, t, k = idx.shape
    if not bool(valid.any()):
        return zero_like_graph(student_att)
    flat = student_att.float().reshape(b, -1)
    got = flat.gather(1, idx.to(flat.device).reshape(b, t * k)).reshape(b, t, k)
    err = (got - val.to(flat.device)).abs()
    m = valid.to(flat.device)[:, :, None].expand(b, t, k)
    return torch.where(m, err, torch.zeros_like(err)).sum() / m.sum()

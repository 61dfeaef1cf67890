"""Boundary detection F-measures (odsF, oisF) as the BSDS / SEISM benchmark computes them, exact and compiled.

Protocol (Martin et al., PAMI 2004, "Learning to detect natural image boundaries"; BSDS500 ``evaluation_bdry_image``
and ``collect_eval_bdry``; SEISM, Pont-Tuset & Marques, CVPR 2013, which the dense-MTL codebases call from MATLAB):

0. optionally (``nms=True``) the reference codebases' ``nms_process.m``: structured-edge non-maximum suppression of
   the soft map (:func:`mtkd.metrics.boundary_kernels.edge_nms`), and optionally (``quantize=True``) rounding to
   k/255, the 8-bit PNGs those codebases write and SEISM reads;
1. for each threshold t (99 by default: 0.01, 0.02, ..., 0.99, the values ASTMT / Multi-Task-Learning-PyTorch write
   into SEISM's parameter file; BSDS's ``linspace(1/(n+1), 1-1/(n+1), n)`` gives the same for n = 99) binarise the
   predicted edge probability ``pb >= t``;
2. thin the binary map to one-pixel-wide curves (MATLAB ``bwmorph(bmap, 'thin', inf)``, i.e. Guo & Hall's
   two-subiteration algorithm; :func:`thin` is tested pixel-for-pixel against ``skimage.morphology.thin``);
3. match predicted boundary pixels to ground-truth boundary pixels one-to-one, a pair being allowed when the two
   pixels are at most ``max_dist`` x image diagonal apart (0.0075 for PASCAL-Context, 0.011 for NYUD);
4. per image count ``cntP`` = matched predicted pixels, ``sumP`` = predicted pixels, ``cntR`` = matched ground-truth
   pixels, ``sumR`` = ground-truth pixels;
5. ODS: sum the four counts over all images per threshold, P = cntP/sumP, R = cntR/sumR, F = 2PR/(P+R), max over t;
   OIS: per image take the threshold with the best F (the first on ties), sum that threshold's counts over the
   images, F of the sums.

Matching. ``correspondPixels`` (BSDS ``match.cc``) solves a min-cost perfect matching on a graph where each pixel may
also be left unmatched at a cost of ``outlierCost`` = 100 x maxDist. Each extra matched pair saves 2 x outlierCost
= 200 x maxDist, more than any reassignment along an augmenting path of fewer than ~400 pixels can cost, so the
minimiser is a *maximum-cardinality* matching (with minimum total distance among those), and the counts of step 4
depend only on its cardinality. We compute an exact maximum-cardinality bipartite matching (Hopcroft-Karp from a
nearest-first greedy start, on the candidate pairs within the radius, compiled with numba: see
:mod:`mtkd.metrics.boundary_kernels`). The tests check the counts against a literal min-cost solution of the
``correspondPixels`` objective, brute-force enumeration on tiny images, and the previous max-flow implementation
(``tests/metrics/boundary_reference.py``) on random images. Differences to the MATLAB tools that remain:

- ``match.cc`` connects outlier nodes sparsely at random (degree 6), which can make its result differ from the
  exact optimum by a pixel or so, non-deterministically; ours is exact and deterministic.
- BSDS ``collect_eval_bdry`` interpolates P/R linearly between adjacent thresholds when it searches the ODS
  maximum (slightly higher odsF); SEISM's ``general_ods`` and this metric take the max over the thresholds only.
  No AP is computed.
- ground-truth pixels marked invalid (-1) are excluded from both sides: they are not ground-truth boundary and
  predicted pixels on them are dropped after thinning. An image with no valid pixel is skipped (not counted); an
  image with valid pixels but no boundary pixel adds its predicted pixels to sumP and nothing to sumR.

Speed and memory. The kernels thin with a work list (only pixels whose neighbourhood changed are re-evaluated),
skip a threshold that keeps the same pixels as the previous one, and match on local candidate lists from the
smaller side: ~0.25 s of CPU for a 480 x 640 image at 99 thresholds, against ~14 s for the previous
implementation (``benchmarks/eval_speed.py``). ``workers > 0`` scores images in that many worker processes while
the caller keeps running the model (at most ``2 x workers`` images queued; each worker holds one image's buffers,
~50 bytes a pixel, beside its interpreter); states are per-threshold count sums, never the predictions, and sync by
summation under DDP (each rank scores its own images).
"""

from __future__ import annotations

import multiprocessing
import sys
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np
import torch
from torchmetrics import Metric

from mtkd.errors import MtkdError
from mtkd.metrics.boundary_kernels import image_counts, match_count, thin

__all__ = ["BoundaryF", "thin", "match_count", "image_counts", "default_thresholds"]


def default_thresholds(n: int = 99) -> torch.Tensor:
    """``n`` evenly spaced thresholds strictly inside (0, 1): 0.01 .. 0.99 for n = 99 (BSDS / SEISM)."""
    return torch.linspace(1.0 / (n + 1), 1.0 - 1.0 / (n + 1), n, dtype=torch.float64)


def _pool_context():
    """``fork`` on Linux (workers start in milliseconds with the compiled kernels already loaded; they run NumPy and
    numba only, never CUDA or the parent's threads' locks, as DataLoader workers), ``spawn`` elsewhere."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if sys.platform.startswith("linux") and "fork" in methods else "spawn")


def _f(cnt_p, sum_p, cnt_r, sum_r):
    p = np.where(sum_p > 0, cnt_p / np.maximum(sum_p, 1e-300), 0.0)
    r = np.where(sum_r > 0, cnt_r / np.maximum(sum_r, 1e-300), 0.0)
    return np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-300), 0.0)


class BoundaryF(Metric):
    """odsF and oisF (in %) of predicted edge probabilities against {0, 1, -1} boundary maps; see the module doc.

    ``update(preds, target)``: ``preds`` B x 1 x H x W (or B x H x W, or H x W) probabilities in [0, 1] (apply the
    sigmoid to logits first), ``target`` of the same size, 1 boundary / 0 background / -1 invalid.
    Options: ``max_dist`` (fraction of the image diagonal), ``thresholds`` (a count or ascending values in (0, 1)),
    ``thin``, ``nms``, ``quantize`` (see the module doc), ``workers`` (0: score in this process).
    """

    full_state_update = False
    #: ``compute()``'s keys in table order → higher is better (torchmetrics' ``higher_is_better``, per key)
    higher_is_better_by_key = {"odsF": True, "oisF": True}
    higher_is_better = True

    def __init__(self, max_dist: float = 0.011, thresholds: int | torch.Tensor = 99, thin: bool = True,
                 nms: bool = False, quantize: bool = False, workers: int = 0, **kwargs):
        super().__init__(**kwargs)
        if isinstance(thresholds, int):
            if thresholds < 1:
                raise MtkdError(f"BoundaryF needs at least one threshold, got thresholds={thresholds}")
            ts = default_thresholds(thresholds)
        else:
            ts = torch.as_tensor(thresholds, dtype=torch.float64).flatten()
        ts_np = ts.numpy().copy()
        if ts_np.size == 0 or np.any(np.diff(ts_np) <= 0) or ts_np[0] <= 0 or ts_np[-1] > 1:
            raise MtkdError(f"BoundaryF thresholds must be ascending values in (0, 1], got {ts_np.tolist()[:5]}...")
        if not 0 < float(max_dist) < 1:
            raise MtkdError(f"BoundaryF max_dist is a fraction of the image diagonal in (0, 1), got {max_dist}")
        if int(workers) < 0:
            raise MtkdError(f"BoundaryF workers must be >= 0, got {workers}")
        self.max_dist = float(max_dist)
        self.thin = bool(thin)
        self.nms = bool(nms)
        self.quantize = bool(quantize)
        self.workers = int(workers)
        self._thresholds = ts_np
        t = len(ts_np)
        for name in ("cnt_p", "sum_p", "cnt_r", "sum_r"):
            self.add_state(name, default=torch.zeros(t, dtype=torch.float64), dist_reduce_fx="sum")
        for name in ("ois_cnt_p", "ois_sum_p", "ois_cnt_r", "ois_sum_r", "n_images"):
            self.add_state(name, default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self._pool: ProcessPoolExecutor | None = None
        self._pending: deque[Future] = deque()
        self._failed: str | None = None

    @property
    def thresholds(self) -> np.ndarray:
        return self._thresholds

    # --- input -----------------------------------------------------------------------------------------------------

    def _check(self, preds: torch.Tensor, target: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        def squeeze(x: torch.Tensor, what: str) -> torch.Tensor:
            if x.dim() == 4 and x.shape[1] == 1:
                x = x[:, 0]
            if x.dim() == 2:
                x = x[None]
            if x.dim() != 3:
                raise MtkdError(f"BoundaryF: {what} must be B x 1 x H x W, B x H x W or H x W, got {tuple(x.shape)}")
            return x

        p, g = squeeze(preds, "preds"), squeeze(target, "target")
        if p.shape != g.shape:
            raise MtkdError(f"BoundaryF: preds {tuple(preds.shape)} and target {tuple(target.shape)} differ in size")
        p = p.detach().double().cpu().numpy()
        finite = np.isfinite(p)
        if p.size and (not finite.all() or p.min() < 0 or p.max() > 1):
            seen = f"values in [{p[finite].min():.3g}, {p[finite].max():.3g}]" if finite.any() else "no finite value"
            raise MtkdError(f"BoundaryF: preds must be probabilities in [0, 1] (apply the sigmoid to logits), got "
                            f"{seen}" + ("" if finite.all() else " and non-finite values"))
        return p, g.detach().cpu().numpy()

    # --- accumulation ----------------------------------------------------------------------------------------------

    def _add(self, c: np.ndarray | None) -> None:
        if c is None:  # no valid pixel: the image does not count
            return
        dev, dt = self.cnt_p.device, torch.float64
        for k, name in enumerate(("cnt_p", "sum_p", "cnt_r", "sum_r")):
            getattr(self, name).add_(torch.as_tensor(c[:, k], dtype=dt, device=dev))
        best = c[int(np.argmax(_f(c[:, 0], c[:, 1], c[:, 2], c[:, 3])))]  # first best threshold on ties
        for k, name in enumerate(("ois_cnt_p", "ois_sum_p", "ois_cnt_r", "ois_sum_r")):
            getattr(self, name).add_(float(best[k]))
        self.n_images.add_(1.0)

    def _args(self, prob: np.ndarray, gt: np.ndarray) -> tuple:
        return prob, gt, self._thresholds, self.max_dist, self.thin, self.nms, self.quantize

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        if self._failed:
            raise MtkdError(self._failed)
        p, g = self._check(preds, target)
        for i in range(p.shape[0]):
            if self.workers == 0:
                self._add(image_counts(*self._args(p[i], g[i])))
                continue
            if self._pool is None:
                self._pool = ProcessPoolExecutor(self.workers, mp_context=_pool_context())
            while len(self._pending) >= 2 * self.workers:  # bounded queue: memory stays O(workers) images
                self._collect(self._pending.popleft())
            try:
                self._pending.append(self._pool.submit(image_counts, *self._args(p[i].copy(), g[i].copy())))
            except BrokenProcessPool as err:
                self._fail(err)

    def _collect(self, future: Future) -> None:
        try:
            self._add(future.result())
        except BrokenProcessPool as err:
            self._fail(err)

    def _fail(self, err: BaseException) -> None:
        self._failed = (f"BoundaryF: a scoring worker process died ({type(err).__name__}: killed or out of memory?); "
                        f"the counts are incomplete and no odsF is reported - rerun with fewer workers "
                        f"(eval.edge.workers, now {self.workers}) or 0")
        self._shutdown()
        raise MtkdError(self._failed) from None

    def _drain(self) -> None:
        """Wait for every queued image and add its counts (before any sync, compute or state read)."""
        if self._failed:
            raise MtkdError(self._failed)
        while self._pending:
            self._collect(self._pending.popleft())

    def _shutdown(self) -> None:
        pool, self._pool = self._pool, None
        self._pending.clear()
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def sync(self, *args, **kwargs) -> None:
        self._drain()
        super().sync(*args, **kwargs)

    def merge_state(self, incoming_state) -> None:
        self._drain()
        if isinstance(incoming_state, BoundaryF):
            incoming_state._drain()
        super().merge_state(incoming_state)

    def reset(self) -> None:
        self._shutdown()
        self._failed = None
        super().reset()

    def __getstate__(self) -> dict:
        self._drain()
        state = super().__getstate__()
        state.update(_pool=None, _pending=deque())
        return state

    def __del__(self) -> None:
        pool = self.__dict__.get("_pool")
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def compute(self) -> dict[str, torch.Tensor]:
        self._drain()
        ods = _f(*(x.cpu().numpy() for x in (self.cnt_p, self.sum_p, self.cnt_r, self.sum_r))).max()
        ois = _f(*(x.cpu().numpy() for x in (self.ois_cnt_p, self.ois_sum_p, self.ois_cnt_r, self.ois_sum_r)))
        return {"odsF": torch.tensor(100.0 * float(ods)), "oisF": torch.tensor(100.0 * float(ois))}

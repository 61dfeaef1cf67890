"""Seconds per image of the boundary benchmark (odsF / oisF, 99 thresholds), mtkd's compiled kernels beside the
previous implementation, and the projected time for the NYUD-v2 test set and PASCAL-Context val.

    python benchmarks/eval_speed.py [--images N] [--workers K] [--old-thresholds M] [--json out.json]

Images: synthetic (``tests/metrics/boundary_reference.py: voronoi_case``): Voronoi-region boundaries as ground truth
and a shifted, blurred prediction over a smooth texture, at 480 x 640 (NYUD-v2, maxDist 0.011) and 512 x 512
(PASCAL-Context, maxDist 0.0075). Low thresholds keep most of such an image, the costly case for thinning.

Measured, all in this one run so that load from other processes hits every row alike:
- ``new``: ``mtkd.metrics.boundary.image_counts`` in this process, raw soft map and with the recipes' NMS + 8-bit
  rounding; wall seconds and CPU seconds (``time.process_time``, less sensitive to other processes) per image,
  after one warm-up image (numba compiles or loads its cache once per process);
- ``pool``: ``BoundaryF(workers=K)`` over the same images, wall seconds per image (fork, so no import cost);
- ``old``: the previous implementation (thinning from scratch with ``ndimage.correlate``, max-flow over all pixel
  pairs within the radius) on the first image at ``--old-thresholds`` of the 99 thresholds (it takes 0.1-0.3 s per
  threshold), scaled to 99; its counts are compared with the new ones at those thresholds (``agree``).
Projections multiply the per-image seconds by 654 (NYUD-v2 test) and 5105 (PASCAL-Context val).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "metrics"))
import boundary_reference as old  # noqa: E402
from bench_common import add_device_arg, describe_device  # noqa: E402

from mtkd.metrics.boundary import BoundaryF, default_thresholds, image_counts  # noqa: E402

SETS = {"NYUD-v2 test": ((480, 640), 0.011, 654), "PASCAL-Context val": ((512, 512), 0.0075, 5105)}


def _time(fn, *args, **kwargs):
    w, c = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - w, time.process_time() - c


def bench(images: int, workers: int, old_thresholds: int) -> list[dict]:
    ths = default_thresholds(99).numpy()
    rows = []
    for name, ((h, w), max_dist, count) in SETS.items():
        rng = np.random.default_rng(0)
        cases = [old.voronoi_case(rng, h, w, regions=40) for _ in range(images)]
        image_counts(*cases[0], ths, max_dist)  # warm-up: compile or load the kernels
        for label, opts in (("new", {}), ("new nms+8bit", {"nms": True, "quantize": True})):
            wall = cpu = 0.0
            for prob, gt in cases:
                _, dw, dc = _time(image_counts, prob, gt, ths, max_dist, **opts)
                wall, cpu = wall + dw, cpu + dc
            rows.append({"set": name, "size": f"{h}x{w}", "impl": label, "s_per_image_wall": wall / images,
                         "s_per_image_cpu": cpu / images, "images": images, "thresholds": 99})
        if workers:
            metric = BoundaryF(max_dist=max_dist, thresholds=99, workers=workers)
            preds = torch.tensor(np.stack([c[0] for c in cases]))[:, None]
            gts = torch.tensor(np.stack([c[1] for c in cases]))[:, None]
            metric.update(preds[:1], gts[:1])
            metric.compute()  # start the workers and warm them up
            metric.reset()
            t = time.perf_counter()
            metric.update(preds, gts)
            metric.compute()
            rows.append({"set": name, "size": f"{h}x{w}", "impl": f"pool x{workers}",
                         "s_per_image_wall": (time.perf_counter() - t) / images, "s_per_image_cpu": None,
                         "images": images, "thresholds": 99})
        if old_thresholds:
            prob, gt = cases[0]
            sub = ths[np.linspace(0, 98, old_thresholds).round().astype(int)]
            ref, dw, dc = _time(old.image_counts, prob, gt, sub, max_dist)
            new = image_counts(prob, gt, sub, max_dist)
            rows.append({"set": name, "size": f"{h}x{w}", "impl": "old (scaled to 99)",
                         "s_per_image_wall": dw * 99 / len(sub), "s_per_image_cpu": dc * 99 / len(sub), "images": 1,
                         "thresholds": len(sub), "agree": bool(np.array_equal(ref, new))})
        for r in rows:
            if r["set"] == name:
                r["projected_min_wall"] = r["s_per_image_wall"] * count / 60
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--old-thresholds", type=int, default=9, help="thresholds the old implementation runs (0: skip)")
    ap.add_argument("--json", type=Path)
    add_device_arg(ap)
    args = ap.parse_args()
    print(describe_device("cpu") + ("  (--device cuda: the boundary kernels are CPU code, nothing to put on the GPU)"
                                    if args.device == "cuda" else ""))
    rows = bench(args.images, args.workers, args.old_thresholds)
    print(f"{'set':20} {'size':8} {'implementation':20} {'s/img wall':>10} {'s/img cpu':>10} {'projected min':>13}"
          f"  notes")
    for r in rows:
        cpu = "" if r["s_per_image_cpu"] is None else f"{r['s_per_image_cpu']:.3f}"
        note = f"{r['images']} image(s), {r['thresholds']} thresholds"
        if "agree" in r:
            note += f", counts equal to new: {r['agree']}"
        print(f"{r['set']:20} {r['size']:8} {r['impl']:20} {r['s_per_image_wall']:10.3f} {cpu:>10} "
              f"{r['projected_min_wall']:13.1f}  {note}")
    for name in SETS:
        old_row = next((r for r in rows if r["set"] == name and r["impl"].startswith("old")), None)
        new_row = next(r for r in rows if r["set"] == name and r["impl"] == "new")
        if old_row:
            print(f"{name}: new is {old_row['s_per_image_cpu'] / new_row['s_per_image_cpu']:.0f}x faster in CPU "
                  f"time, {old_row['s_per_image_wall'] / new_row['s_per_image_wall']:.0f}x in wall time")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

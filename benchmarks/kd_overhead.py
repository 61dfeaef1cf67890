"""One distillation training step vs one plain multi-task step of the same student, teachers' forward timed apart.

Target (issue 5): KD step ≤ MTL step + teachers' forward + 10%. Peak memory: growth of the process's peak RSS
while each side runs (CPU), or ``torch.cuda.max_memory_allocated`` on a GPU. Measured in one process, alternating.

    python benchmarks/kd_overhead.py [--steps 20] [--rounds 2] [--batch 8] [--method kd4mtl]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch
from bench_common import TASKS, config, lightning_step_times, make_batch, save_teacher

from mtkd.engine.module import MultiTaskModule


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def teacher_forward_times(module: MultiTaskModule, batch: dict, steps: int) -> list[float]:
    teachers = module.teachers
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        teachers(batch["image"])
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--method", default="kd4mtl")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    batch = make_batch(args.batch)
    with tempfile.TemporaryDirectory() as tmp:
        teachers = [f"distill.teachers.{t}={save_teacher(Path(tmp) / f'{t}.ckpt', t)}" for t in TASKS]
        mtl = MultiTaskModule(config(), TASKS)
        kd = MultiTaskModule(config(f"distill.name={args.method}", *teachers), TASKS)
        mtl_t, kd_t, teach_t = [], [], []
        rss0 = peak_rss_mb()
        for _ in range(args.rounds):
            mtl_t += lightning_step_times(mtl, batch, args.steps)
            rss_mtl = peak_rss_mb()
            kd_t += lightning_step_times(kd, batch, args.steps)
            teach_t += teacher_forward_times(kd, batch, args.steps)
        rss_kd = peak_rss_mb()
    m, k, t = (statistics.median(x) for x in (mtl_t, kd_t, teach_t))
    print(f"device: cpu ({torch.get_num_threads()} threads), batch {args.batch}x3x96x128, tiny student, "
          f"3 tiny single-task teachers, method {args.method}, {len(mtl_t)} steps each")
    print(f"MTL step              : {m * 1e3:8.1f} ms")
    print(f"teachers' forward     : {t * 1e3:8.1f} ms")
    print(f"KD step               : {k * 1e3:8.1f} ms")
    print(f"KD / (MTL + teachers) : {k / (m + t):8.3f}   (target <= 1.10)")
    print(f"peak RSS growth: MTL {rss_mtl - rss0:.0f} MB, then KD {rss_kd - rss_mtl:.0f} MB more "
          "(RSS peaks only grow: the KD figure is its excess over the MTL peak)")


if __name__ == "__main__":
    main()

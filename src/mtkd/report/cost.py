"""Inference cost of a run's model: parameters, GFLOPs at its training input size, and latency on this CPU.

FLOPs are counted by PyTorch's ``FlopCounterMode`` for one image (a multiply-add counts as 2 FLOPs, the convention
of fvcore's successors; papers quoting "FLOPs" as multiply-adds give half). Latency is the median of
``repeats`` forward passes of one image after 3 warm-up passes, on ONE CPU thread: rows measured in one report are
comparable with each other (not with a GPU), and a busy machine does not inflate them the way contended OpenMP
threads do (2 threads on a loaded 2-core machine measured 100× slower). The student alone is measured:
teachers and distiller modules are not part of the deployed model. Results are cached in ``<run>/cost.json``.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from mtkd.data.input_size import input_size
from mtkd.checkpoints import load_model
from mtkd.errors import MtkdError

COST_VERSION = 3  # 2: one-thread latency; 3: CPU attention counted


def run_checkpoint(run_dir: Path) -> Path:
    """The model selected on validation (``best.ckpt``), else the latest one."""
    for name in ("best.ckpt", "last.ckpt"):
        if (run_dir / "checkpoints" / name).is_file():
            return run_dir / "checkpoints" / name
    raise MtkdError(f"{run_dir} has no checkpoint")


def _cpu_sdpa(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


# FlopCounterMode has a formula for the CUDA attention kernels but none for the CPU one (it counts 0): add it, so
# attention-based models (InvPT, DeMT, MQTransformer, mask heads) are not under-counted on a CPU.
_CPU_ATTENTION = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa}


def count_flops(model: torch.nn.Module, image: torch.Tensor) -> int:
    """FLOPs of one forward of ``model`` on ``image`` (a multiply-add = 2), attention on the CPU included."""
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=_CPU_ATTENTION) as counter:
        model(image)
    return counter.get_total_flops()


def model_cost(model: torch.nn.Module, size: tuple[int, int], repeats: int = 20) -> dict[str, Any]:
    """``{"parameters", "gflops", "latency_ms"}`` of ``model`` on one ``3×H×W`` image (latency on one thread)."""
    model = model.eval().cpu()
    image = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        flops = count_flops(model, image)
        with torch.no_grad():
            for _ in range(3):
                model(image)
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                model(image)
                times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    return {"parameters": sum(p.numel() for p in model.parameters()), "gflops": flops / 1e9,
            "latency_ms": statistics.median(times) * 1e3}


def run_cost(run_dir: Path, config: dict[str, Any], repeats: int = 20) -> dict[str, Any]:
    """The cost of a run's student, measured once and cached in ``cost.json`` (keyed by input size)."""
    size = list(input_size(config["data"]))
    cache = run_dir / "cost.json"
    if cache.is_file():
        try:
            cached = json.loads(cache.read_text())
            if cached.get("version") == COST_VERSION and cached.get("input") == size:
                return cached
        except ValueError:
            pass
    model, _ = load_model(run_checkpoint(run_dir))
    cost = {**model_cost(model, tuple(size), repeats), "input": size, "version": COST_VERSION,
            "device": f"cpu, 1 thread, torch {torch.__version__}"}
    from mtkd.atomic import write_json

    write_json(cache, cost)
    return cost

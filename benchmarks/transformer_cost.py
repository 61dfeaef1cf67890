"""Cost of the transformer multi-task models at the protocols' sizes, next to the published figures (issue #15).

For every model of seed 003's transformer rows (and the decoders' own papers): parameters and GFLOPs of one image at
the protocol's input size (NYUD-v2 480×640 with 4 tasks, PASCAL-Context 512×512 with 5), built from the shipped
recipes (random init), and an estimate of the peak memory of one training step at the protocol's batch (8) under
bf16 autocast — measured on the CPU at reduced sizes and extrapolated (no GPU needed):

    peak ≈ 4 B × P × (1 weight + 1 gradient + 1 SGD momentum)          fp32 master weights (bf16-mixed)
         + activations(8 images, H×W)                                   what autograd saves for the backward
    activations(b, pixels) = b · (α·pixels + β·pixels²)                  α, β fitted on 1 image at 1/4 and 1/2 the side

The saved tensors are counted exactly (``saved_tensors_hooks``, unique storages) — not an allocator's high-water
mark, so transient buffers (≈ the largest layer's output) come on top; the β·pixels² term is attention scores that
grow with the square of the token count (InvPT's explicit scores; DeMT / MQTransformer's pooled-key attention under
SDPA's math kernel, which a GPU's memory-efficient kernel does not store — there it is an over-estimate).

FLOPs: PyTorch's ``FlopCounterMode`` (a multiply-add = 2 FLOPs); the papers' "GFLOPs" (fvcore / thop) count
multiply-adds, so the comparable figure is ``GMACs`` = FLOPs / 2, printed beside the published one with the ratio.

    python benchmarks/transformer_cost.py                  # every row (Swin-L rows: ~1 min each on one CPU thread)
    python benchmarks/transformer_cost.py --rows demt_t swin_t_mt --no-memory
"""

from __future__ import annotations

import argparse
import time

import torch

from mtkd.config import load_config, to_dict
from mtkd.models import build_model_from_config
from mtkd.report.cost import count_flops

NYUD = {"semseg": 40, "depth": 1, "normal": 3, "edge": 1}
PASCAL = {"semseg": 21, "parts": 7, "sal": 1, "normal": 3, "edge": 1}
SIZE = {"nyud": (480, 640), "pascal_context": (512, 512)}
TASKS = {"nyud": NYUD, "pascal_context": PASCAL}

# label: (recipe, published params M, published GFLOPs, source, overrides)
ROWS = {
    "swin_t_mt": ("nyud/swin_t_mt", 32.50, 96.29, "seed 003 Table 1", ()),
    "swin_s_mt": ("nyud/swin_s_mt", 53.82, 116.63, "seed 003 Table 1", ()),
    "swin_t_st": ("nyud/swin_t_st", 115.08, 161.25, "seed 003 Table 1 (4 single-task nets)", ("st",)),
    "swin_b_mt": ("nyud/swin_b_mt", None, None, "", ()),
    "swin_l_mt": ("nyud/swin_l_mt", None, None, "", ()),
    "invpt_t": ("nyud/invpt_swin_t", None, None, "", ()),
    "demt_t": ("nyud/demt_swin_t", 32.07, 100.70, "DeMT README (NYUD)", ()),
    "demt_s": ("nyud/demt_swin_s", 53.03, 121.05, "DeMT README (NYUD)", ()),
    "mqt_t_pascal": ("pascal_context/mqtransformer_swin_t", None, None, "", ()),
    "mqt_l_nyud": ("pascal_context/mqtransformer_swin_t", 204.3, 365.25, "MQTransformer README (NYUD, Swin-L)",
                   ("nyud", "swin_large_patch4_window7_224", "swin-l-mqt")),
}


def model_of(label: str, any_size: bool = False):
    """The row's model(s) from its recipe; ``any_size``: Swin built for any input (the memory probes)."""
    recipe, _, _, _, extra = ROWS[label]
    ds = recipe.split("/")[0]
    overrides = ["data.root=/tmp", "model.pretrained=false"]
    if any_size:
        overrides.append("model.backbone_options.dynamic_img_size=true")
    if "nyud" in extra and ds != "nyud":  # MQTransformer's NYUD Swin-L row from the PASCAL recipe
        ds = "nyud"
        overrides += [f"model.backbone=timm:{extra[1]}", "model.backbone_options.img_size=[480,640]",
                      "data.tasks=[semseg,depth,normal,edge]"]
    cfg = to_dict(load_config(recipe, overrides))
    tasks = TASKS[ds]
    if "st" in extra:  # one single-task network per task
        return [build_model_from_config(cfg["model"], {t: c}) for t, c in tasks.items()], SIZE[ds], cfg
    return [build_model_from_config(cfg["model"], tasks)], SIZE[ds], cfg


def flops(models, size) -> float:
    x = torch.randn(1, 3, *size)
    return sum(count_flops(m.eval(), x) for m in models) / 1e9


def saved_bytes(model, size, batch: int = 1) -> int:
    """Bytes autograd saves for the backward of one training forward (unique storages), under bf16 autocast."""
    seen: dict[int, int] = {}

    def pack(t):
        if isinstance(t, torch.Tensor) and t.device.type == "cpu":
            try:
                s = t.untyped_storage()
                seen[s.data_ptr()] = max(seen.get(s.data_ptr(), 0), s.nbytes())
            except (RuntimeError, NotImplementedError):
                pass
        return t

    model.train()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), \
            torch.autocast("cpu", dtype=torch.bfloat16):
        model(torch.randn(batch, 3, *size))
    return sum(v for k, v in seen.items() if k not in params)


def peak_memory_gib(models, size, batch: int = 8) -> tuple[float, float]:
    """(estimated peak GiB of one training step at ``batch`` × ``size``, fraction that is activations);
    ``models`` built for any input size."""
    P = sum(p.numel() for m in models for p in m.parameters())
    h, w = size
    small = [(h // 4 // 32 * 32 or 32, w // 4 // 32 * 32 or 32), (h // 2 // 32 * 32, w // 2 // 32 * 32)]
    pts = []
    for s in small:
        act = 0
        for m in models:
            act += saved_bytes(m, s)
        pts.append((s[0] * s[1], act))
    (p1, a1), (p2, a2) = pts
    # a = α·p + β·p²  through both points
    beta = (a2 / p2 - a1 / p1) / (p2 - p1)
    alpha = a1 / p1 - beta * p1
    full = h * w
    act = batch * (alpha * full + max(beta, 0.0) * full * full)
    state = 4 * P * 3
    return (state + act) / 2**30, act / (state + act)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory estimate")
    ap.add_argument("--size", nargs=2, type=int, metavar=("H", "W"),
                    help="count FLOPs at this input size instead of the protocol's (e.g. 416 576, see docs)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"{'model':<14} {'size':>9} {'params M':>9} {'paper M':>8} {'Δ%':>6} {'GMACs':>8} {'paper G':>8} "
          f"{'ratio':>6} {'peak GiB@8':>10} {'act %':>6}  source")
    for label in args.rows:
        t0 = time.time()
        models, size, _ = model_of(label)
        _, pm, pg, src, _ = ROWS[label]
        params = sum(p.numel() for m in models for p in m.parameters()) / 1e6
        if args.size:
            size = tuple(args.size)
            models = model_of(label, any_size=True)[0]
        gmacs = flops(models, size) / 2
        mem = ("", "") if args.no_memory else peak_memory_gib(model_of(label, any_size=True)[0], size)
        dp = f"{100 * (params / pm - 1):+.1f}" if pm else "—"
        ratio = f"{gmacs / pg:.2f}" if pg else "—"
        print(f"{label:<14} {size[0]}×{size[1]:<5} {params:>9.2f} {pm or '—':>8} {dp:>6} {gmacs:>8.2f} "
              f"{pg or '—':>8} {ratio:>6} "
              f"{(f'{mem[0]:.1f}' if mem[0] != '' else '—'):>10} {(f'{100 * mem[1]:.0f}' if mem[1] != '' else '—'):>6}"
              f"  {src} [{time.time() - t0:.0f} s]", flush=True)


if __name__ == "__main__":
    main()

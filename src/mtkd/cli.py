"""The ``mtkd`` command: ``train``, ``eval``, ``study``, ``report``, ``demo``, ``predict``, ``export``, ``data convert``.

User mistakes (``MtkdError``) print one line and exit 2; ``--traceback`` shows the full trace.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings

from mtkd.errors import MtkdError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mtkd", description=__doc__.splitlines()[0])
    p.add_argument("--traceback", action="store_true", help="show the full traceback on errors")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train from a YAML recipe, with dotted.key=value overrides")
    t.add_argument("config")
    t.add_argument("overrides", nargs="*")
    e = sub.add_parser("eval", help="evaluate a checkpoint on the test (or validation) split")
    e.add_argument("checkpoint")
    e.add_argument("--split", choices=["test", "val"], default="test")
    e.add_argument("overrides", nargs="*", help="e.g. data.root=/data/nyuv2")
    d = sub.add_parser("demo", help="rooms data → single-task and multi-task models → table (minutes on a CPU)")
    d.add_argument("--out", default="runs/demo")
    d.add_argument("--methods", nargs="+", default=["ew", "kd4mtl", "kd"],
                   help="multi-task rows: weightings (ew, uw, pcgrad, ...) or distillers (kd4mtl, kd, dist, ...)")
    d.add_argument("--epochs", type=int, default=6)
    d.add_argument("--n-train", type=int, default=600)
    pr = sub.add_parser("predict", help="coloured PNGs and raw arrays per task for images of any size")
    pr.add_argument("checkpoint")
    pr.add_argument("images", nargs="+", help="image files or folders of images")
    pr.add_argument("--out", required=True)
    pr.add_argument("--batch-size", type=int, default=8)
    x = sub.add_parser("export", help="the student alone as safetensors or ONNX, with a model card")
    x.add_argument("checkpoint")
    x.add_argument("--format", choices=["safetensors", "onnx"], default="safetensors")
    x.add_argument("--out", help="output folder (default: <run>/export)")
    dc = sub.add_parser("data", help="dataset tools").add_subparsers(dest="data_command", required=True)
    c = dc.add_parser("convert", help="convert a raw release to the training layout")
    c.add_argument("name")
    c.add_argument("src")
    c.add_argument("out")
    c.add_argument("options", nargs="*", help="key=value converter options")
    return p


def _dispatch(args: argparse.Namespace) -> None:
    if args.command == "train":
        from mtkd.config import load_config
        from mtkd.engine.run import train

        res = train(load_config(args.config, args.overrides))
        print(f"results: {res['config']['out_dir']}/{res['name']}/results.json")
    elif args.command == "eval":
        from mtkd.engine.evaluate import evaluate

        evaluate(args.checkpoint, split=args.split, overrides=args.overrides)
    elif args.command == "demo":
        from mtkd.demo import run_demo

        run_demo(args.out, tuple(args.methods), epochs=args.epochs, n_train=args.n_train)
    elif args.command == "predict":
        from mtkd.predict import predict

        predict(args.checkpoint, args.images, args.out, batch_size=args.batch_size)
    elif args.command == "export":
        from mtkd.export import export

        print(f"exported: {export(args.checkpoint, args.format, args.out)}")
    elif args.command == "data":
        from omegaconf import OmegaConf

        from mtkd.datasets.convert import convert

        options = OmegaConf.to_container(OmegaConf.from_dotlist(args.options)) if args.options else {}
        print(f"converted: {convert(args.name, args.src, args.out, **options)}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    warnings.filterwarnings("ignore", module="lightning")
    import lightning.pytorch  # noqa: F401  (it sets its loggers to INFO on import: quiet them after)

    for name in ("lightning.pytorch", "lightning.fabric"):  # device banners and tips: mtkd prints what matters
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        _dispatch(args)
    except MtkdError as err:
        if args.traceback:
            raise
        print(f"mtkd: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mtkd: interrupted; rerun the same command with resume=true to continue", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

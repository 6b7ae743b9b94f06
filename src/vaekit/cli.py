"""Command line: ``vaekit <command> ...`` and ``python -m vaekit <command> ...``.

Each subcommand parses its flags and calls one function of ``vaekit.api``. User errors print one
line and exit with code 2 (``--debug`` shows the traceback instead).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from . import api
from .config import PRESETS
from .errors import VaekitError

EXIT_USAGE = 2


def _int_tuple(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    return values


def _size(text: str) -> tuple[int, int]:
    values = _int_tuple(text.replace("x", ","))
    if len(values) == 1:
        return values[0], values[0]
    if len(values) != 2:
        raise argparse.ArgumentTypeError(f"expected N or HxW, got {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vaekit", description="Autoencoders and VAEs for unlabeled data.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model and write its run folder")
    t.add_argument("--preset", choices=sorted(PRESETS), help="settings of a seed article")
    t.add_argument("--dataset", help="data spec: digits (default), mnist, fashion-mnist, binarized-mnist, "
                                      "folder:PATH, npy:PATH, npz:PATH, csv:PATH")
    t.add_argument("--data-dir", help="folder with the dataset files (then $VAEKIT_DATA, then the cache)")
    t.add_argument("--binarize", choices=["none", "dynamic"])
    t.add_argument("--val-fraction", type=float)
    t.add_argument("--image-size", type=_size, help="folder data: resize images to N or HxW")
    t.add_argument("--channels", type=int, choices=[1, 3], help="folder data: 1 (grayscale) or 3 (RGB)")
    t.add_argument("--model", choices=["vae"])
    t.add_argument("--hidden", type=_int_tuple, help="hidden widths, e.g. 400 or 512,256")
    t.add_argument("--latent-dim", type=int)
    t.add_argument("--likelihood", choices=["auto", "bernoulli", "gaussian"])
    t.add_argument("--epochs", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--optimizer", choices=["adam", "rmsprop"])
    t.add_argument("--lr", type=float)
    t.add_argument("--seed", type=int)
    t.add_argument("--grad-clip", type=float, help="clip the gradient norm to this value")
    t.add_argument("--device", help="auto (default: CUDA when present), cpu, cuda, cuda:1")
    t.add_argument("--precision", choices=["auto", "fp32", "bf16"],
                   help="bf16 autocast where the hardware has it (auto, the default) or plain fp32")
    t.add_argument("--run-dir", help="run folder (default runs/<dataset>-<model>-<time>)")
    t.add_argument("--resume", metavar="RUN", help="continue this run from its last checkpoint")
    t.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    t.add_argument("--no-plots", action="store_true", help="skip the pictures (report.html is still written)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="test-split loss per sample of a trained run")
    e.add_argument("run")
    e.add_argument("--data", help="data spec to evaluate on instead of the run's test split")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--json", action="store_true", help="print JSON")
    e.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("sample", help="decode new items from the prior")
    s.add_argument("run")
    s.add_argument("-n", type=int, default=64)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True, help="PNG grid (.png) or arrays (.npz)")
    s.add_argument("--overwrite", action="store_true")
    s.set_defaults(func=cmd_sample)

    r = sub.add_parser("reconstruct", help="test originals above their reconstructions")
    r.add_argument("run")
    r.add_argument("-n", type=int, default=8)
    r.add_argument("--data", help="data spec to reconstruct instead of the run's test split")
    r.add_argument("--out", required=True, help="PNG grid (.png) or arrays (.npz)")
    r.add_argument("--overwrite", action="store_true")
    r.set_defaults(func=cmd_reconstruct)

    p = sub.add_parser("plot", help="one picture of a run: latent, manifold, interpolate")
    kinds = p.add_subparsers(dest="kind", required=True)
    pl = kinds.add_parser("latent", help="test posterior means coloured by label (PCA to 2-D when L > 2)")
    pm = kinds.add_parser("manifold", help="decoded grid of the latent plane at Gaussian quantiles")
    pm.add_argument("--n", type=int, default=20, help="grid size n x n")
    pi = kinds.add_parser("interpolate", help="decoded path between two test items' latent codes")
    pi.add_argument("--from", dest="i", type=int, default=0, help="test item index")
    pi.add_argument("--to", dest="j", type=int, default=1, help="test item index")
    pi.add_argument("--steps", type=int, default=10)
    for q in (pl, pm, pi):
        q.add_argument("run")
        q.add_argument("--out", help="PNG file (default: <run>/<picture>.png)")
        q.set_defaults(func=cmd_plot)

    rp = sub.add_parser("report", help="rebuild all pictures and report.html of a run")
    rp.add_argument("run")
    rp.set_defaults(func=cmd_report)
    return parser


def cmd_train(args: argparse.Namespace) -> int:
    common = dict(progress=not args.quiet, pictures=not args.no_plots)
    if args.resume:
        result = api.resume(args.resume, epochs=args.epochs, **common)
    else:
        result = api.train(
            args.preset, run_dir=args.run_dir, overwrite=args.overwrite, **common,
            dataset=args.dataset, data_dir=args.data_dir, binarize=args.binarize, val_fraction=args.val_fraction,
            image_size=args.image_size, channels=args.channels, model=args.model, hidden=args.hidden,
            latent_dim=args.latent_dim, likelihood=args.likelihood, epochs=args.epochs,
            batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr, seed=args.seed, device=args.device, grad_clip=args.grad_clip,
            precision=args.precision)
    test = ", ".join(f"{k} {v:.3f}" for k, v in result.test.items())
    print(f"run folder: {result.run_dir}\ntest per sample: {test}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    result = api.evaluate(args.run, args.data, seed=args.seed)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['n']} items: loss {result['loss']:.3f} nats = recon {result['recon']:.3f} "
              f"+ kl {result['kl']:.3f}")
    return 0


def _check_out(path: str, overwrite: bool, suffixes: tuple[str, ...]) -> Path:
    out = Path(path)
    if out.suffix.lower() not in suffixes:
        raise VaekitError(f"{out}: output must end in {' or '.join(suffixes)}")
    if out.exists() and not overwrite:
        raise VaekitError(f"{out}: already exists; pass --overwrite to replace it")
    if not out.parent.is_dir():
        raise VaekitError(f"{out}: folder {out.parent} does not exist")
    return out


def _write_items(out: Path, arrays: dict[str, np.ndarray], grid: np.ndarray, n_cols: int) -> None:
    from .plots import png_bytes, image_grid
    from .runs import atomic_write
    import io

    if out.suffix.lower() == ".npz":
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        atomic_write(out, buf.getvalue())
    else:
        if grid.ndim != 4:
            raise VaekitError(f"{out}: the model's items are not images; write .npz instead")
        atomic_write(out, png_bytes(image_grid(grid, n_cols)))


def cmd_sample(args: argparse.Namespace) -> int:
    out = _check_out(args.out, args.overwrite, (".png", ".npz"))
    x = api.sample(args.run, args.n, seed=args.seed)
    _write_items(out, {"x": x}, x, int(np.ceil(np.sqrt(len(x)))))
    print(f"wrote {len(x)} samples to {out}")
    return 0


def cmd_reconstruct(args: argparse.Namespace) -> int:
    out = _check_out(args.out, args.overwrite, (".png", ".npz"))
    originals, recons = api.reconstruct(args.run, args.n, args.data)
    _write_items(out, {"x": originals, "reconstruction": recons},
                 np.concatenate([originals, recons]), len(originals))
    print(f"wrote {len(originals)} originals and reconstructions to {out}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    options = {"latent": {}, "manifold": {"n": args.n} if args.kind == "manifold" else {},
               "interpolate": {"i": args.i, "j": args.j, "steps": args.steps} if args.kind == "interpolate" else {}}
    if args.out:
        _check_out(args.out, True, (".png",))
    info = api.plot(args.run, args.kind, args.out, **options[args.kind])
    name = {"latent": "latent.png", "manifold": "manifold.png", "interpolate": "interpolation.png"}[args.kind]
    print(f"wrote {args.out or Path(args.run) / name}" + (f"  {json.dumps(info)}" if info else ""))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    print(f"wrote {api.report(args.run)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except VaekitError as e:
        if args.debug:
            raise
        print(f"vaekit: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("vaekit: interrupted; the last completed epoch's checkpoint is kept (resume with --resume RUN)",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""Command line: ``vaekit <command> ...`` and ``python -m vaekit <command> ...``.

Each subcommand parses its flags and calls one function of ``vaekit.api``. User errors print one
line and exit with code 2 (``--debug`` shows the traceback instead).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import tempfile
import types
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from . import __version__, api, distributed
from .config import PRESETS, DataConfig, ModelConfig, TrainConfig, literal_choices
from .errors import VaekitError
from .models import MODELS

EXIT_USAGE = 2
DATA_DIR_HELP = ("folder with the named dataset's files, or a root holding <dataset>/ (default: $VAEKIT_DATA, "
                 "else the folder saved in the run, then the cache); files are checked by SHA-256")
# One example per subcommand, shown at the end of its --help.
EXAMPLES = {
    "train": "vaekit train --dataset mnist --data-dir ../shared/data --epochs 10",
    "evaluate": "vaekit evaluate runs/mnist-vae-20261121-101500 --nll --k 5000",
    "sample": "vaekit sample runs/mnist-vae-20261121-101500 -n 64 --out samples.png",
    "reconstruct": "vaekit reconstruct runs/mnist-vae-20261121-101500 -n 8 --out recon.png",
    "encode": "vaekit encode runs/mnist-vae-20261121-101500 --input mnist:test --out codes.npy --dtype float16",
    "decode": "vaekit decode runs/mnist-vae-20261121-101500 --input codes.npy --out decoded/",
    "denoise": "vaekit denoise runs/mnist-ae-20261121-101500 --input npz:noisy.npz --out clean.npz",
    "anomalies": "vaekit anomalies runs/mnist-vae-20261121-101500 --input fashion-mnist:test --out scores.csv",
    "plot": "vaekit plot manifold runs/mnist-vae-20261121-101500 --n 15",
    "latent": "vaekit plot latent runs/mnist-vae-20261121-101500",
    "manifold": "vaekit plot manifold runs/mnist-vae-20261121-101500 --n 15 --out manifold15.png",
    "interpolate": "vaekit plot interpolate runs/mnist-vae-20261121-101500 --from-class 3 --to-class 7",
    "report": "vaekit report runs/mnist-vae-20261121-101500",
    "export": "vaekit export runs/mnist-vae-20261121-101500 --format onnx",
    "explore": "vaekit explore runs/mnist-vae-20261121-101500 --port 8000",
}


def _int_tuple(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    return values


def _size(text: str) -> tuple[int, int]:
    values = _int_tuple(text.replace("x", ","))
    if len(values) == 1:
        values = (values[0], values[0])
    if len(values) != 2 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected N or HxW with positive sizes, got {text!r}")
    return values


_TYPES = {int: int, float: float, str: str}
SETTING_NAMES = [f.name for section in (DataConfig, ModelConfig, TrainConfig) for f in fields(section)
                 if f.metadata.get("flag", True)]


def _add_settings(parser: argparse.ArgumentParser) -> None:
    """A flag for every config field, from its declaration in config.py: help, choices (a ``Literal`` type or
    the models' registry), parser. Every default is None: a flag not given falls through to the preset and the
    dataclass default (``build_config``)."""
    for section in (DataConfig, ModelConfig, TrainConfig):
        hints = typing.get_type_hints(section)
        for f in fields(section):
            meta = f.metadata
            if not meta.get("flag", True):
                continue
            hint = hints[f.name]
            optional = typing.get_origin(hint) in (typing.Union, types.UnionType)  # X | None: the X
            base = next(a for a in typing.get_args(hint) if a is not type(None)) if optional else hint
            kwargs: dict[str, Any] = {"dest": f.name, "help": meta["help"], "default": None}
            choices = literal_choices(hint) or meta.get("choices")
            if choices == "models":
                choices = tuple(sorted(MODELS))
            if base is bool:  # --x and --no-x: a preset's True can be turned off
                kwargs["action"] = argparse.BooleanOptionalAction
            elif "parse" in meta:
                kwargs["type"] = {"size": _size, "positive": _positive, "count": _count}[meta["parse"]]  # config.setting's hint
            elif typing.get_origin(base) is tuple:
                kwargs["type"] = _int_tuple
            elif choices:
                kwargs["type"] = type(choices[0])
            else:
                kwargs["type"] = _TYPES[base]
            if choices:
                kwargs["choices"] = list(choices)
            parser.add_argument("--" + f.name.replace("_", "-"), *meta.get("aliases", ()), **kwargs)


class _Parser(argparse.ArgumentParser):
    """argparse with the one-line error contract: ``vaekit: error: ...`` and exit code 2, no usage dump."""

    def error(self, message: str):
        print(f"vaekit: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="vaekit", description="Autoencoders and VAEs for unlabeled data.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    parser.add_argument("--version", action="version", version=f"vaekit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model and write its run folder")
    t.add_argument("--preset", choices=sorted(PRESETS), help="settings of a seed article")
    _add_settings(t)
    t.add_argument("--run-dir", help="run folder (default runs/<dataset>-<model>-<time>)")
    t.add_argument("--resume", metavar="RUN", help="continue this run from its last checkpoint")
    t.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    t.add_argument("--no-plots", action="store_true", help="skip the pictures (report.html is still written)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)

    e = _run_command(sub, "evaluate", "test-split loss per sample of a trained run (and -log p(x))", cmd_evaluate,
                     inp="data spec to evaluate on instead of the run's test split",
                     several="several runs of the same data are scored as their uniform mixture (with --nll)")
    e.add_argument("--seed", type=int, default=0, help="seed of the sampled z (and of --nll); default 0")
    e.add_argument("--json", action="store_true", help="print JSON")
    e.add_argument("--nll", action="store_true", help="importance-sampled estimate of -log p(x)")
    e.add_argument("--k", type=int, default=5000, help="importance samples per item for --nll (default 5000)")
    e.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="--nll network passes: auto is bf16 where the CPU/GPU has it (0.003 nats from fp32 on MNIST)")
    e.add_argument("--proposal-steps", type=_count, default=0,
                   help="--nll: move q per item by this many Adam steps before sampling (a tighter estimate for the "
                        "same k; default 0, q as trained)")

    s = _run_command(sub, "sample", "decode new items from the prior (augmentation)", cmd_sample,
                     out="PNG grid (.png), arrays (.npz), or a folder of PNGs (DIR/)", data=False)
    s.add_argument("-n", type=int, default=64, help="number of items to decode (default 64)")
    s.add_argument("--seed", type=int, default=0, help="seed of the prior draws (default 0)")
    s.add_argument("--draw", action="store_true",
                   help="draw values from p(x | z) instead of showing its mean (for an autoregressive likelihood "
                        "the exact samples, pixel by pixel)")
    s.add_argument("--class", dest="label", default=None, metavar="CLASS",
                   help="a model trained on labels: decode every item as this class, as the run's labels name it "
                        "(a dataset's class index, e.g. 3 on MNIST, or a name an estimator was fitted on; default: "
                        "the uniform mixture of the classes)")
    r = _run_command(sub, "reconstruct", "test originals above their reconstructions", cmd_reconstruct,
                     inp="data spec to reconstruct instead of the run's test split",
                     out="PNG grid (.png) or arrays (.npz)")
    r.add_argument("-n", type=_positive, default=8, help="number of test items shown (default 8)")
    en = _run_command(sub, "encode", "codes of items (posterior means): compression, dimension reduction",
                      cmd_encode, inp="data spec (default: the run's test split)",
                      out="codes as .npy (or .npz with labels)")
    en.add_argument("--dtype", choices=["float32", "float16"], default="float32",
                    help="dtype of the saved codes (default float32; float16 halves the file)")
    _run_command(sub, "decode", "items decoded from codes", cmd_decode, inp="codes .npy (N, L) or .npz with 'codes'",
                 inp_required=True, out=".npz, a .png grid, or a folder of PNGs (DIR/)", data=False)
    _run_command(sub, "denoise", "clean noisy items with a (denoising) model", cmd_denoise,
                 inp="data spec: npz:PATH, folder:PATH, ...", inp_required=True,
                 out=".npz, a .png grid, or a folder of PNGs (DIR/)")
    an = _run_command(sub, "anomalies", "anomaly scores, threshold and flags (AUROC with labels)", cmd_anomalies,
                      inp="data spec (default: the run's test split)", out="scores .csv")
    an.add_argument("--score", choices=["mse", "recon", "elbo"], default="mse",
                    help="mse: squared reconstruction error (default); recon: -log p(x|z); elbo: negative ELBO")
    an.add_argument("--samples", type=_count, default=0, help="Monte Carlo draws of z for --score elbo (0: at the mean)")
    an.add_argument("--contamination", type=float, default=0.01,
                    help="share of the training data above the threshold (default 0.01)")
    an.add_argument("--normal-class", type=int, help="items of other classes are true anomalies (for AUROC)")
    an.add_argument("--plot", help="picture (default: anomalies.png beside --out)")

    p = sub.add_parser("plot", help="one picture of a run: latent, manifold, interpolate")
    kinds = p.add_subparsers(dest="kind", required=True, help="the picture: latent, manifold or interpolate")
    pl = kinds.add_parser("latent", help="test posterior means coloured by label (PCA to 2-D when L > 2)")
    pm = kinds.add_parser("manifold", help="decoded grid of the latent plane at Gaussian quantiles")
    pm.add_argument("--n", type=int, default=20, help="grid size n x n")
    pi = kinds.add_parser("interpolate", help="decoded path between two test items' latent codes")
    pi.add_argument("--from-index", "--from", dest="i", type=int, metavar="N",
                    help="index (0-based) of the first item in the test split (default 0)")
    pi.add_argument("--to-index", "--to", dest="j", type=int, metavar="N", help="index of the last test item (default 1)")
    pi.add_argument("--from-class", metavar="CLASS", help="start at the first test item of this class (a label or class name)")
    pi.add_argument("--to-class", metavar="CLASS", help="end at the first test item of this class")
    pi.add_argument("--steps", type=int, default=10, help="decoded points between the two items (default 10)")
    for q in (pl, pm, pi):
        q.add_argument("run", help="run folder")
        q.add_argument("--out", help="PNG file (default: <run>/<picture>.png)")
        q.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
        q.add_argument("--data-dir", help=DATA_DIR_HELP)
        q.set_defaults(func=cmd_plot)

    ex = sub.add_parser("export", help="the encoder and decoder as ONNX models (dynamic batch)")
    ex.add_argument("run", help="run folder (or a model .safetensors file)")
    ex.add_argument("--format", choices=["onnx"], default="onnx", help="the exported graphs' format (default onnx)")
    ex.add_argument("--out", help="output folder (default: <run>/onnx)")
    ex.add_argument("--overwrite", action="store_true", help="replace existing exported files")
    ex.set_defaults(func=cmd_export)

    rp = sub.add_parser("report", help="redraw the pictures (with the settings they were made with) and report.html")
    rp.add_argument("run", help="run folder")
    rp.add_argument("--data-dir", help=DATA_DIR_HELP)
    rp.set_defaults(func=cmd_report)

    xp = sub.add_parser("explore", help="the latent space as a live web page (decode any point, sliders, ...)")
    xp.add_argument("run", help="run folder")
    xp.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    xp.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    xp.add_argument("--data-dir", help=DATA_DIR_HELP)
    xp.add_argument("--input", "--data", dest="input",
                    help="data spec of the items to show instead of the run's test split (a model fitted in Python "
                         "on an array has none of its own)")
    xp.set_defaults(func=cmd_explore)
    _add_examples(sub)
    return parser


def _add_examples(sub) -> None:
    """An example at the end of every subcommand's --help (and of each plot kind's)."""
    for name, p in sub.choices.items():
        p.formatter_class = argparse.RawDescriptionHelpFormatter
        p.epilog = f"example:\n  {EXAMPLES[name]}"
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                _add_examples(action)


def _run_command(sub, name: str, help: str, func, *, inp: str | None = None, inp_required: bool = False,
                 out: str | None = None, data: bool = True, several: str | None = None) -> argparse.ArgumentParser:
    """A subcommand over a run folder (or, with ``several``, one or more: what more than one means), with the
    shared --input/--data, --data-dir, --out and --overwrite options."""
    p = sub.add_parser(name, help=help)
    if several:
        p.add_argument("run", nargs="+", help=f"run folder (or a model .safetensors file); {several}")
    else:
        p.add_argument("run", help="run folder (or a model .safetensors file)")
    if data:
        p.add_argument("--data-dir", help=DATA_DIR_HELP)
    if inp is not None:
        p.add_argument("--input", "--data", dest="input", required=inp_required, help=inp)
    if out is not None:
        p.add_argument("--out", required=True, help=out)
        p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=func)
    return p


def cmd_train(args: argparse.Namespace) -> int:
    common = dict(progress=not args.quiet, pictures=not args.no_plots)
    if args.resume:
        # what the command line set: a setting's False (--no-compile) counts, another flag's default False does not
        given = [k for k, v in vars(args).items() if (v is not None if k in SETTING_NAMES else v not in (None, False))
                 and k not in ("resume", "epochs", "quiet", "no_plots", "debug", "func", "command")]
        if given:
            raise VaekitError(f"--resume continues a run with its saved config; only --epochs may change "
                              f"(got {', '.join('--' + k.replace('_', '-') for k in given)})")
        result = api.resume(args.resume, epochs=args.epochs, **common)
    else:
        settings = {name: getattr(args, name) for name in SETTING_NAMES}
        result = api.train(args.preset, run_dir=args.run_dir, overwrite=args.overwrite, **common, **settings)
    if distributed.is_main():
        test = ", ".join(f"{k} {v:.3f}" for k, v in result.test.items())
        print(f"run folder: {result.run_dir}\ntest per sample: {test}\nreport: {result.run_dir / 'report.html'}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    result = api.evaluate(args.run, args.input, seed=args.seed, nll=args.nll, k=args.k, precision=args.precision,
                          proposal_steps=args.proposal_steps, progress=not args.json, data_dir=args.data_dir)
    proposal = f", q refined per item in {args.proposal_steps} steps" if args.proposal_steps else ""
    if args.json:
        print(json.dumps(result))
        return 0
    if "members" in result:  # a mixture of the runs
        for run, member in zip(args.run, result["members"]):
            print(f"{run}: -log p(x) ~= {member['nll']:.3f} +- {member['nll_stderr']:.3f} nats, loss (negative "
                  f"ELBO) {member['loss']:.3f}")
        print(f"{result['n']} items, the uniform mixture of the {len(args.run)} runs: -log p(x) ~= "
              f"{result['nll']:.3f} +- {result['nll_stderr']:.3f} nats ({result['bits_per_dim']:.4f} bits/dim), "
              f"importance sampling with k = {result['k']} per run ({result['nll_precision']} network passes"
              f"{proposal})")
        return 0

    def terms(prefix: str = "") -> str:
        return (f"{result[prefix + 'loss']:.3f} nats = recon {result[prefix + 'recon']:.3f} "
                f"+ kl {result[prefix + 'kl']:.3f}")
    denoiser = "clean_loss" in result  # its first terms are for corrupted inputs, as in its validation
    print(f"{result['n']} items: loss (negative ELBO) {terms()}" + (" (inputs corrupted as in training)" if denoiser
                                                                    else ""))
    if denoiser:
        print(f"clean inputs: loss {terms('clean_')}")
    if args.nll:
        print(f"-log p(x) ~= {result['nll']:.3f} +- {result['nll_stderr']:.3f} nats "
              f"({result['bits_per_dim']:.4f} bits/dim), importance sampling with k = {result['k']} "
              f"({result['nll_precision']} network passes{proposal})")
    return 0


def _int_at_least(floor: int) -> Callable[[str], int]:
    """An argparse type: an integer >= floor (argparse names the flag: "--samples: must be >= 0, got -1")."""
    def parse(text: str) -> int:
        value = int(text)
        if value < floor:
            raise argparse.ArgumentTypeError(f"must be >= {floor}, got {value}")
        return value
    parse.__name__ = "int"  # argparse's message for a non-integer: "invalid int value: 'x'"
    return parse


_positive, _count = _int_at_least(1), _int_at_least(0)


def _check_out(path: str, overwrite: bool, suffixes: tuple[str, ...], folder: bool = False) -> Path:
    """Validate an output path before any work: suffix, parent folder, no clobbering without --overwrite."""
    out = Path(path)
    is_folder = folder and (path.endswith(("/", "\\")) or out.suffix == "")
    if not is_folder and out.suffix.lower() not in suffixes:
        kinds = " or ".join(suffixes) + (" or a folder (DIR/)" if folder else "")
        raise VaekitError(f"{out}: output must end in {kinds}")
    if out.exists() and not overwrite and (out.is_file() or any(out.iterdir())):
        raise VaekitError(f"{out}: already exists; pass --overwrite to replace it")
    if not out.parent.is_dir():
        raise VaekitError(f"{out}: folder {out.parent} does not exist")
    return out


def _write_items(out: Path, arrays: dict[str, np.ndarray], grid: np.ndarray, n_cols: int) -> None:
    """Write items as .npz arrays, one .png grid, or a folder of PNGs (one per item), all atomically."""
    from .plots import image_grid, png_bytes
    from .runs import atomic_write

    if out.suffix.lower() == ".npz":
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        atomic_write(out, buf.getvalue())
        return
    if grid.ndim != 4:
        raise VaekitError(f"{out}: the model's items are not images; write .npz instead")
    if out.suffix.lower() == ".png":
        atomic_write(out, png_bytes(image_grid(grid, n_cols)))
        return
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; the folder should be like any the user makes
    try:
        width = len(str(len(grid) - 1))
        for i, item in enumerate(grid):
            pixels = (np.clip(item, 0, 1) * 255 + 0.5).astype(np.uint8)
            Image.fromarray(pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0)).save(
                tmp / f"{i:0{width}d}.png")
        if out.exists():
            _remove_png_folder(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask() -> int:
    from .runs import _UMASK

    return _UMASK


def _remove_png_folder(folder: Path) -> None:
    """Delete a folder of item PNGs that an earlier command wrote; refuse anything else (never a user's folder)."""
    entries = list(folder.iterdir())
    if folder.resolve() in (Path.cwd().resolve(), *Path.cwd().resolve().parents) or \
            not all(e.is_file() and e.suffix == ".png" and e.stem.isdigit() for e in entries):
        raise VaekitError(f"{folder}: holds files other than numbered PNGs; vaekit only replaces a folder of "
                          "items it wrote itself, so choose an empty or new folder")
    shutil.rmtree(folder)


def cmd_sample(args: argparse.Namespace) -> int:
    out = _check_out(args.out, args.overwrite, (".png", ".npz"), folder=True)
    x = api.sample(args.run, args.n, seed=args.seed, draw=args.draw, label=args.label)
    _write_items(out, {"x": x}, x, int(np.ceil(np.sqrt(len(x)))))
    print(f"wrote {len(x)} samples to {out}")
    return 0


def cmd_reconstruct(args: argparse.Namespace) -> int:
    out = _check_out(args.out, args.overwrite, (".png", ".npz"))
    originals, recons = api.reconstruct(args.run, args.n, args.input, data_dir=args.data_dir)
    _write_items(out, {"x": originals, "reconstruction": recons},
                 np.concatenate([originals, recons]), len(originals))
    print(f"wrote {len(originals)} originals and reconstructions to {out}")
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    out = _check_out(args.out, args.overwrite, (".npy", ".npz"))
    from .runs import atomic_write

    model = api.open_run(args.run)  # once, for both calls
    items = api.input_data(model, args.input, data_dir=args.data_dir)
    codes = api.encode(model, items=items).astype(args.dtype)
    buf = io.BytesIO()
    if out.suffix == ".npz":
        np.savez(buf, codes=codes, **({"y": items.y} if items.y is not None else {}))
    else:
        np.save(buf, codes)
    atomic_write(out, buf.getvalue())
    raw = items.x[0].nbytes
    per_item = codes.shape[1] * codes.itemsize
    print(f"wrote {codes.shape[0]} codes of {codes.shape[1]} {args.dtype} to {out}: {per_item} bytes per item "
          f"against {raw} bytes raw ({items.x.dtype}), {raw / per_item:.1f}x smaller")
    return 0


def _read_codes(path: str) -> np.ndarray:
    from .data.formats import read_array_file

    return read_array_file(Path(path))[0]


def cmd_decode(args: argparse.Namespace) -> int:
    out = _check_out(args.out, args.overwrite, (".png", ".npz"), folder=True)
    x = api.decode(args.run, _read_codes(args.input))
    _write_items(out, {"x": x}, x, int(np.ceil(np.sqrt(len(x)))))
    print(f"wrote {len(x)} decoded items to {out}")
    return 0


def cmd_denoise(args: argparse.Namespace) -> int:
    out = _check_out(args.out, args.overwrite, (".png", ".npz"), folder=True)
    noisy, clean = api.denoise(args.run, args.input, data_dir=args.data_dir)
    _write_items(out, {"x": clean, "input": noisy}, clean, int(np.ceil(np.sqrt(len(clean)))))
    print(f"wrote {len(clean)} denoised items to {out}")
    return 0


def cmd_anomalies(args: argparse.Namespace) -> int:
    out = _check_out(args.out, args.overwrite, (".csv",))
    plot = _check_out(args.plot or str(out.with_name("anomalies.png")), args.overwrite, (".png",))
    from .plots import anomalies_png
    from .runs import atomic_write

    found, items = api.anomalies(args.run, args.input, score=args.score, contamination=args.contamination,
                                 samples=args.samples, normal_class=args.normal_class, data_dir=args.data_dir)
    lines = ["index,score,anomaly" + (",label" if items.y is not None else "")]
    for i, (score, flag) in enumerate(zip(found.scores, found.flags)):
        lines.append(f"{i},{score:.6g},{int(flag)}" + (f",{items.y[i]}" if items.y is not None else ""))
    atomic_write(out, ("\n".join(lines) + "\n").encode())
    order = np.argsort(found.scores)
    images = items.as_float() if items.is_image else None
    most = images[order[::-1][:8]] if images is not None else None
    least = images[order[:8]] if images is not None else None
    title = f"{items.name}: {args.score} scores, {int(found.flags.sum())} of {len(found.scores)} flagged"
    if found.auroc is not None:
        title += f"; AUROC {found.auroc:.4f}, AP {found.average_precision:.4f}"
    atomic_write(plot, anomalies_png(most, least, found.scores, found.threshold, found.is_anomaly, title))
    print(f"wrote {out} and {plot}: {title}; threshold {found.threshold:.4g} "
          f"(training scores' {1 - args.contamination:.3g} quantile)")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    options = {"latent": {}, "manifold": {"n": args.n} if args.kind == "manifold" else {},
               "interpolate": {"i": args.i, "j": args.j, "steps": args.steps, "from_class": args.from_class,
                               "to_class": args.to_class} if args.kind == "interpolate" else {}}
    if args.kind == "interpolate":
        for index, label, end in ((args.i, args.from_class, "from"), (args.j, args.to_class, "to")):
            if index is not None and label is not None:
                raise VaekitError(f"--{end}-index and --{end}-class both pick the {end} item; give one of them")
    if args.out:
        _check_out(args.out, args.overwrite, (".png",))
    info = api.plot(args.run, args.kind, args.out, data_dir=args.data_dir, **options[args.kind])
    name = {"latent": "latent.png", "manifold": "manifold.png", "interpolate": "interpolation.png"}[args.kind]
    print(f"wrote {args.out or Path(args.run) / name}" + (f"  {json.dumps(info)}" if info else ""))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    print(f"wrote {api.report(args.run, data_dir=args.data_dir)}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    paths = api.export(args.run, args.format, out=args.out, overwrite=args.overwrite)
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def cmd_explore(args: argparse.Namespace) -> int:
    from .explore import explore

    # returns on Ctrl-C, after a clean shutdown
    explore(args.run, host=args.host, port=args.port, data_dir=args.data_dir, data=args.input)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2, already printed as one line)
        return int(e.code or 0)
    try:
        return args.func(args)
    except VaekitError as e:
        if args.debug:
            raise
        print(f"vaekit: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as e:  # training says what its run folder kept (TrainingInterrupted)
        print(f"vaekit: {e or 'interrupted'}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

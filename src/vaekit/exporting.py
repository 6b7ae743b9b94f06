"""Export a trained model to other runtimes: the encoder and the decoder as ONNX graphs with a dynamic batch.

``RUN/onnx/`` gets ``encoder.onnx`` (x -> mean, logvar; a plain autoencoder's x -> code; M2's also
class_logits), ``decoder.onnx`` (z, and M2's class y, -> the likelihood's mean, shaped like the data) and
``model.json``, which names the inputs, outputs and
shapes and, for CSV runs, the standardisation the model expects its input in.

(This module is ``exporting``, not ``export``: ``vaekit.export`` is the API function, and importing a submodule
of the same name would replace that attribute of the package.)
"""
from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from . import runs
from .errors import RunError, VaekitError

ONNX_DIR, ENCODER_FILE, DECODER_FILE, INFO_FILE = "onnx", "encoder.onnx", "decoder.onnx", "model.json"
INFO_FORMAT = "vaekit-onnx/1"


class _Encoder(nn.Module):
    """The encoder as a graph of its own: x (B, *input_shape) -> the model's encoder outputs, each (B, L)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.model.encoder_outputs(x).values())


class _Decoder(nn.Module):
    """The model's decoder inputs (z (B, L); and y (B, K) for a model of labels) -> the likelihood's mean
    (B, *input_shape), e.g. the sigmoid of Bernoulli logits."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.model.decode_mean(z) if y is None else self.model.decode_mean(z, y)


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401  (the exporter builds onnx protos)
        import onnxscript  # noqa: F401  (torch's exporter translates its graph with it)
    except ImportError as e:
        raise VaekitError(f"ONNX export needs the {e.name or 'onnx'} package: pip install 'vaekit[onnx]'") from None


def _onnx_bytes(module: nn.Module, examples: dict[str, torch.Tensor], output_names: list[str]) -> bytes:
    """Trace ``module`` on its example inputs (named as its forward's arguments) with torch's exporter
    (torch.export based) and serialise it, the batch axis (the first of every input) dynamic.

    The example batches have 2 items: the tracer specialises a dimension of size 1, which would fix the batch.
    """
    import onnx

    batch = torch.export.Dim("batch")
    exporter_log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)  # "torchvision is not installed. Skipping torchvision::nms" and the like
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecation notes from torch.export's internals, not about this graph
            program = torch.onnx.export(module, tuple(examples.values()), input_names=list(examples),
                                        output_names=output_names,
                                        dynamic_shapes={name: {0: batch} for name in examples}, dynamo=True,
                                        verbose=False)
    except Exception as e:  # a model the exporter cannot trace: one line, not torch.export's page of trace
        raise VaekitError(f"ONNX export failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}") from e
    finally:
        exporter_log.setLevel(level)
    proto = program.model_proto
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def _batch(*dims: int) -> list:
    """A shape in model.json: the dynamic batch axis, then the fixed ones."""
    return ["batch", *dims]


def _default_out(run: Path) -> Path:
    return (run if run.is_dir() else run.parent) / ONNX_DIR


def export_onnx(run: str | os.PathLike, out_dir: str | os.PathLike | None = None, *,
                overwrite: bool = False) -> dict[str, Path]:
    """Write the encoder and decoder of a run (or a model ``.safetensors`` file) as ONNX models, fp32.

    Returns the paths written: ``{"encoder": ..., "decoder": ..., "info": ...}``; ``out_dir`` defaults to
    ``RUN/onnx``. Inputs are what the model takes (uint8 pixels scaled to [0, 1]; CSV features standardised
    with the ``standardize`` mean and std in ``model.json``); the decoder's output is in that same space.

    Examples
    --------
    >>> paths = export_onnx("runs/digits-vae-20261123-094500")  # doctest: +SKIP
    >>> import numpy as np, onnxruntime  # doctest: +SKIP
    >>> x = np.zeros((5, 1, 8, 8), np.float32)  # 5 digits items, as the model takes them  # doctest: +SKIP
    >>> mean, logvar = onnxruntime.InferenceSession(paths["encoder"]).run(None, {"x": x})  # doctest: +SKIP
    """
    _require_onnx()
    run = Path(run)
    out = Path(out_dir) if out_dir is not None else _default_out(run)
    paths = {"encoder": out / ENCODER_FILE, "decoder": out / DECODER_FILE, "info": out / INFO_FILE}
    if out.exists() and not out.is_dir():
        raise RunError(f"{out}: exists and is not a folder")
    existing = [p for p in paths.values() if p.exists()]
    if existing and not overwrite:
        raise RunError(f"{existing[0]}: already exists; pass --overwrite to replace it")
    model, cfg, standardizer = runs.load_model(run, "cpu")  # fp32 on the CPU: the graphs hold fp32 weights
    if model.likelihood.sequential_mean:
        raise VaekitError(f"{run}: the {model.likelihood.name} likelihood fills in its values one at a time, which "
                          "an ONNX decoder would unroll into as many steps; its ONNX export is not supported")
    model.eval()
    shape, latent = tuple(cfg.model.input_shape), cfg.model.latent_dim
    x = torch.zeros(2, *shape)  # (2, *input_shape)
    with torch.no_grad():
        outputs = model.encoder_outputs(x)  # e.g. {"mean": (2, L), "logvar": (2, L)}
    decoder_inputs = model.decoder_inputs()  # e.g. {"z": L}; M2 also {"y": K}
    encoder = _onnx_bytes(_Encoder(model), {"x": x}, list(outputs))
    decoder = _onnx_bytes(_Decoder(model), {name: torch.zeros(2, size) for name, size in decoder_inputs.items()},
                          ["x_mean"])
    info = {
        "format": INFO_FORMAT, "model": cfg.model.model, "arch": cfg.model.arch, "likelihood": cfg.model.likelihood,
        "latent_dim": latent, "input_shape": list(shape), "dtype": "float32",
        "encoder": {"file": ENCODER_FILE, "inputs": {"x": _batch(*shape)},
                    "outputs": {name: _batch(*value.shape[1:]) for name, value in outputs.items()}},
        "decoder": {"file": DECODER_FILE, "inputs": {name: _batch(size) for name, size in decoder_inputs.items()},
                    "outputs": {"x_mean": _batch(*shape)}},
        "input": "the items as the model takes them: uint8 pixels / 255, other data as stored"
                 + ("; features standardised: (x - standardize.mean) / standardize.std" if standardizer else ""),
        "standardize": None if standardizer is None else {"mean": standardizer.mean.tolist(),
                                                          "std": standardizer.std.tolist()},
    }
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunError(f"{out}: cannot make the folder ({e.strerror or e})") from None
    runs.atomic_write(paths["encoder"], encoder)
    runs.atomic_write(paths["decoder"], decoder)
    runs.write_json(paths["info"], info)  # last: a model.json means both graphs beside it are complete
    return paths

"""vaekit: autoencoders and variational autoencoders for unlabeled data."""
from .api import (anomalies, decode, denoise, encode, evaluate, export, input_data, plot, reconstruct, report,
                  resume, sample, train)
from .config import PRESETS, DataConfig, ModelConfig, RunConfig, TrainConfig, build_config
from .data import load_data, load_splits
from .errors import DataError, RunError, VaekitError
from .estimators import VAE, Autoencoder, OutlierDetector, SemiSupervisedVAE, load
from .explore import explore  # binds the function over the subpackage's name: vaekit.explore(run) serves a run

__version__ = "0.1.0"
__all__ = ["train", "resume", "evaluate", "sample", "reconstruct", "load", "input_data", "plot", "report", "encode", "decode", "denoise", "anomalies", "export",
           "explore", "VAE", "Autoencoder", "OutlierDetector", "SemiSupervisedVAE",
           "RunConfig", "DataConfig", "ModelConfig", "TrainConfig", "build_config", "PRESETS",
           "load_data", "load_splits", "VaekitError", "DataError", "RunError"]

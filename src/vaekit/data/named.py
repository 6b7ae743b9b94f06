"""The named datasets: where their files come from, their checksums, and how to parse them."""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..errors import DataError
from .download import RemoteFile, locate
from .formats import read_amat, read_idx

DIGIT_NAMES = tuple(str(i) for i in range(10))
FASHION_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


@dataclass(frozen=True)
class NamedDataset:
    name: str
    splits: dict[str, tuple[RemoteFile, ...]]  # split -> (images file, labels file?)
    mirrors: tuple[str, ...]
    class_names: tuple[str, ...] | None
    parse: str  # "idx" or "amat"


TITLES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "binarized-mnist": "binarized MNIST"}


def _idx_dataset(name, mirrors, class_names, sums):
    files = {k: RemoteFile(k, *v) for k, v in sums.items()}
    return NamedDataset(name, {
        "train": (files["train-images-idx3-ubyte.gz"], files["train-labels-idx1-ubyte.gz"]),
        "test": (files["t10k-images-idx3-ubyte.gz"], files["t10k-labels-idx1-ubyte.gz"]),
    }, mirrors, class_names, "idx")


NAMED: dict[str, NamedDataset] = {
    "mnist": _idx_dataset("mnist", (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ), DIGIT_NAMES, {
        "train-images-idx3-ubyte.gz": ("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 9912422),
        "train-labels-idx1-ubyte.gz": ("3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 28881),
        "t10k-images-idx3-ubyte.gz": ("8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 1648877),
        "t10k-labels-idx1-ubyte.gz": ("f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 4542),
    }),
    "fashion-mnist": _idx_dataset("fashion-mnist", (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    ), FASHION_NAMES, {
        "train-images-idx3-ubyte.gz": ("3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84", 26421880),
        "train-labels-idx1-ubyte.gz": ("a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845", 29515),
        "t10k-images-idx3-ubyte.gz": ("346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073", 4422102),
        "t10k-labels-idx1-ubyte.gz": ("67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5", 5148),
    }),
    # Larochelle & Murray (2011) static binarization; the mirror serves plain .amat (a local .amat.gz works too).
    "binarized-mnist": NamedDataset("binarized-mnist", {
        "train": (RemoteFile("binarized_mnist_train.amat",
                             "ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d", 78400000),),
        "valid": (RemoteFile("binarized_mnist_valid.amat",
                             "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2", 15680000),),
        "test": (RemoteFile("binarized_mnist_test.amat",
                            "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c", 15680000),),
    }, ("http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/",), None, "amat"),
}


def identify(sha256: str) -> str | None:
    """Which registered file has this SHA-256, e.g. "MNIST's t10k-images-idx3-ubyte.gz", or None."""
    for ds in NAMED.values():
        for files in ds.splits.values():
            for f in files:
                if f.sha256 == sha256:
                    return f"{TITLES.get(ds.name, ds.name)}'s {f.name}"
    return None


def mirrors_for(ds: NamedDataset) -> list[str]:
    """Mirrors to try: ``$VAEKIT_MIRROR/<dataset>/`` first when set, then the official ones."""
    extra = os.environ.get("VAEKIT_MIRROR")
    return ([extra.rstrip("/") + f"/{ds.name}/"] if extra else []) + list(ds.mirrors)


def load_named_split(name: str, split: str, data_dir) -> tuple[np.ndarray, np.ndarray | None]:
    """Images (N, 1, 28, 28) uint8 and labels (N,) int64 or None, for one split of a named dataset."""
    ds = NAMED[name]
    if split not in ds.splits:
        raise DataError(f"{name}: no split {split!r}; it has {', '.join(ds.splits)}")
    paths = [locate(name, f, data_dir, mirrors_for(ds), identify=identify) for f in ds.splits[split]]
    if ds.parse == "amat":  # 0/1 pixels, stored on the 0..255 scale every uint8 array in vaekit uses
        return (read_amat(paths[0]) * np.uint8(255)).reshape(-1, 1, 28, 28), None
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(f"{paths[0]}: expected uint8 images (N, H, W), got {images.dtype} {images.shape}")
    if labels.ndim != 1:
        raise DataError(f"{paths[1]}: expected a 1-D label array, got shape {labels.shape}")
    if len(images) != len(labels):
        raise DataError(f"{paths[1]}: {len(labels)} labels for {len(images)} images in {paths[0].name}")
    return images[:, None], labels.astype(np.int64)


"""Pictures: image grids written as PNG. Pure functions from arrays to files."""
from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
from PIL import Image

MIN_CELL = 28  # small images (8x8 digits) are scaled up by an integer factor to at least this many pixels
PAD = 2


def cell_scale(height: int) -> int:
    return max(1, math.ceil(MIN_CELL / height))


def grid_size(n_rows: int, n_cols: int, height: int, width: int) -> tuple[int, int]:
    """Pixel (width, height) of a grid of ``n_rows`` x ``n_cols`` items of ``height`` x ``width``."""
    s = cell_scale(height)
    return n_cols * (width * s + PAD) + PAD, n_rows * (height * s + PAD) + PAD


def image_grid(images: np.ndarray, n_cols: int) -> Image.Image:
    """Tile images (N, C, H, W) with values in [0, 1] into one picture, ``n_cols`` a row, on a grey frame."""
    images = np.clip(np.asarray(images, np.float32), 0.0, 1.0)
    n, c, h, w = images.shape
    n_rows = math.ceil(n / n_cols)
    s = cell_scale(h)
    width, height = grid_size(n_rows, n_cols, h, w)
    canvas = np.full((height, width, c), 0.5, np.float32)
    for i, img in enumerate(images):
        r, col = divmod(i, n_cols)
        tile = img.transpose(1, 2, 0).repeat(s, axis=0).repeat(s, axis=1)  # (H*s, W*s, C)
        y, x = PAD + r * (h * s + PAD), PAD + col * (w * s + PAD)
        canvas[y:y + h * s, x:x + w * s] = tile
    pixels = (canvas * 255 + 0.5).astype(np.uint8)
    return Image.fromarray(pixels[..., 0] if c == 1 else pixels, "L" if c == 1 else "RGB")


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def save_grid(path: Path, images: np.ndarray, n_cols: int) -> Path:
    """Write an image grid as PNG atomically."""
    from .runs import atomic_write

    atomic_write(path, png_bytes(image_grid(images, n_cols)))
    return Path(path)


# --- matplotlib figures --------------------------------------------------------------------------

def _figure_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    import matplotlib.pyplot as plt
    plt.close(fig)
    return buf.getvalue()


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt
    return plt


def scatter_png(points: np.ndarray, labels: np.ndarray | None, class_names: tuple[str, ...] | None,
                xlabel: str, ylabel: str, title: str) -> bytes:
    """2-D scatter of points (N, 2), one colour a class when labels are given, with a legend."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 6))
    size = float(np.clip(30000 / max(len(points), 1), 2, 25))  # visible dots for 200 points, no blobs for 10k
    if labels is None:
        ax.scatter(points[:, 0], points[:, 1], s=size, alpha=0.5, color="tab:blue", linewidths=0)
    else:
        cmap = plt.get_cmap("tab10" if labels.max() < 10 else "tab20")
        for c in np.unique(labels):
            name = class_names[c] if class_names is not None and c < len(class_names) else str(c)
            sel = labels == c
            ax.scatter(points[sel, 0], points[sel, 1], s=size, alpha=0.6, color=cmap(int(c) % cmap.N),
                       linewidths=0, label=name)
        ax.legend(markerscale=max(1.0, 12 / size), fontsize=8, loc="best", framealpha=0.8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return _figure_png(fig)


def curves_png(metrics: list[dict]) -> bytes:
    """Train and validation loss, reconstruction and KL per epoch, one panel each."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    epochs = [m["epoch"] for m in metrics]
    for ax, term in zip(axes, ("loss", "recon", "kl")):
        for split, style in (("train", "-"), ("val", "--")):
            values = [m.get(f"{split}_{term}") for m in metrics]
            if any(v is not None for v in values):
                ax.plot(epochs, [np.nan if v is None else v for v in values], style, label=split)
        ax.set_title({"loss": "loss (negative ELBO)", "recon": "reconstruction", "kl": "KL"}[term])
        ax.set_xlabel("epoch")
        ax.set_ylabel("nats per sample")
        ax.legend()
        ax.grid(alpha=0.3)
    return _figure_png(fig)


def confusion_png(counts: np.ndarray, class_names: tuple[str, ...], title: str) -> bytes:
    """A confusion matrix (K, K) of counts, rows the true classes, columns the predicted ones: each cell shaded
    by its share of the row and showing its count; the diagonal (right) in green, the rest in red."""
    plt = _plt()
    k = len(counts)
    share = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * k, 0.8 + 0.5 * k))
    diagonal = np.eye(k, dtype=bool)
    off = np.where(diagonal, np.nan, share)  # errors on a scale of their own: a 2 % cell still shows
    top = max(float(np.nanmax(off)) if k > 1 else 0.0, 0.05)
    ax.imshow(np.where(diagonal, share, np.nan), cmap="Greens", vmin=0, vmax=1)
    ax.imshow(off, cmap="Reds", vmin=0, vmax=top)
    shade = np.where(diagonal, share, share / top)  # 0..1: how dark each cell is drawn
    for i in range(k):
        for j in range(k):
            if counts[i, j]:
                ax.text(j, i, str(int(counts[i, j])), ha="center", va="center", fontsize=7 if k > 10 else 8,
                        color="white" if shade[i, j] > 0.6 else "black")
    ax.set_xticks(range(k), class_names, rotation=90 if max(map(len, class_names)) > 3 else 0)
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    return _figure_png(fig)


def histogram_png(values: np.ndarray, title: str, xlabel: str) -> bytes:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.hist(values, bins=50, color="tab:blue", alpha=0.8)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("items")
    return _figure_png(fig)


def anomalies_png(most: np.ndarray | None, least: np.ndarray | None, scores: np.ndarray, threshold: float,
                  is_anomaly: np.ndarray | None, title: str) -> bytes:
    """The most and least anomalous items (images, when given) above a histogram of all scores."""
    plt = _plt()
    rows = 2 if most is not None else 0
    fig = plt.figure(figsize=(9, 4 + 1.3 * rows))
    grid = fig.add_gridspec(rows + 1, 1, height_ratios=[1] * rows + [2.2])
    for r, (images, label) in enumerate(((most, "most anomalous"), (least, "least anomalous"))[:rows]):
        ax = fig.add_subplot(grid[r])
        ax.imshow(np.asarray(image_grid(images, len(images))), cmap="gray", vmin=0, vmax=255)
        ax.set_title(label, fontsize=10)
        ax.axis("off")
    ax = fig.add_subplot(grid[rows])
    bins = np.histogram_bin_edges(scores, bins=60)
    if is_anomaly is None:
        ax.hist(scores, bins=bins, color="tab:blue", alpha=0.8, label="items")
    else:
        ax.hist(scores[~is_anomaly], bins=bins, color="tab:blue", alpha=0.6, label="normal (by label)")
        ax.hist(scores[is_anomaly], bins=bins, color="tab:red", alpha=0.6, label="anomalous (by label)")
    ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3g}")
    ax.set_xlabel("anomaly score (higher = more anomalous)")
    ax.set_ylabel("items")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return _figure_png(fig)

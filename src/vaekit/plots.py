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

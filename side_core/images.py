"""Image conversions. Inside side_core images are float32 NCHW in [-1, 1]; this module is the one
place that converts to and from uint8 NHWC (files, screens)."""

from __future__ import annotations

import numpy as np
import torch


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) float in [-1, 1] -> (N, H, W, C) uint8 in [0, 255]."""
    x = ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round()
    return x.to(torch.uint8).permute(0, 2, 3, 1).numpy()


def from_uint8(x: np.ndarray) -> torch.Tensor:
    """(N, H, W, C) uint8 -> (N, C, H, W) float32 in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).float() / 127.5 - 1


def upscale_nearest(x: np.ndarray, factor: int) -> np.ndarray:
    """(..., H, W, C) uint8 -> (..., H*factor, W*factor, C): blocky, so single pixels stay visible."""
    return x.repeat(factor, axis=-3).repeat(factor, axis=-2)


def grid(images: np.ndarray, n_cols: int, pad: int = 1, pad_value: int = 255) -> np.ndarray:
    """(N, H, W, C) uint8 -> one (rows*(H+pad)+pad, cols*(W+pad)+pad, C) uint8 mosaic."""
    n, h, w, c = images.shape
    n_rows = max(1, -(-n // n_cols))
    out = np.full((n_rows * (h + pad) + pad, n_cols * (w + pad) + pad, c), pad_value, np.uint8)
    for i, image in enumerate(images):
        r, col = divmod(i, n_cols)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        out[top : top + h, left : left + w] = image
    return out


def save_png(image: np.ndarray, path) -> None:
    """(H, W, C) uint8 -> PNG file, written atomically."""
    from PIL import Image

    from side_core.store import atomic_path

    mode = "L" if image.shape[-1] == 1 else "RGB"
    with atomic_path(path) as tmp:
        Image.fromarray(image.squeeze(-1) if mode == "L" else image, mode).save(tmp, format="PNG")

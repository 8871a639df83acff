"""The periodic sample-grid PNG of the training loops (``samples/*.png`` in a run folder)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from ..checkpoint import atomic_write


def save_sample_grid(images: Tensor, path: Path, nrow: int, size: int) -> Path:
    """Tile ``images (N, 3, r, r)`` in [-1, 1] into rows of ``nrow``, each nearest-upsampled to ``size`` px
    so small images stay readable, and write the PNG atomically (a viewer never sees half a file)."""
    from torchvision.utils import save_image

    grid = images.detach().float().cpu().clamp(-1, 1)
    if grid.shape[-1] != size:
        grid = torch.nn.functional.interpolate(grid, size=(size, size), mode="nearest")
    return atomic_write(path, lambda tmp: save_image((grid + 1) / 2, tmp, nrow=nrow, padding=1, format="png"))

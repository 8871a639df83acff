"""The periodic sample-grid PNG of the training loops (``samples/*.png`` in a run folder)."""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from generative.backbones.checkpoint import atomic_write
from generative.training.tensorboard import tile_images


def save_sample_grid(images: Tensor, path: Path, nrow: int, size: int) -> Path:
    """Tile ``images (N, 3, r, r)`` in [-1, 1] into rows of ``nrow``, each nearest-upsampled to ``size`` px
    so small images stay readable (:func:`~generative.training.tensorboard.tile_images`, the grid TensorBoard
    gets too), and write the PNG atomically (a viewer never sees half a file)."""
    from torchvision.utils import save_image

    grid = tile_images(images, nrow, size)
    return atomic_write(path, lambda tmp: save_image(grid, tmp, format="png"))

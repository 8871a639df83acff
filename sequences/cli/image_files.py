"""Image files named on the command line: read as model inputs (centre-cropped and resized by
:mod:`generative.images.geometry`) and written as grids.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    import torch

__all__ = ["load_images", "save_grid"]


def load_images(specs: Sequence[str], resolution: int) -> tuple[list[Path], "torch.Tensor"]:
    """``(paths, images)`` for image files and folders ``specs`` (a folder's JPEG/PNG files, sorted, not
    recursive): images ``(N, 3, r, r)`` float in [-1, 1], centre-cropped to a square and resized."""
    import numpy as np

    from generative.backbones.registry import to_model_images
    from generative.images.geometry import square_resize
    from generative.images.imageio import list_images, read_image

    paths = list_images(specs)
    frames = np.stack([square_resize(read_image(p), resolution) for p in paths])
    return paths, to_model_images(frames)


def save_grid(path: Path, images: "torch.Tensor", nrow: int) -> None:
    """Tile ``(N, 3, r, r)`` images in [-1, 1] into rows of ``nrow`` with a 2-pixel white border."""
    import torchvision

    from generative.backbones.registry import to_uint8
    from generative.images.imageio import write_image

    grid = torchvision.utils.make_grid(images.clamp(-1, 1), nrow=max(1, int(nrow)), padding=2, pad_value=1.0)
    write_image(path, to_uint8(grid)[0])

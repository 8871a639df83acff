"""Image batches for the set metrics (FID, SWD, PPL): tensors or iterables of batches, and where a
feature network runs."""

from __future__ import annotations

from typing import Callable, Iterable, Union

import torch
import torch.nn as nn
from torch import Tensor

__all__ = ["Images", "iter_batches", "module_device"]

Images = Union[Tensor, Iterable[Tensor]]


def iter_batches(images: Images, batch_size: int) -> Iterable[Tensor]:
    """``(B, ...)`` batches of a ``(N, ...)`` tensor, or the image part of each item of an iterable of
    batches (``(images, labels)`` loaders included)."""
    if isinstance(images, Tensor):
        for i in range(0, len(images), batch_size):
            yield images[i : i + batch_size]
    else:
        for b in images:
            yield b[0] if isinstance(b, (tuple, list)) else b  # (images, labels) loaders


def module_device(module: Callable) -> torch.device:
    """The device of a module's first parameter or buffer; the CPU for plain callables."""
    if isinstance(module, nn.Module):
        for p in module.parameters():
            return p.device
        for b in module.buffers():
            return b.device
    return torch.device("cpu")

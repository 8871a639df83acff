"""Weights of the metric networks, read from local files.

Networks with ImageNet weights (AlexNet / VGG16 for LPIPS, Inception-v3 for FID) are the torchvision
architectures built with ``weights=None`` and filled from a **local** file; nothing here downloads.
Each weights argument takes a path, an in-memory state dict, or ``None`` = look in the torch hub cache
(``torch.hub.get_dir()/checkpoints``, usually ``~/.cache/torch/hub/checkpoints``) for the file name
torchvision itself would have downloaded. A missing file is a :class:`WeightsNotFoundError` (a
``FileNotFoundError``) that names the file expected.

=================  ===============================================================================
network            file(s) accepted
=================  ===============================================================================
LPIPS AlexNet      ``alexnet-owt-7be5be79.pth`` (torchvision; only ``features.*`` keys are used)
LPIPS VGG16        ``vgg16-397923af.pth`` (torchvision)
LPIPS linear head  ``alex.pth`` / ``vgg.pth`` of the ``lpips`` package / richzhang/PerceptualSimilarity
                   (``lpips/weights/v0.1``; keys ``lin0.model.1.weight`` ... ``lin4.model.1.weight``)
Inception (FID)    ``pt_inception-2015-12-05-6726825d.pth`` (pytorch-fid's port of the TF FID
                   Inception; recommended) or ``inception_v3_google-0cc3c7bd.pth`` (torchvision)
=================  ===============================================================================
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Mapping, Sequence, Union

import torch
import torch.nn as nn
from torch import Tensor

__all__ = ["WeightsSource", "WeightsNotFoundError", "hub_checkpoint_dir", "load_state", "load_into", "skeleton", "frozen"]

WeightsSource = Union[str, os.PathLike, Mapping[str, Tensor], None]


class WeightsNotFoundError(FileNotFoundError):
    """A network's weights file is neither at the given path nor in the torch hub cache."""


def hub_checkpoint_dir() -> Path:
    """Where torchvision would have cached downloaded weights (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _unwrap_state(obj, source: str) -> dict[str, Tensor]:
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
        state = {}
        for k, v in obj.items():
            if isinstance(v, Tensor):
                state[k[len("module.") :] if k.startswith("module.") else k] = v
        if state:
            return state
    raise ValueError(f"{source} does not hold a PyTorch state dict (a mapping of parameter names to tensors)")


def load_state(weights: WeightsSource, file_names: Sequence[str], what: str, argument: str) -> tuple[dict[str, Tensor], str]:
    """A state dict from a path, a mapping, or the hub cache; returns it with a description of its source."""
    if isinstance(weights, Mapping):
        return _unwrap_state(weights, f"the {what} state dict"), f"in-memory {what} state dict"
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsNotFoundError(
                f"{what} weights file not found: {path} (expected a state dict such as {' or '.join(file_names)})"
            )
    else:
        cache = hub_checkpoint_dir()
        found = [cache / n for n in file_names if (cache / n).is_file()]
        if not found:
            raise WeightsNotFoundError(
                f"{what} weights not found: pass {argument}=PATH, or place {' or '.join(file_names)} in {cache}; "
                "viewgp never downloads weights"
            )
        path = found[0]
    from generative.backbones.checkpoint import load_torch_file

    obj = load_torch_file(path, f"{what} weights")
    return _unwrap_state(obj, str(path)), str(path)


def load_into(module: nn.Module, state: Mapping[str, Tensor], source: str, what: str) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = str(exc).split("\n", 1)[-1].strip().replace("\n", " ")
        raise ValueError(f"{source} does not fit the {what} architecture: {detail[:500]}") from None


def skeleton(build: Callable[[], nn.Module]) -> nn.Module:
    """Build a network on the meta device and allocate it uninitialised: its weights all come from a
    strict ``load_state_dict`` next, so random initialisation (seconds for VGG16) would be wasted."""
    with torch.device("meta"):
        net = build()
    return net.to_empty(device="cpu")


def frozen(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        p.requires_grad_(False)
    return module.eval()

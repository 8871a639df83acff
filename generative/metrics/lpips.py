"""LPIPS (Zhang et al., CVPR 2018), computed by the ``lpips`` package with weights from local files
(see :mod:`generative.metrics.weights`; nothing downloads).

The ``lpips`` package defines the network (its AlexNet / VGG16 slices of torchvision's features, the
input scaling, the channel normalisation and the linear heads) and ships the official linear heads in its
wheel; its ImageNet backbone would come from torchvision's download, so the package's model is built
empty here and filled from the local torchvision file instead.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import torch
import torch.nn as nn
from torch import Tensor

from generative.metrics.weights import WeightsSource, frozen, load_into, load_state, skeleton

__all__ = ["LPIPS", "package_lin_weights"]


@dataclass(frozen=True)
class _LPIPSNet:
    builder: str  # torchvision.models function name
    channels: tuple[int, ...]  # of the five compared layers
    hub_file: str
    lin_file: str
    min_size: int  # smallest H = W AlexNet's / VGG's slices accept


_LPIPS_NETS = {
    "alex": _LPIPSNet("alexnet", (64, 192, 384, 256, 256), "alexnet-owt-7be5be79.pth", "alex.pth", 31),
    "vgg": _LPIPSNet("vgg16", (64, 128, 256, 512, 512), "vgg16-397923af.pth", "vgg.pth", 16),
}
_LPIPS_ALIASES = {"alex": "alex", "alexnet": "alex", "vgg": "vgg", "vgg16": "vgg"}


def package_lin_weights(net: str = "alex") -> Path:
    """The official v0.1 linear-head file (``alex.pth`` / ``vgg.pth``) that the ``lpips`` wheel ships."""
    import lpips

    key = _LPIPS_ALIASES.get(str(net).lower())
    if key is None:
        raise ValueError(f"LPIPS network must be 'alex' or 'vgg', got {net!r}")
    return Path(lpips.__file__).resolve().parent / "weights" / "v0.1" / _LPIPS_NETS[key].lin_file


def _empty_lpips_model(net: str, with_heads: bool) -> nn.Module:
    """The ``lpips`` package's model, allocated but not initialised (every weight is loaded next)."""
    import lpips

    with warnings.catch_warnings():
        # lpips passes torchvision's deprecated `pretrained=False`; that is its business, not the user's
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torchvision\.models\._utils")
        with torch.device("meta"):  # no random initialisation of layers that are overwritten anyway
            model = lpips.LPIPS(pretrained=False, net=net, lpips=with_heads, pnet_rand=True, verbose=False)
    model = model.to_empty(device="cpu")
    model.scaling_layer = lpips.ScalingLayer()  # its two constant buffers did not survive to_empty
    return model


class LPIPS(nn.Module):
    """Learned Perceptual Image Patch Similarity (Zhang et al., CVPR 2018), version 0.1.

    ``d(x0, x1) = sum_l mean_hw || w_l * (f_l(x0) - f_l(x1)) ||^2`` where ``f_l`` are channel-wise
    unit-normalised activations of five layers of AlexNet (default, as in the paper's evaluation) or
    VGG16, computed after LPIPS' input scaling, and ``w_l`` the learned non-negative per-channel
    weights. With ``lin_weights=None`` all ``w_l`` are 1: the paper's "baseline" (uncalibrated)
    variant, which is *not* LPIPS proper; pass the official ``alex.pth`` / ``vgg.pth`` for LPIPS, or
    ``"package"`` for the copy the ``lpips`` wheel ships (:func:`package_lin_weights`).

    Args:
        net: ``'alex'`` or ``'vgg'`` (``'alexnet'``, ``'vgg16'`` accepted).
        backbone_weights: torchvision state dict of the feature network (path / mapping / ``None`` =
            the hub cache file ``alexnet-owt-7be5be79.pth`` or ``vgg16-397923af.pth``).
        lin_weights: the linear-head file of the ``lpips`` package (path or mapping), ``"package"``,
            or ``None``.

    ``forward(x0, x1)`` takes ``(B, 3, H, W)`` images in [-1, 1] (H, W >= 31 for AlexNet, >= 16 for
    VGG) and returns ``(B,)`` distances; it is differentiable in the images (usable as a loss), the
    network's own parameters are frozen. The computation is the ``lpips`` package's (``self.model``).
    """

    def __init__(
        self,
        net: str = "alex",
        backbone_weights: WeightsSource = None,
        lin_weights: WeightsSource = None,
        device: Union[str, torch.device, None] = None,
    ) -> None:
        super().__init__()
        import torchvision

        key = _LPIPS_ALIASES.get(str(net).lower())
        if key is None:
            raise ValueError(f"LPIPS network must be 'alex' or 'vgg', got {net!r}")
        spec = _LPIPS_NETS[key]
        self.net = key
        self.min_size = spec.min_size
        state, source = load_state(backbone_weights, [spec.hub_file], f"{spec.builder} (LPIPS)", "backbone_weights")
        # A whole-network file (features.* + classifier.*) or one of just the feature layers; loaded into
        # torchvision's own layout first, so a wrong file is named with torchvision's layer names.
        feature_state = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")} or state
        features = skeleton(lambda: getattr(torchvision.models, spec.builder)(weights=None).features)
        load_into(features, feature_state, source, f"torchvision {spec.builder} features")
        lins = None
        if isinstance(lin_weights, str) and lin_weights == "package":
            lin_weights = package_lin_weights(key)
        if lin_weights is not None:
            lins = self._read_lin(lin_weights, spec)
        self.variant = "baseline" if lins is None else "lpips"

        self.model = _empty_lpips_model(key, with_heads=lins is not None)
        # lpips' slices hold torchvision's feature layers under their original indices: sliceK.<index>.*
        where = {name: f"{s}.{name}" for s, mod in self.model.net.named_children() for name, _ in mod.named_children()}
        sliced = {f"{where[k.split('.', 1)[0]]}.{k.split('.', 1)[1]}": v for k, v in features.state_dict().items()}
        self.model.net.load_state_dict(sliced, strict=True)
        if lins is not None:
            with torch.no_grad():
                for head, w in zip(self.model.lins, lins):
                    head.model[-1].weight.copy_(w.reshape(1, -1, 1, 1))
        frozen(self)
        if device is not None:
            self.to(device)

    @staticmethod
    def _read_lin(lin_weights: WeightsSource, spec: _LPIPSNet) -> list[Tensor]:
        state, source = load_state(lin_weights, [spec.lin_file], "LPIPS linear-layer", "lin_weights")
        out = []
        for k, c in enumerate(spec.channels):
            # lpips package: lin{k}.model.1.weight (Dropout, Conv2d); without dropout it is model.0.
            keys = [n for n in state if re.fullmatch(rf"lin{k}\.model\.\d+\.weight", n)]
            if len(keys) != 1:
                raise ValueError(f"{source}: expected one key lin{k}.model.1.weight (LPIPS {spec.lin_file} format), found {keys or 'none'}")
            w = state[keys[0]]
            if w.numel() != c:
                raise ValueError(
                    f"{source}: {keys[0]} has shape {tuple(w.shape)}, expected (1, {c}, 1, 1) for the "
                    f"'{spec.builder}' network; is it the linear head of another network?"
                )
            out.append(w.reshape(c).float())
        return out

    def forward(self, x0: Tensor, x1: Tensor) -> Tensor:
        if x0.shape != x1.shape:
            raise ValueError(f"LPIPS inputs must have the same shape, got {tuple(x0.shape)} and {tuple(x1.shape)}")
        if x0.ndim != 4 or x0.shape[1] != 3:
            raise ValueError(f"LPIPS expects (B, 3, H, W) images in [-1, 1], got {tuple(x0.shape)}")
        if min(x0.shape[2:]) < self.min_size:
            raise ValueError(
                f"LPIPS-{self.net} needs images of at least {self.min_size}x{self.min_size} pixels, got "
                f"{x0.shape[2]}x{x0.shape[3]}; upsample them first"
            )
        ref = self.model.scaling_layer.shift  # the model's device and dtype
        return self.model(x0.to(ref), x1.to(ref)).reshape(len(x0))

    def train(self, mode: bool = True) -> "LPIPS":
        # A fixed metric: no dropout / batch-norm behaviour may change under .train().
        return super().train(False)

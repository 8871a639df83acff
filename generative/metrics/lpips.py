"""LPIPS (Zhang et al., CVPR 2018) on torchvision AlexNet / VGG16 features, weights from local files
(see :mod:`generative.metrics.weights`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Union

import torch
import torch.nn as nn
from torch import Tensor

from .weights import WeightsSource, frozen, load_into, load_state, skeleton

__all__ = ["LPIPS"]


@dataclass(frozen=True)
class _LPIPSNet:
    builder: str  # torchvision.models function name
    cuts: tuple[int, ...]  # end indices (exclusive) of the feature slices inside `features`
    channels: tuple[int, ...]
    hub_file: str
    lin_file: str
    min_size: int  # smallest H = W the slices accept


_LPIPS_NETS = {
    # relu1 .. relu5 of AlexNet; relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 of VGG16 (Zhang et al. 2018).
    "alex": _LPIPSNet("alexnet", (2, 5, 8, 10, 12), (64, 192, 384, 256, 256), "alexnet-owt-7be5be79.pth", "alex.pth", 31),
    "vgg": _LPIPSNet("vgg16", (4, 9, 16, 23, 30), (64, 128, 256, 512, 512), "vgg16-397923af.pth", "vgg.pth", 16),
}
_LPIPS_ALIASES = {"alex": "alex", "alexnet": "alex", "vgg": "vgg", "vgg16": "vgg"}


class LPIPS(nn.Module):
    """Learned Perceptual Image Patch Similarity (Zhang et al., CVPR 2018), version 0.1.

    ``d(x0, x1) = sum_l mean_hw || w_l * (f_l(x0) - f_l(x1)) ||^2`` where ``f_l`` are channel-wise
    unit-normalised activations of five layers of AlexNet (default, as in the paper's evaluation) or
    VGG16, computed after LPIPS' input scaling, and ``w_l`` the learned non-negative per-channel
    weights. With ``lin_weights=None`` all ``w_l`` are 1: the paper's "baseline" (uncalibrated)
    variant, which is *not* LPIPS proper; pass the official ``alex.pth`` / ``vgg.pth`` for LPIPS.

    Args:
        net: ``'alex'`` or ``'vgg'`` (``'alexnet'``, ``'vgg16'`` accepted).
        backbone_weights: torchvision state dict of the feature network (path / mapping / ``None`` =
            the hub cache file ``alexnet-owt-7be5be79.pth`` or ``vgg16-397923af.pth``).
        lin_weights: the linear-head file of the ``lpips`` package (path or mapping), or ``None``.

    ``forward(x0, x1)`` takes ``(B, 3, H, W)`` images in [-1, 1] (H, W >= 31 for AlexNet, >= 16 for
    VGG) and returns ``(B,)`` distances; it is differentiable in the images (usable as a loss), the
    network's own parameters are frozen.
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
        features = skeleton(lambda: getattr(torchvision.models, spec.builder)(weights=None).features)
        # A whole-network file (features.* + classifier.*) or one of just the feature layers.
        feature_state = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")} or state
        load_into(features, feature_state, source, f"torchvision {spec.builder} features")
        starts = (0,) + spec.cuts[:-1]
        self.slices = nn.ModuleList(nn.Sequential(*[features[i] for i in range(s, e)]) for s, e in zip(starts, spec.cuts))
        # LPIPS v0.1 ScalingLayer: the [-1, 1] input re-centred/scaled to ImageNet statistics.
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).reshape(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).reshape(1, 3, 1, 1))
        if lin_weights is None:
            self.variant = "baseline"
            lins = [torch.ones(c) for c in spec.channels]
        else:
            self.variant = "lpips"
            lins = self._read_lin(lin_weights, spec)
        for k, w in enumerate(lins):
            self.register_buffer(f"lin{k}", w.float().reshape(1, -1, 1, 1))
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
            out.append(w.reshape(c))
        return out

    def _features(self, x: Tensor) -> list[Tensor]:
        h = (x - self.shift) / self.scale
        feats = []
        for s in self.slices:
            h = s(h)
            feats.append(h)
        return feats

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
        feats = self._features(torch.cat([x0, x1]).to(self.shift))
        total = x0.new_zeros(len(x0), dtype=self.shift.dtype)
        for k, f in enumerate(feats):
            f = f / (f.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            f0, f1 = f.chunk(2)
            total = total + ((f0 - f1).pow(2) * getattr(self, f"lin{k}")).sum(1).mean((1, 2))
        return total

    def train(self, mode: bool = True) -> "LPIPS":
        # A fixed metric: no dropout / batch-norm behaviour may change under .train().
        return super().train(False)

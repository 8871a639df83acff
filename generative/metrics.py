"""Image metrics: pixel errors, LPIPS, FID, sliced Wasserstein distance and perceptual path length.

Images are ``(B, 3, H, W)`` float tensors in [-1, 1] unless a function says otherwise.

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

FID numbers are comparable with published ones (TF FID, pytorch-fid) only with the pt_inception file:
torchvision's Inception-v3 has different weights, so FIDs computed with it are comparable only among
themselves.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "mse",
    "rmse",
    "psnr",
    "WeightsNotFoundError",
    "hub_checkpoint_dir",
    "LPIPS",
    "InceptionFeatures",
    "feature_statistics",
    "frechet_distance",
    "fid",
    "save_statistics",
    "load_statistics",
    "sliced_wasserstein",
    "laplacian_pyramid",
    "swd_images",
    "face_crop",
    "PPLResult",
    "perceptual_path_length",
]

WeightsSource = Union[str, os.PathLike, Mapping[str, Tensor], None]


# ====================================================================================== pixel errors
def _pixel_pair(a, b) -> tuple[Tensor, Tensor, float]:
    """Both inputs as float64 tensors plus the data range (2 for [-1, 1] floats, 255 for uint8)."""
    a, b = torch.as_tensor(np.asarray(a) if not isinstance(a, Tensor) else a), torch.as_tensor(
        np.asarray(b) if not isinstance(b, Tensor) else b
    )
    if a.shape != b.shape:
        raise ValueError(f"images must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.ndim < 2:
        raise ValueError(f"expected a batch of images (B, ...), got shape {tuple(a.shape)}")
    if (a.dtype == torch.uint8) != (b.dtype == torch.uint8):
        raise ValueError(f"cannot compare {a.dtype} with {b.dtype}: give both as uint8 or both as floats in [-1, 1]")
    if a.dtype == torch.uint8:
        return a.double(), b.double(), 255.0
    if not (a.is_floating_point() and b.is_floating_point()):
        raise ValueError(f"images must be uint8 or float in [-1, 1], got {a.dtype}")
    return a.double(), b.double(), 2.0


def _reduce(per_image: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return per_image
    if reduction == "mean":
        return per_image.mean()
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")


def mse(a, b, reduction: str = "mean") -> Tensor:
    """Mean squared error per image ``(B,)`` (``reduction='none'``) or its mean over images.

    Inputs: two equally shaped batches, either floats in [-1, 1] (errors are in those units) or uint8
    in 0..255 (errors in grey levels), torch or numpy, any layout (``(B, 3, H, W)`` or ``(B, H, W, 3)``).
    """
    a, b, _ = _pixel_pair(a, b)
    return _reduce((a - b).pow(2).reshape(len(a), -1).mean(1), reduction)


def rmse(a, b, reduction: str = "mean") -> Tensor:
    """Root mean squared error per image, or the mean of the per-image RMSEs (see :func:`mse`)."""
    return _reduce(mse(a, b, "none").sqrt(), reduction)


def psnr(a, b, reduction: str = "mean") -> Tensor:
    """Peak signal-to-noise ratio in dB per image, ``10 log10(range^2 / mse)`` with range 2 for [-1, 1]
    floats and 255 for uint8 (so both give the same value for the same picture); identical images
    give ``inf``. ``'mean'`` averages the per-image values."""
    a, b, data_range = _pixel_pair(a, b)
    per = (a - b).pow(2).reshape(len(a), -1).mean(1)
    return _reduce(10.0 * torch.log10(data_range**2 / per), reduction)


# ============================================================================== weights from files
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


def _load_state(weights: WeightsSource, file_names: Sequence[str], what: str, argument: str) -> tuple[dict[str, Tensor], str]:
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
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or not a torch file: say which file
        raise ValueError(f"cannot read {what} weights {path}: {exc}") from None
    return _unwrap_state(obj, str(path)), str(path)


def _load_into(module: nn.Module, state: Mapping[str, Tensor], source: str, what: str) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = str(exc).split("\n", 1)[-1].strip().replace("\n", " ")
        raise ValueError(f"{source} does not fit the {what} architecture: {detail[:500]}") from None


def _skeleton(build: Callable[[], nn.Module]) -> nn.Module:
    """Build a network on the meta device and allocate it uninitialised: its weights all come from a
    strict ``load_state_dict`` next, so random initialisation (seconds for VGG16) would be wasted."""
    with torch.device("meta"):
        net = build()
    return net.to_empty(device="cpu")


def _frozen(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        p.requires_grad_(False)
    return module.eval()


# ============================================================================================ LPIPS
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
        state, source = _load_state(backbone_weights, [spec.hub_file], f"{spec.builder} (LPIPS)", "backbone_weights")
        features = _skeleton(lambda: getattr(torchvision.models, spec.builder)(weights=None).features)
        # A whole-network file (features.* + classifier.*) or one of just the feature layers.
        feature_state = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")} or state
        _load_into(features, feature_state, source, f"torchvision {spec.builder} features")
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
        _frozen(self)
        if device is not None:
            self.to(device)

    @staticmethod
    def _read_lin(lin_weights: WeightsSource, spec: _LPIPSNet) -> list[Tensor]:
        state, source = _load_state(lin_weights, [spec.lin_file], "LPIPS linear-layer", "lin_weights")
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


# ====================================================================================== FID network
def _tf_avg_pool(x: Tensor) -> Tensor:
    # TensorFlow's 3x3 average pool ignores the zero padding (count_include_pad=False).
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


def _fid_inception_blocks():
    """Inception blocks as in the TF FID graph (pytorch-fid's ``FIDInception*``): TF-style average
    pooling, and max pooling in the pool branch of the last block."""
    from torchvision.models.inception import InceptionA, InceptionC, InceptionE

    class FIDInceptionA(InceptionA):
        def _forward(self, x):
            return [
                self.branch1x1(x),
                self.branch5x5_2(self.branch5x5_1(x)),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                self.branch_pool(_tf_avg_pool(x)),
            ]

    class FIDInceptionC(InceptionC):
        def _forward(self, x):
            b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
            d = x
            for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
                d = layer(d)
            return [self.branch1x1(x), b7, d, self.branch_pool(_tf_avg_pool(x))]

    class FIDInceptionE(InceptionE):
        def __init__(self, in_channels: int, max_pool: bool) -> None:
            super().__init__(in_channels)
            self.max_pool = max_pool

        def _forward(self, x):
            b3 = self.branch3x3_1(x)
            b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
            d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
            d = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
            pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if self.max_pool else _tf_avg_pool(x)
            return [self.branch1x1(x), b3, d, self.branch_pool(pooled)]

    return FIDInceptionA, FIDInceptionC, FIDInceptionE


TORCHVISION_INCEPTION_FILE = "inception_v3_google-0cc3c7bd.pth"
FID_INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"


class InceptionFeatures(nn.Module):
    """Inception-v3 pool3 features (2048-d) for FID.

    ``weights``: pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` (the TF FID network: 1008
    classes, TF pooling; recognised from its ``fc.weight`` shape) or torchvision's
    ``inception_v3_google-0cc3c7bd.pth``; a path, a state dict, or ``None`` = the hub cache (the
    pt_inception file is preferred when both are there). ``variant`` says which one was loaded.

    ``forward(x)``: ``(B, 3, H, W)`` in [-1, 1] -> bilinear resize to 299x299 (as pytorch-fid) ->
    ``(B, 2048)``. Both weight sets expect inputs in [-1, 1], so no further normalisation is applied.
    """

    def __init__(self, weights: WeightsSource = None, device: Union[str, torch.device, None] = None) -> None:
        super().__init__()
        state, source = _load_state(weights, [FID_INCEPTION_FILE, TORCHVISION_INCEPTION_FILE], "Inception-v3 (FID)", "weights")
        fc = state.get("fc.weight")
        tf_fid = fc is not None and fc.shape[0] == 1008
        net = _skeleton(lambda: self._build(tf_fid))
        _load_into(net, state, source, "Inception-v3 (TF FID, 1008 classes)" if tf_fid else "torchvision Inception-v3")
        self.variant = "pt_inception" if tf_fid else "torchvision"
        self.source = source
        self.blocks = nn.Sequential(
            net.Conv2d_1a_3x3, net.Conv2d_2a_3x3, net.Conv2d_2b_3x3, net.maxpool1,
            net.Conv2d_3b_1x1, net.Conv2d_4a_3x3, net.maxpool2,
            net.Mixed_5b, net.Mixed_5c, net.Mixed_5d, net.Mixed_6a, net.Mixed_6b, net.Mixed_6c, net.Mixed_6d, net.Mixed_6e,
            net.Mixed_7a, net.Mixed_7b, net.Mixed_7c, nn.AdaptiveAvgPool2d(1),
        )  # fmt: skip
        _frozen(self)
        if device is not None:
            self.to(device)

    @staticmethod
    def _build(tf_fid: bool) -> nn.Module:
        from torchvision.models import inception_v3

        if not tf_fid:
            return inception_v3(weights=None, aux_logits=True, init_weights=False)
        net = inception_v3(weights=None, aux_logits=False, init_weights=False, num_classes=1008)
        A, C, E = _fid_inception_blocks()
        net.Mixed_5b, net.Mixed_5c, net.Mixed_5d = A(192, 32), A(256, 64), A(288, 64)
        net.Mixed_6b, net.Mixed_6c = C(768, channels_7x7=128), C(768, channels_7x7=160)
        net.Mixed_6d, net.Mixed_6e = C(768, channels_7x7=160), C(768, channels_7x7=192)
        net.Mixed_7b, net.Mixed_7c = E(1280, max_pool=False), E(2048, max_pool=True)
        return net

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"Inception expects (B, 3, H, W) images in [-1, 1], got {tuple(x.shape)}")
        x = F.interpolate(x.float(), size=(299, 299), mode="bilinear", align_corners=False)
        return self.blocks(x).flatten(1)

    def train(self, mode: bool = True) -> "InceptionFeatures":
        return super().train(False)  # batch norm must keep its running statistics


# ============================================================================================== FID
Images = Union[Tensor, Iterable[Tensor]]


def _batches(images: Images, batch_size: int) -> Iterable[Tensor]:
    if isinstance(images, Tensor):
        for i in range(0, len(images), batch_size):
            yield images[i : i + batch_size]
    else:
        for b in images:
            yield b[0] if isinstance(b, (tuple, list)) else b  # (images, labels) loaders


def _module_device(module: Callable) -> torch.device:
    if isinstance(module, nn.Module):
        for p in module.parameters():
            return p.device
        for b in module.buffers():
            return b.device
    return torch.device("cpu")


@torch.no_grad()
def _features(images: Images, feature_net: Callable[[Tensor], Tensor], batch_size: int, progress: bool, what: str) -> np.ndarray:
    from tqdm.auto import tqdm

    device = _module_device(feature_net)
    total = len(images) if isinstance(images, Tensor) else None
    out = []
    with tqdm(total=total, desc=what, unit="img", disable=not progress) as bar:
        for b in _batches(images, batch_size):
            f = feature_net(b.to(device))
            out.append(f.reshape(len(b), -1).double().cpu().numpy())
            bar.update(len(b))
    if not out:
        raise ValueError(f"{what}: no images")
    return np.concatenate(out)


def feature_statistics(
    images: Images,
    feature_net: Callable[[Tensor], Tensor],
    batch_size: int = 50,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(D,)`` and covariance ``(D, D)`` (unbiased, float64) of ``feature_net`` outputs.

    ``images``: a ``(N, ...)`` tensor or an iterable of batches (a DataLoader, a generator of decoded
    samples); ``feature_net``: any callable ``(B, ...) -> (B, D)`` (e.g. :class:`InceptionFeatures`),
    run on its own device. Needs at least 2 images.
    """
    f = _features(images, feature_net, batch_size, progress, "features")
    if len(f) < 2:
        raise ValueError(f"feature statistics need at least 2 images, got {len(f)}")
    return f.mean(0), np.atleast_2d(np.cov(f, rowvar=False))


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2) (thesis eq. 2.27):
    ``|mu1 - mu2|^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2))``.

    As in pytorch-fid: when the matrix square root is not finite (near-singular covariances) both
    covariances get ``eps * I`` added; a negligible imaginary part from round-off is dropped, a large
    one is a ``ValueError``.
    """
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (len(mu1), len(mu1)):
        raise ValueError(
            f"inconsistent Gaussian statistics: means {mu1.shape} / {mu2.shape}, covariances {sigma1.shape} / {sigma2.shape}"
        )
    diff = mu1 - mu2
    with warnings.catch_warnings():
        # singular products are handled below (eps offset), as in pytorch-fid
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(len(mu1)) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"matrix square root has a large imaginary component ({np.abs(covmean.imag).max():.3g})")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def fid(
    images_a: Images,
    images_b: Images,
    feature_net: Callable[[Tensor], Tensor],
    batch_size: int = 50,
    progress: bool = False,
) -> float:
    """Frechet distance between the ``feature_net`` statistics of two image sets (FID with
    :class:`InceptionFeatures`). Sample-size dependent: compare FIDs only at equal set sizes."""
    mu1, s1 = feature_statistics(images_a, feature_net, batch_size, progress)
    mu2, s2 = feature_statistics(images_b, feature_net, batch_size, progress)
    return frechet_distance(mu1, s1, mu2, s2)


def save_statistics(path: Union[str, os.PathLike], mu: np.ndarray, sigma: np.ndarray) -> None:
    """Write ``mu``, ``sigma`` to an ``.npz`` (pytorch-fid's reference-statistics layout), atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, mu=np.asarray(mu), sigma=np.asarray(sigma))
    os.replace(tmp, path)


def load_statistics(path: Union[str, os.PathLike]) -> tuple[np.ndarray, np.ndarray]:
    """``(mu, sigma)`` from an ``.npz`` with arrays ``mu`` and ``sigma``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"feature statistics file not found: {path}")
    with np.load(path) as data:
        missing = {"mu", "sigma"} - set(data.files)
        if missing:
            raise ValueError(f"{path}: missing array(s) {sorted(missing)}; expected 'mu' and 'sigma'")
        return data["mu"], data["sigma"]


# ============================================================================================== SWD
def _generator(seed: Union[int, torch.Generator, None]) -> torch.Generator:
    if isinstance(seed, torch.Generator):
        return seed
    return torch.Generator().manual_seed(0 if seed is None else int(seed))


def _wasserstein_1d(pa: Tensor, pb: Tensor, p: int) -> Tensor:
    """Per-column p-Wasserstein^p between empirical 1-D distributions ``(Na, K)``, ``(Nb, K)``: the
    integral over u in (0, 1) of |Fa^-1(u) - Fb^-1(u)|^p, exact for any Na, Nb."""
    pa, pb = pa.sort(0).values, pb.sort(0).values
    na, nb = len(pa), len(pb)
    if na == nb:
        return (pa - pb).abs().pow(p).mean(0)
    u = torch.unique(torch.cat([torch.arange(1, na + 1, dtype=torch.float64) / na, torch.arange(1, nb + 1, dtype=torch.float64) / nb]))
    widths = torch.diff(u, prepend=u.new_zeros(1))
    mid = u - widths / 2  # strictly inside each constant piece of both quantile functions
    ia = (mid * na).floor().long().clamp_(max=na - 1).to(pa.device)
    ib = (mid * nb).floor().long().clamp_(max=nb - 1).to(pb.device)
    return ((pa[ia] - pb[ib]).abs().pow(p) * widths.to(pa)[:, None]).sum(0)


def sliced_wasserstein(
    a: Tensor,
    b: Tensor,
    n_directions: int = 128,
    repeats: int = 4,
    p: int = 1,
    seed: Union[int, torch.Generator, None] = 0,
) -> float:
    """Sliced Wasserstein distance between point sets ``a (Na, D)`` and ``b (Nb, D)``.

    ``repeats`` batches of ``n_directions`` random unit directions; along each, the exact 1-D
    p-Wasserstein distance of the projections, raised to p, averaged over all directions, and the p-th
    root taken (for p = 1 this is PGGAN's ``sliced_wasserstein``: the mean absolute difference of sorted
    projections). Unequal set sizes are handled exactly. Seeded.
    """
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"point sets must be (Na, D) and (Nb, D), got {tuple(a.shape)} and {tuple(b.shape)}")
    if len(a) == 0 or len(b) == 0:
        raise ValueError("sliced Wasserstein distance needs non-empty point sets")
    if p not in (1, 2):
        raise ValueError(f"p must be 1 or 2, got {p}")
    g = _generator(seed)
    dtype = torch.float64 if a.dtype == torch.float64 else torch.float32
    a, b = a.to(dtype), b.to(a.device, dtype)
    total = []
    for _ in range(int(repeats)):
        dirs = torch.randn(a.shape[1], int(n_directions), generator=g, dtype=torch.float64)
        dirs = (dirs / dirs.norm(dim=0, keepdim=True)).to(a.device, dtype)
        total.append(_wasserstein_1d(a @ dirs, b @ dirs, p))
    return float(torch.cat(total).double().mean() ** (1.0 / p))


_GAUSS5 = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def _blur(x: Tensor, gain: float = 1.0) -> Tensor:
    k = (torch.outer(_GAUSS5, _GAUSS5) * gain).to(x).expand(x.shape[1], 1, 5, 5)
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), k, groups=x.shape[1])


def laplacian_pyramid(x: Tensor, levels: int) -> list[Tensor]:
    """Laplacian pyramid of ``(B, C, H, W)`` images as in PGGAN's SWD (cv2.pyrDown / pyrUp with
    mirror borders): ``levels`` tensors at H, H/2, ...; all but the last are band-pass, the last is
    the Gaussian low-pass residual."""
    pyr = [x.float()]
    for _ in range(1, int(levels)):
        down = _blur(pyr[-1])[:, :, ::2, ::2]
        up = torch.zeros_like(pyr[-1])
        up[:, :, ::2, ::2] = down
        pyr[-1] = pyr[-1] - _blur(up, gain=4.0)
        pyr.append(down)
    return pyr


def _patches(level: Tensor, size: int, per_image: int, g: torch.Generator) -> Tensor:
    """``per_image`` random ``size x size`` patches of each image: ``(B * per_image, C, size, size)``."""
    B, C, H, W = level.shape
    ys = torch.randint(0, H - size + 1, (B, per_image), generator=g)
    xs = torch.randint(0, W - size + 1, (B, per_image), generator=g)
    off = torch.arange(size)
    rows = (ys[..., None] + off).to(level.device)  # (B, P, size)
    cols = (xs[..., None] + off).to(level.device)
    bi = torch.arange(B, device=level.device)[:, None, None, None, None]
    ci = torch.arange(C, device=level.device)[None, None, :, None, None]
    out = level[bi, ci, rows[:, :, None, :, None], cols[:, :, None, None, :]]  # (B, P, C, size, size)
    return out.reshape(B * per_image, C, size, size)


def _pyramid_levels(resolution: int, min_resolution: int) -> int:
    levels, r = 0, resolution
    while r >= min_resolution:
        levels, r = levels + 1, r // 2
    return levels


def _descriptors(images: Images, batch_size: int, patch: int, per_image: int, min_res: int, seed) -> tuple[list[Tensor], int]:
    g = _generator(seed)
    per_level: Optional[list[list[Tensor]]] = None
    res = None
    for b in _batches(images, batch_size):
        if b.ndim != 4 or b.shape[2] != b.shape[3]:
            raise ValueError(f"SWD expects square (B, C, H, H) images, got {tuple(b.shape)}")
        if res is None:
            res = int(b.shape[2])
            levels = _pyramid_levels(res, min_res)
            if levels == 0 or min_res < patch:
                raise ValueError(f"SWD needs images of at least {max(min_res, patch)} px (min_resolution >= patch), got {res}")
            per_level = [[] for _ in range(levels)]
        elif b.shape[2] != res:
            raise ValueError(f"all images must have the same size, got {res} and {b.shape[2]}")
        for k, lvl in enumerate(laplacian_pyramid(b, len(per_level))):
            per_level[k].append(_patches(lvl, patch, per_image, g).cpu())
    if per_level is None:
        raise ValueError("SWD: no images")
    out = []
    for chunks in per_level:
        d = torch.cat(chunks)
        # PGGAN normalises each set's descriptors per colour channel before comparing.
        d = (d - d.mean((0, 2, 3), keepdim=True)) / d.std((0, 2, 3), keepdim=True, unbiased=False).clamp_min(1e-8)
        out.append(d.reshape(len(d), -1))
    return out, res


def swd_images(
    images_a: Images,
    images_b: Images,
    patch: int = 7,
    patches_per_image: int = 128,
    n_directions: int = 128,
    repeats: int = 4,
    min_resolution: int = 16,
    batch_size: int = 64,
    seed: int = 0,
) -> dict:
    """PGGAN's sliced Wasserstein distance between two image sets (Karras et al. 2018).

    Each image's Laplacian pyramid (levels down to ``min_resolution`` px) gives
    ``patches_per_image`` random ``patch x patch`` descriptors per level; descriptors are normalised
    per colour channel within each set; per level the SWD of the two descriptor sets is computed
    with ``repeats x n_directions`` random directions. Returns ``{resolution: SWD x 1e3, ...,
    'mean': average over levels}`` (PGGAN reports SWD x 10^3). Patch positions come from ``seed``
    and are drawn the same way for both sets, so identical sets score exactly 0.
    """
    da, res = _descriptors(images_a, batch_size, patch, patches_per_image, min_resolution, seed)
    db, res_b = _descriptors(images_b, batch_size, patch, patches_per_image, min_resolution, seed)
    if res != res_b:
        raise ValueError(f"both image sets must have the same resolution, got {res} and {res_b}")
    out = {}
    for k, (a, b) in enumerate(zip(da, db)):
        out[res >> k] = 1e3 * sliced_wasserstein(a, b, n_directions, repeats, seed=int(seed) + 1 + k)
    out["mean"] = float(np.mean(list(out.values())))
    return out


# ============================================================================================== PPL
def face_crop(x: Tensor) -> Tensor:
    """Central face region of aligned face images, rows 3c:7c and columns 2c:6c with c = H // 8 (the
    crop of StyleGAN's PPL and of the automodulator's LPIPS evaluation)."""
    c = x.shape[2] // 8
    return x[:, :, 3 * c : 7 * c, 2 * c : 6 * c]


_PPL_CHUNK = 256


@dataclass
class PPLResult:
    """``ppl``: the mean of ``distances`` between the 1st and 99th percentiles (StyleGAN's filter);
    ``distances``: every ``d(G(z_t), G(z_t+eps)) / eps^2`` (``(n,)`` float64)."""

    ppl: float
    distances: np.ndarray


def perceptual_path_length(
    backbone,
    distance_fn: Callable[[Tensor, Tensor], Tensor],
    n: int = 1000,
    eps: float = 1e-4,
    space: str = "z",
    sampling: str = "full",
    crop: bool = False,
    batch_size: int = 16,
    seed: int = 0,
    progress: bool = False,
) -> PPLResult:
    """Perceptual path length (Karras et al. 2019) of a backbone's latent space.

    For each of ``n`` pairs of prior latents ``z0, z1`` and ``t ~ U(0, 1)`` (``sampling='full'``) or
    ``t = 0`` (``'end'``): ``d(decode(z_t), decode(z_{t+eps})) / eps^2`` with ``z_t`` on the slerp
    (sphere latents) or lerp (euclidean) path; ``distance_fn(x0, x1) -> (B,)`` is LPIPS or any image
    distance. Images larger than 256 px are box-downsampled to 256 first and ``crop=True`` takes the
    face crop, as in StyleGAN. ``space='z'`` is the only space the Backbone protocol exposes (the
    decoder's input). Seeded; the backbone runs on its own device.
    """
    from tqdm.auto import tqdm

    from .edit import decode_latents, lerp, sample_latents, slerp

    if space != "z":
        raise ValueError(f"PPL space must be 'z' (the backbone's decoder input), got {space!r}")
    if sampling not in ("full", "end"):
        raise ValueError(f"sampling must be 'full' or 'end', got {sampling!r}")
    if int(n) < 1 or not eps > 0:
        raise ValueError(f"need n >= 1 and eps > 0, got n={n}, eps={eps}")
    g = torch.Generator().manual_seed(int(seed))
    path = slerp if backbone.latent_geometry == "sphere" else lerp
    device = _module_device(distance_fn)
    dists = []
    with tqdm(total=int(n), desc="PPL", unit="pair", disable=not progress) as bar:
        # Random numbers are drawn in fixed chunks so the result depends on the seed, not on batch_size.
        for chunk in range(0, int(n), _PPL_CHUNK):
            c = min(_PPL_CHUNK, int(n) - chunk)
            z0, z1 = sample_latents(backbone, c, g), sample_latents(backbone, c, g)
            t = torch.rand(c, generator=g) if sampling == "full" else torch.zeros(c)
            for i in range(0, c, batch_size):
                a, b, tb = z0[i : i + batch_size], z1[i : i + batch_size], t[i : i + batch_size]
                m = len(a)
                fa, fb = a.reshape(m, -1).double(), b.reshape(m, -1).double()
                za = path(fa, fb, tb.double()).float().reshape(a.shape)
                zb = path(fa, fb, tb.double() + eps).float().reshape(a.shape)
                imgs = decode_latents(backbone, torch.cat([za, zb]), batch_size=2 * m)
                if crop:
                    imgs = face_crop(imgs)
                if imgs.shape[2] > 256:
                    imgs = F.avg_pool2d(imgs, imgs.shape[2] // 256)
                with torch.no_grad():
                    d = distance_fn(imgs[:m].to(device), imgs[m:].to(device))
                dists.append(torch.as_tensor(d).reshape(m).double().cpu().numpy() / eps**2)
                bar.update(m)
    dist = np.concatenate(dists)
    lo, hi = np.percentile(dist, 1, method="lower"), np.percentile(dist, 99, method="higher")
    kept = dist[(dist >= lo) & (dist <= hi)]
    return PPLResult(float(kept.mean()), dist)

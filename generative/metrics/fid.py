"""FID: Inception-v3 pool3 features (the TF FID network or torchvision's), Gaussian feature
statistics and the Frechet distance between them (thesis eq. 2.27).

FID numbers are comparable with published ones (TF FID, pytorch-fid) only with the pt_inception file:
torchvision's Inception-v3 has different weights, so FIDs computed with it are comparable only among
themselves.

What comes from packages and what stays here:

* The TF FID network is pytorch-fid's (its ``FIDInception*`` blocks on torchvision's Inception-v3), filled
  from the local ``pt_inception`` file -- pytorch-fid's own release file; its ``fid_inception_v3()`` would
  download it, so the few lines that assemble the blocks are repeated in :meth:`InceptionFeatures._build`.
  torchmetrics / torch-fidelity use another port with another weights file and a TF-style resize (other
  FID values); clean-fid loads StyleGAN2-ADA's TorchScript ``inception-2015-12-05.pt`` by default and,
  in its legacy mode, a vendored pytorch-fid that downloads: none of them loads this file from a path.
* :func:`frechet_distance` stays ours: pytorch-fid's ``calculate_frechet_distance`` (the same algorithm)
  calls ``scipy.linalg.sqrtm(..., disp=False)``, deprecated in SciPy 1.17 and removed in 1.18, checks its
  inputs with ``assert`` and prints to stdout; torchmetrics computes the distance only inside its stateful
  FID metric (the private ``_compute_fid``).
* :func:`feature_statistics` / :func:`fid` take tensors or any iterable of batches and any feature
  network; the packages' equivalents read image files (pytorch-fid) or need their own Inception
  (torchmetrics), so these few lines stay too.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Callable, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from generative.images.fileio import atomic_write
from generative.metrics.batches import Images, iter_batches, module_device
from generative.metrics.weights import WeightsSource, frozen, load_into, load_state, skeleton

__all__ = [
    "InceptionFeatures",
    "feature_statistics",
    "frechet_distance",
    "fid",
    "save_statistics",
    "load_statistics",
    "FID_INCEPTION_FILE",
    "TORCHVISION_INCEPTION_FILE",
]


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
        state, source = load_state(weights, [FID_INCEPTION_FILE, TORCHVISION_INCEPTION_FILE], "Inception-v3 (FID)", "weights")
        fc = state.get("fc.weight")
        tf_fid = fc is not None and fc.shape[0] == 1008
        net = skeleton(lambda: self._build(tf_fid))
        load_into(net, state, source, "Inception-v3 (TF FID, 1008 classes)" if tf_fid else "torchvision Inception-v3")
        self.variant = "pt_inception" if tf_fid else "torchvision"
        self.source = source
        self.blocks = nn.Sequential(
            net.Conv2d_1a_3x3, net.Conv2d_2a_3x3, net.Conv2d_2b_3x3, net.maxpool1,
            net.Conv2d_3b_1x1, net.Conv2d_4a_3x3, net.maxpool2,
            net.Mixed_5b, net.Mixed_5c, net.Mixed_5d, net.Mixed_6a, net.Mixed_6b, net.Mixed_6c, net.Mixed_6d, net.Mixed_6e,
            net.Mixed_7a, net.Mixed_7b, net.Mixed_7c, nn.AdaptiveAvgPool2d(1),
        )  # fmt: skip
        frozen(self)
        if device is not None:
            self.to(device)

    @staticmethod
    def _build(tf_fid: bool) -> nn.Module:
        from torchvision.models import inception_v3

        if not tf_fid:
            return inception_v3(weights=None, aux_logits=True, init_weights=False)
        # pytorch-fid's fid_inception_v3() less its download: torchvision's Inception-v3 with 1008 classes
        # and pytorch-fid's TF-graph blocks (TF average pooling, max pooling in Mixed_7c's pool branch).
        from pytorch_fid.inception import FIDInceptionA, FIDInceptionC, FIDInceptionE_1, FIDInceptionE_2

        net = inception_v3(weights=None, aux_logits=False, init_weights=False, num_classes=1008)
        net.Mixed_5b, net.Mixed_5c = FIDInceptionA(192, pool_features=32), FIDInceptionA(256, pool_features=64)
        net.Mixed_5d = FIDInceptionA(288, pool_features=64)
        net.Mixed_6b, net.Mixed_6c = FIDInceptionC(768, channels_7x7=128), FIDInceptionC(768, channels_7x7=160)
        net.Mixed_6d, net.Mixed_6e = FIDInceptionC(768, channels_7x7=160), FIDInceptionC(768, channels_7x7=192)
        net.Mixed_7b, net.Mixed_7c = FIDInceptionE_1(1280), FIDInceptionE_2(2048)
        return net

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"Inception expects (B, 3, H, W) images in [-1, 1], got {tuple(x.shape)}")
        x = F.interpolate(x.float(), size=(299, 299), mode="bilinear", align_corners=False)
        return self.blocks(x).flatten(1)

    def train(self, mode: bool = True) -> "InceptionFeatures":
        return super().train(False)  # batch norm must keep its running statistics


# ============================================================================================== statistics
@torch.no_grad()
def _features(images: Images, feature_net: Callable[[Tensor], Tensor], batch_size: int, progress: bool, what: str) -> np.ndarray:
    from tqdm.auto import tqdm

    device = module_device(feature_net)
    total = len(images) if isinstance(images, Tensor) else None
    out = []
    with tqdm(total=total, desc=what, unit="img", disable=not progress) as bar:
        for b in iter_batches(images, batch_size):
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
    # the temporary keeps the .npz extension: np.savez would append one to any other name
    atomic_write(path, lambda tmp: np.savez(tmp, mu=np.asarray(mu), sigma=np.asarray(sigma)), suffix=".npz")


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

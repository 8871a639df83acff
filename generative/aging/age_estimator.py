"""Age estimators for the face-aging pipeline (issue 8 item 3, SPEC 5).

**Interface.** An age estimator is any callable ``estimator(images) -> ages`` where ``images`` is
either uint8 RGB ``(N, H, W, 3)`` (numpy array or tensor) or float ``(N, 3, H, W)`` in ``[-1, 1]``,
and ``ages`` is a float tensor ``(N,)`` in years. It only scores images; it never feeds gradients
back into a translator.

Shipped here:

* :class:`AgeRegressor`: a small CNN (input resized to 32 or 64 px) that our own code trains on
  labelled images with :meth:`AgeRegressor.fit`, so the whole pipeline runs without outside weights;
  :meth:`AgeRegressor.save` writes a viewgp checkpoint atomically.
* :func:`load_age_estimator`: loads our saved regressor, or a user's TorchScript module from a local
  path (wrapped by :class:`ScriptedAgeEstimator` so it obeys the same interface).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Callable, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from generative.backbones.checkpoint import CheckpointError, read_checkpoint, write_checkpoint

__all__ = ["AgeEstimator", "AgeRegressor", "ScriptedAgeEstimator", "to_estimator_input", "load_age_estimator"]

KIND = "age_regressor"
AgeEstimator = Callable[[Union[np.ndarray, Tensor]], Tensor]
ImageBatch = Union[np.ndarray, Tensor]


def to_estimator_input(images: ImageBatch) -> Tensor:
    """uint8 ``(N, H, W, 3)`` or float ``(N, 3, H, W)`` in [-1, 1] -> float32 ``(N, 3, H, W)`` in [-1, 1]."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    if not isinstance(images, Tensor):
        raise TypeError(f"images must be a numpy array or a torch tensor, got {type(images).__name__}")
    if images.dtype == torch.uint8:
        if images.dim() != 4 or images.shape[-1] != 3:
            raise ValueError(f"uint8 images must be (N, H, W, 3) RGB, got shape {tuple(images.shape)}")
        return images.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
    if not images.is_floating_point():
        raise TypeError(f"images must be uint8 (N, H, W, 3) or float (N, 3, H, W), got dtype {images.dtype}")
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"float images must be (N, 3, H, W) in [-1, 1], got shape {tuple(images.shape)}")
    return images.float()


class AgeRegressor(nn.Module):
    """Small CNN regressing age in years. Input is resized (area) to ``input_size`` (32 or 64).

    Four stride-2 3x3 conv blocks (``width``, 2x, 4x, 4x channels, LeakyReLU), global average pool,
    a linear head. The head predicts a normalised age; ``age_mean``/``age_std`` buffers (set by
    :meth:`fit` from its labels) map it back to years, so the training target is well scaled.
    """

    def __init__(self, input_size: int = 32, width: int = 16) -> None:
        super().__init__()
        if input_size not in (32, 64):
            raise ValueError(f"input_size must be 32 or 64, got {input_size}")
        self.input_size = int(input_size)
        self.width = int(width)
        chans = [3, width, 2 * width, 4 * width, 4 * width]
        layers: list[nn.Module] = []
        for cin, cout in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(chans[-1], 1)
        self.register_buffer("age_mean", torch.tensor(40.0))
        self.register_buffer("age_std", torch.tensor(20.0))

    @property
    def config(self) -> dict:
        return {"input_size": self.input_size, "width": self.width}

    def _normalised(self, x: Tensor) -> Tensor:
        """float ``(N, 3, H, W)`` in [-1, 1] -> normalised age ``(N,)``."""
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="area")
        return self.head(self.features(x).mean(dim=(2, 3))).squeeze(1)

    def forward(self, images: ImageBatch) -> Tensor:
        """Ages in years ``(N,)`` for uint8 ``(N, H, W, 3)`` or float ``(N, 3, H, W)`` images."""
        x = to_estimator_input(images).to(self.age_mean.device)
        return self._normalised(x) * self.age_std + self.age_mean

    def fit(
        self,
        images: ImageBatch,
        ages: Union[np.ndarray, Tensor, list],
        steps: int = 300,
        batch_size: int = 32,
        lr: float = 3e-3,
        seed: int = 0,
        flip: bool = True,
    ) -> list[float]:
        """Train on labelled images (Adam, MSE on standardised ages, random horizontal flips,
        cosine-decayed learning rate). Returns the per-step training losses."""
        x = to_estimator_input(images)
        y = torch.as_tensor(np.asarray(ages, dtype=np.float32))
        if y.dim() != 1 or y.shape[0] != x.shape[0]:
            raise ValueError(f"need one age per image: {x.shape[0]} images, ages of shape {tuple(y.shape)}")
        if x.shape[0] < 2:
            raise ValueError("need at least two labelled images to fit an age regressor")
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="area")  # once, not per step
        device = self.age_mean.device
        x, y = x.to(device), y.to(device)
        self.age_mean.fill_(float(y.mean()))
        self.age_std.fill_(max(float(y.std()), 1.0))
        target = (y - self.age_mean) / self.age_std
        gen = torch.Generator().manual_seed(int(seed))
        opt = torch.optim.Adam(self.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        self.train()
        losses = []
        n = x.shape[0]
        for _ in range(steps):
            idx = torch.randint(n, (min(batch_size, n),), generator=gen).to(device)
            xb = x[idx]
            if flip:
                m = (torch.rand(xb.shape[0], generator=gen) < 0.5).to(device)
                xb = torch.where(m[:, None, None, None], xb.flip(-1), xb)
            loss = F.mse_loss(self._normalised(xb), target[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
        self.eval()
        return losses

    @torch.no_grad()
    def predict(self, images: ImageBatch, batch_size: int = 256) -> np.ndarray:
        """Ages in years as a float64 numpy array ``(N,)``; eval mode, no gradients, batched."""
        x = to_estimator_input(images)
        self.eval()
        return torch.cat([self(x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)]).double().cpu().numpy()

    def save(self, path: Union[str, os.PathLike]) -> Path:
        """Write an atomic viewgp checkpoint (kind ``age_regressor``) readable by :func:`load_age_estimator`."""
        state = {k: v.detach().cpu() for k, v in self.state_dict().items()}
        return write_checkpoint(path, KIND, self.config, state)


class ScriptedAgeEstimator:
    """Wraps a user's TorchScript module so it follows the estimator interface: the module receives
    float ``(N, 3, H, W)`` in [-1, 1] and must return ages in years, ``(N,)`` or ``(N, 1)``."""

    def __init__(self, module: torch.jit.ScriptModule, source: str = "<module>") -> None:
        self.module = module.eval()
        self.source = source

    @torch.no_grad()
    def __call__(self, images: ImageBatch) -> Tensor:
        x = to_estimator_input(images)
        out = self.module(x)
        if not isinstance(out, Tensor):
            raise TypeError(f"TorchScript age estimator {self.source} returned {type(out).__name__}, expected a tensor")
        out = out.float().reshape(out.shape[0], -1) if out.dim() > 0 else out.reshape(1, 1)
        if out.shape != (x.shape[0], 1):
            raise ValueError(f"TorchScript age estimator {self.source} must return (N,) or (N, 1) ages for N={x.shape[0]} images, got {tuple(out.shape)}")
        return out[:, 0]


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives are zip files holding ``<name>/code/`` and ``<name>/constants.pkl``."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    return any("/code/" in n for n in names) and any(n.endswith("constants.pkl") for n in names)


def load_age_estimator(path: Union[str, os.PathLike], map_location: Union[str, torch.device] = "cpu") -> AgeEstimator:
    """Load an age estimator from a local file: our :class:`AgeRegressor` checkpoint (returned in eval
    mode) or a user's TorchScript file (wrapped in :class:`ScriptedAgeEstimator`).

    Raises ``FileNotFoundError`` naming a missing file and ``ValueError`` (:class:`CheckpointError`)
    for a file that is neither.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"age estimator file not found: {path}" + (" (it is a folder)" if path.is_dir() else ""))
    if _is_torchscript(path):
        try:
            return ScriptedAgeEstimator(torch.jit.load(str(path), map_location=map_location), str(path))
        except Exception as exc:
            raise CheckpointError(f"{path} looks like a TorchScript file but could not be loaded ({exc})") from exc
    try:
        payload = read_checkpoint(path, map_location=map_location)
    except CheckpointError as exc:
        raise CheckpointError(
            f"{path} is neither a viewgp age-regressor checkpoint nor a TorchScript module ({exc})"
        ) from exc
    if payload.get("kind") != KIND:
        raise CheckpointError(f"{path} is a viewgp checkpoint of kind {payload.get('kind')!r}, not an age regressor ({KIND!r})")
    model = AgeRegressor(**payload["config"])
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: age-regressor weights do not match its recorded config ({exc})") from exc
    return model.to(map_location).eval()

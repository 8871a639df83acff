"""The ``Backbone`` protocol, its optional capabilities, image conversions and :func:`load` (restore
any of our models by kind).

A backbone maps images ``(B, 3, H, W)`` float in [-1, 1] to latents ``(B, *latent_shape)`` and back.
What a backbone may offer beyond that is a capability protocol of its own, tested with ``isinstance``:
:class:`StyleLatents` (a mapping network with per-layer styles), :class:`NoiseMaps` (per-layer noise
inputs) and :class:`BlockLatents` (one latent per decoder block).

Model classes register themselves with :func:`register_backbone`; :func:`load` reads a checkpoint
(training ``.pt`` or inference ``.safetensors``, see :mod:`generative.backbones.checkpoint`), looks up the class
of its recorded ``kind`` and calls ``cls.from_payload(payload, device=..., source=path)``, which
:func:`restore_backbone` implements for every class. A new backbone touches only its own module and
:data:`BACKBONE_MODULES`.
"""

from __future__ import annotations

import hashlib
import importlib
import math
import os
from pathlib import Path
from typing import Callable, Optional, Protocol, Sequence, TypeVar, Union, runtime_checkable

import numpy as np
import torch
from torch import Tensor, nn

from generative.backbones.checkpoint import CheckpointError, read_checkpoint

__all__ = [
    "Backbone",
    "StyleLatents",
    "NoiseMaps",
    "BlockLatents",
    "weights_fingerprint",
    "restore_backbone",
    "register_backbone",
    "registered_kinds",
    "backbone_class",
    "load",
    "load_default",
    "load_backbone",
    "DEFAULT_BACKBONE",
    "to_model_images",
    "to_uint8",
    "check_resolution",
    "available_resolutions",
]


Device = Union[str, torch.device]


@runtime_checkable
class Backbone(Protocol):
    """What every generative model offers the pipeline and the loaders.

    Attributes: ``kind`` (registry name), ``resolution`` (H = W of the images it encodes/decodes),
    ``latent_shape`` (e.g. ``(512,)``), ``latent_geometry`` (``'sphere'`` or ``'euclidean'``),
    ``has_encoder`` (``False``: :meth:`encode` raises and latents come from :mod:`generative.latents.invert`).
    """

    kind: str
    resolution: int
    latent_shape: tuple
    latent_geometry: str
    has_encoder: bool

    def encode(self, x: Tensor) -> Tensor:
        """``(B, 3, resolution, resolution)`` in [-1, 1] -> ``(B, *latent_shape)``."""
        ...

    def decode(self, z: Tensor) -> Tensor:
        """``(B, *latent_shape)`` -> ``(B, 3, resolution, resolution)`` in [-1, 1]."""
        ...

    def set_resolution(self, resolution: int) -> None:
        """Work at ``resolution`` (one the model has; ``ValueError`` listing them otherwise)."""
        ...

    def fingerprint(self) -> str:
        """A short hex digest of the weights (:func:`weights_fingerprint`), e.g. for cache keys."""
        ...

    @classmethod
    def from_payload(cls, payload: dict, device: Device = "cpu", source: str = "checkpoint") -> "Backbone":
        """Rebuild the model from a checkpoint payload (:func:`generative.backbones.checkpoint.read_checkpoint`)."""
        ...


@runtime_checkable
class StyleLatents(Protocol):
    """Capability: a mapping network whose W latents ``(B, style_dim)`` drive ``n_styles`` layers
    (decode takes W or W+ ``(B, n_styles, style_dim)``); inversion starts from the mean W."""

    n_styles: int
    style_dim: int

    def mean_latent(self, n: int = 10_000, seed: int = 0) -> tuple[Tensor, float]:
        """Mean W ``(style_dim,)`` and its spread over ``n`` seeded mapped draws."""
        ...


@runtime_checkable
class NoiseMaps(Protocol):
    """Capability: per-layer noise inputs; ``decode(w, noise=maps)`` takes the maps of :meth:`make_noise`."""

    def make_noise(self, batch: int = 1, generator: Optional[torch.Generator] = None, device=None) -> list[Tensor]:
        """Fresh N(0, 1) noise maps, one ``(batch, 1, s_i, s_i)`` per noise input."""
        ...


@runtime_checkable
class BlockLatents(Protocol):
    """Capability: one latent per decoder block (style mixing across scales)."""

    def decode_mixed(self, zs: Sequence[Tensor], resolution: Optional[int] = None) -> Tensor:
        """One ``(B, *latent_shape)`` latent per decoder block, coarsest first -> ``(B, 3, r, r)``."""
        ...

    def block_scales(self, resolution: Optional[int] = None) -> list[str]:
        """The scale name (``'coarse'``, ``'intermediate'``, ``'fine'``) of each decoder block."""
        ...


# ------------------------------------------------------------------------------ weights
_FINGERPRINT_BYTES = 4096  # per tensor: enough to tell trained weights apart, cheap for large models


def weights_fingerprint(module: nn.Module) -> str:
    """16 hex digits of SHA-1 over the module's kind (``module.kind``, else its class name) and, for
    every ``state_dict`` entry in name order, its name, its first 4096 bytes and its shape."""
    h = hashlib.sha1()
    h.update(str(getattr(module, "kind", type(module).__name__)).encode())  # plain modules have no kind
    for name, t in sorted(module.state_dict().items()):
        flat = t.detach().reshape(-1)
        head = flat[: math.ceil(_FINGERPRINT_BYTES / max(1, flat.element_size()))]  # copy only what is hashed
        h.update(name.encode())
        h.update(head.cpu().contiguous().view(torch.uint8).numpy().tobytes()[:_FINGERPRINT_BYTES])
        h.update(str(tuple(t.shape)).encode())
    return h.hexdigest()[:16]


# ------------------------------------------------------------------------------ registry
_REGISTRY: dict[str, type] = {}

# Modules that define backbones; imported on demand by load() so they can register themselves.
# A module that is not part of this build (not written yet) is skipped.
BACKBONE_MODULES = ["generative.backbones.pioneer", "generative.backbones.automodulator", "generative.backbones.stylegan2"]


def register_backbone(*kinds: str) -> Callable[[type], type]:
    """Class decorator: ``@register_backbone("pioneer", "balanced_pioneer")``. The class must provide
    ``from_payload(payload: dict, device, source) -> instance``."""

    def deco(cls: type) -> type:
        for kind in kinds:
            existing = _REGISTRY.get(kind)
            if existing is not None and existing.__qualname__ != cls.__qualname__:
                raise ValueError(f"backbone kind '{kind}' is already registered to {existing.__qualname__}")
            _REGISTRY[kind] = cls
        return cls

    return deco


def _import_backbone_modules() -> None:
    for name in BACKBONE_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise


def registered_kinds() -> list[str]:
    """Every kind :func:`load` can restore, sorted."""
    _import_backbone_modules()
    return sorted(_REGISTRY)


def backbone_class(kind: str) -> type:
    """The class registered for ``kind``; ``ValueError`` listing the known kinds otherwise."""
    _import_backbone_modules()
    try:
        return _REGISTRY[kind]
    except KeyError:
        raise ValueError(f"unknown backbone kind '{kind}'; known kinds: {', '.join(sorted(_REGISTRY)) or 'none'}") from None


M = TypeVar("M", bound=nn.Module)


def restore_backbone(cls: type[M], payload: dict, config_class: type, name: str, device: Device, source: str) -> M:
    """``cls.from_payload`` for every backbone class: check that the payload's kind is one registered
    to ``cls``, build ``config_class.from_dict(payload["config"])`` (strict), build the networks without
    disturbing the caller's RNG, then ``model.restore_weights(payload, source)`` (which also sets the
    phase of grown models). ``name`` (e.g. ``"Pioneer"``) words the errors, every one a
    :class:`~generative.backbones.checkpoint.CheckpointError` naming ``source``."""
    kinds = [k for k, c in _REGISTRY.items() if issubclass(cls, c)]
    kind = payload.get("kind")
    if kind not in kinds:
        article = "an" if name[0].lower() in "aeiou" else "a"
        raise CheckpointError(
            f"{source} holds a '{kind}' model, not {article} {name} model ({', '.join(kinds)}); "
            "use generative.load() to restore any kind"
        )
    try:
        config = config_class.from_dict(dict(payload["config"]))
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{source}: invalid {name} config ({exc})") from exc
    if config.kind != kind:
        raise CheckpointError(f"{source}: kind '{kind}' does not match its config (a '{config.kind}' config)")
    with torch.random.fork_rng(devices=[]):  # building the nets must not disturb the caller's RNG
        model = cls(config)
    model.restore_weights(payload, source)
    return model.to(device)


def load(
    path: Union[str, os.PathLike],
    device: Union[str, torch.device] = "cpu",
    resolution: Optional[int] = None,
) -> "Backbone":
    """Restore a backbone from a checkpoint file by its recorded kind, in eval mode on ``device``.

    ``resolution`` (optional) selects a lower resolution of a progressively grown model; asking for a
    resolution the model does not have is a ``ValueError`` that lists the ones it has. A missing file
    raises ``FileNotFoundError``; a corrupt file :class:`~generative.backbones.checkpoint.CheckpointError`
    (a ``ValueError``); both name the file.
    """
    payload = read_checkpoint(path)
    kind = payload["kind"]
    try:
        cls = backbone_class(kind)
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    model = cls.from_payload(payload, device=device, source=str(path))
    if resolution is not None:
        model.set_resolution(resolution)
    return model.eval()


# The bundled default: a 64 px Pioneer (reconstruction recipe) trained by examples/train_default_backbone.py
# on rendered tabletop phone runs and turntable views, then fine-tuned on those renders together with crops of
# BSDS500's photographs, so that it reconstructs real footage too (EMA decoder + encoder in half precision,
# 6.6 MB, shipped as package data).
# The bundled weights stay in generative/weights/ (package data), beside the package rather than this module.
DEFAULT_BACKBONE = Path(__file__).resolve().parents[1] / "weights" / "pioneer64_default.safetensors"


def load_default(device: Union[str, torch.device] = "cpu") -> "Backbone":
    """The bundled default backbone (see :data:`DEFAULT_BACKBONE`), in eval mode on ``device``."""
    if not DEFAULT_BACKBONE.is_file():
        raise FileNotFoundError(
            f"the bundled default backbone is missing: expected {DEFAULT_BACKBONE} (reinstall viewgp, "
            "or make it with examples/train_default_backbone.py, or pass --backbone CKPT)"
        )
    return load(DEFAULT_BACKBONE, device=device)


def load_backbone(spec: Union[str, os.PathLike, None], device: Union[str, torch.device] = "cpu") -> "Backbone":
    """A backbone from a command-line spec: ``None`` = the bundled default; ``stylegan2:PATH`` = a
    rosinality-format StyleGAN2 checkpoint (``g_ema`` / ``latent_avg``); any other path = one of our
    checkpoints or exports, restored by its recorded kind."""
    if spec is None:
        return load_default(device)
    spec = str(spec)
    if spec.startswith("stylegan2:"):
        path = Path(spec[len("stylegan2:"):]).expanduser()
        if path.suffix != ".safetensors":
            # looked up in the registry: this module imports no backbone module
            return backbone_class("stylegan2").from_rosinality(path, device=device).eval()
        spec = str(path)
    path = Path(spec).expanduser()
    if not path.exists():  # a folder is named as one by read_checkpoint
        raise FileNotFoundError(f"backbone checkpoint not found: {path}")
    return load(path, device=device)


# ------------------------------------------------------------------------------ images
def to_model_images(frames: Union[np.ndarray, Tensor], device: Union[str, torch.device, None] = None) -> Tensor:
    """uint8 RGB ``(N, H, W, 3)`` (or one ``(H, W, 3)``) -> float32 ``(N, 3, H, W)`` in [-1, 1]."""
    x = torch.as_tensor(np.asarray(frames) if not isinstance(frames, Tensor) else frames)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected uint8 RGB frames of shape (N, H, W, 3), got {tuple(x.shape)}")
    if x.dtype != torch.uint8:
        raise ValueError(f"expected uint8 frames, got dtype {x.dtype}")
    x = x.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
    return x.to(device) if device is not None else x


def to_uint8(x: Tensor) -> np.ndarray:
    """``(N, 3, H, W)`` (or ``(3, H, W)``) floats in [-1, 1] -> uint8 RGB ``(N, H, W, 3)`` numpy array
    (values outside [-1, 1] are clipped)."""
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected images of shape (N, 3, H, W), got {tuple(x.shape)}")
    x = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def available_resolutions(max_resolution: int) -> list[int]:
    """Resolutions 4, 8, ..., ``max_resolution`` of a progressively grown model."""
    out, r = [], 4
    while r <= max_resolution:
        out.append(r)
        r *= 2
    return out


def check_resolution(requested: int, max_resolution: int, what: str = "model") -> int:
    """Return the phase index of ``requested`` (4 -> 0, 8 -> 1, ...) or raise a ``ValueError`` listing
    the resolutions the model has."""
    have = available_resolutions(max_resolution)
    if requested not in have:
        raise ValueError(f"the {what} has no {requested}x{requested} resolution; it has {', '.join(map(str, have))}")
    return have.index(requested)

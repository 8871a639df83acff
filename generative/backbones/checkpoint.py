"""Checkpoint files: atomic writes, safe reads with clear errors, rotation, RNG state, inference export.

Two file formats hold a model; both carry its ``kind`` so :func:`generative.load` can rebuild it:

* **training checkpoint** (``*.pt``, written with ``torch.save`` and read with ``weights_only=True``):
  a dict ``{"format": "viewgp-checkpoint", "version", "kind", "config", "model" (state dict, incl.
  EMA copy and spectral-norm ``u`` buffers), "phase", "alpha", "training": {...}}``; ``training``
  holds everything needed to resume exactly (optimizers, RNG states, data position, sample pool,
  counters, the training config). Everything in it is a tensor or a plain Python value.
* **inference export** (``*.safetensors``): only the weights a user needs (e.g. encoder + EMA
  decoder) plus ``{"format", "version", "kind", "config" (JSON), "phase", "alpha"}`` in the
  safetensors metadata.

:func:`read_checkpoint` returns the same payload dict for both (``training`` absent for exports).
"""

from __future__ import annotations

import errno
import json
import os
import random
import re
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np
import torch

from generative.images.fileio import atomic_write, atomic_write_text

FORMAT = "viewgp-checkpoint"
VERSION = 1
PathLike = Union[str, os.PathLike]

__all__ = [
    "CheckpointError",
    "load_torch_file",
    "load_error_reason",
    "read_checkpoint",
    "write_checkpoint",
    "atomic_write",
    "atomic_save",
    "export_safetensors",
    "CheckpointManager",
    "capture_rng_state",
    "restore_rng_state",
    "restore_autoencoder_weights",
]


class CheckpointError(ValueError):
    """A file that is not a readable viewgp checkpoint (truncated, corrupt, foreign, wrong kind)."""


# ------------------------------------------------------------------------------ writing
def atomic_save(obj: Any, path: PathLike) -> Path:
    """``torch.save`` ``obj`` to ``path`` atomically (flushed to disk before it replaces the old file)."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())

    return atomic_write(path, write)


def write_checkpoint(
    path: PathLike,
    kind: str,
    config: dict,
    model_state: dict,
    phase: int = 0,
    alpha: float = 1.0,
    training: Optional[dict] = None,
) -> Path:
    """Write a training checkpoint atomically (see module docstring for the layout)."""
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "kind": kind,
        "config": config,
        "model": model_state,
        "phase": int(phase),
        "alpha": float(alpha),
    }
    if training is not None:
        payload["training"] = training
    return atomic_save(payload, path)


def export_safetensors(
    path: PathLike, kind: str, config: dict, tensors: dict, phase: int, alpha: float = 1.0,
    dtype: Optional[torch.dtype] = None,
) -> Path:
    """Write inference weights ``tensors`` (name -> tensor) and the model description atomically.

    ``dtype`` (e.g. ``torch.float16``) stores floating-point tensors in that type to halve the file;
    loading casts them back to the model's float32 parameters."""
    from safetensors.torch import save_file

    meta = {
        "format": FORMAT,
        "version": str(VERSION),
        "kind": kind,
        "config": json.dumps(config),
        "phase": str(int(phase)),
        "alpha": repr(float(alpha)),
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    if dtype is not None:
        tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


# ------------------------------------------------------------------------------ reading
def _read_safetensors(path: Path) -> dict:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"could not read checkpoint {path}: corrupt or truncated safetensors file ({exc})") from exc
    if meta.get("format") != FORMAT or "kind" not in meta:
        raise CheckpointError(f"{path} is a safetensors file but not a viewgp model export (no 'kind' in its metadata)")
    try:
        config = json.loads(meta.get("config", "{}"))
        phase = int(meta.get("phase", "0"))
        alpha = float(meta.get("alpha", "1.0"))
    except ValueError as exc:
        raise CheckpointError(f"{path}: unreadable model description in the safetensors metadata ({exc})") from exc
    return {
        "format": FORMAT,
        "version": int(meta.get("version", VERSION)),
        "kind": meta["kind"],
        "config": config,
        "model": tensors,
        "phase": phase,
        "alpha": alpha,
        "inference_only": True,
    }


def load_error_reason(exc: BaseException) -> str:
    """Why ``torch.load`` failed, in a few words: its own messages run to paragraphs (the
    ``weights_only`` one even advises ``weights_only=False``, i.e. running the file's code)."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:
        detail = text.split("WeightsUnpickler error:", 1)[1].strip().splitlines()[0].strip()
        return f"not a PyTorch file, or one holding objects other than tensors and plain values ({detail})"
    # A zip file cut short early makes the reader seek past its end: EINVAL from the OS, not a zip error.
    if "zip archive" in text or "central directory" in text or (isinstance(exc, OSError) and exc.errno == errno.EINVAL):
        return "a corrupt or truncated PyTorch (zip) file"
    if isinstance(exc, EOFError) or not text.strip():
        return "the file ends early (truncated)"
    first = text.strip().splitlines()[0]
    return first if len(first) <= 200 else first[:200] + "..."


def load_torch_file(path: PathLike, what: str, map_location: Union[str, torch.device] = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``; a :class:`CheckpointError` saying in one line that
    ``path`` (a ``what``, e.g. "checkpoint") cannot be read, ``FileNotFoundError`` when it is missing."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # torch.load fails on junk bytes in many ways (struct, index, unpickling errors)
        raise CheckpointError(f"could not read {what} {path}: {load_error_reason(exc)}") from exc


def read_checkpoint(path: PathLike, map_location: Union[str, torch.device] = "cpu") -> dict:
    """Read a training checkpoint (``.pt``) or an inference export (``.safetensors``).

    Raises ``FileNotFoundError`` naming a missing file and :class:`CheckpointError` (a ``ValueError``)
    naming a file that is truncated, corrupt or not a viewgp checkpoint.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file (for a run folder use its checkpoints/ or model.safetensors)")
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"could not read checkpoint {path}: the file is empty")
    with open(path, "rb") as f:
        head = f.read(9)
    # torch.save writes a zip archive ("PK..."); safetensors starts with an 8-byte header length and "{".
    if path.suffix == ".safetensors" or (head[:2] != b"PK" and head[8:9] == b"{"):
        return _read_safetensors(path)
    payload = load_torch_file(path, "checkpoint", map_location)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or "kind" not in payload:
        raise CheckpointError(f"{path} is a PyTorch file but not a viewgp checkpoint (no 'kind' recorded)")
    return payload


# ------------------------------------------------------------------------------ rotation
class CheckpointManager:
    """Numbered training checkpoints ``<dir>/ckpt_<samples>.pt``; keeps the newest ``keep`` and points
    ``<dir>/latest`` (a one-line text file, replaced atomically) at the newest."""

    PATTERN = re.compile(r"^ckpt_(\d+)\.pt$")

    def __init__(self, directory: PathLike, keep: int = 3) -> None:
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.directory = Path(directory)
        self.keep = keep

    def path_for(self, samples: int) -> Path:
        return self.directory / f"ckpt_{samples:012d}.pt"

    def checkpoints(self) -> list[Path]:
        """Existing numbered checkpoints, oldest first."""
        if not self.directory.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.directory.iterdir() if (m := self.PATTERN.match(p.name))]
        return [p for _, p in sorted(found)]

    def save(self, samples: int, **payload: Any) -> Path:
        """Write ``write_checkpoint(path_for(samples), **payload)``, update ``latest``, prune old ones."""
        path = write_checkpoint(self.path_for(samples), **payload)
        atomic_write_text(self.directory / "latest", path.name + "\n")
        for old in self.checkpoints()[: -self.keep]:
            old.unlink(missing_ok=True)
        return path

    def latest(self) -> Path:
        """The newest checkpoint; ``FileNotFoundError`` naming the folder if there is none."""
        pointer = self.directory / "latest"
        if pointer.is_file():
            candidate = self.directory / pointer.read_text().strip()
            if candidate.is_file():
                return candidate
        found = self.checkpoints()
        if not found:
            raise FileNotFoundError(f"no checkpoint to resume from in {self.directory} (expected ckpt_*.pt files)")
        return found[-1]


# ------------------------------------------------------------------------------ RNG state
def capture_rng_state() -> dict:
    """torch (CPU and every CUDA device), numpy and Python RNG states as tensors / plain values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    """Inverse of :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def restore_autoencoder_weights(model, payload: dict, default_phase: int, source: str, what: str) -> None:
    """Fill a progressively grown encoder/decoder model (``encoder``, ``decoder``, ``decoder_ema``,
    ``set_phase``) from a checkpoint payload: a full training state, or an inference export holding
    only the encoder and the EMA decoder (which then also serves as the training decoder).
    Architecture mismatches become a :class:`CheckpointError` naming ``source``."""
    state = payload["model"]
    try:
        if payload.get("inference_only"):
            enc = {k[len("encoder.") :]: v for k, v in state.items() if k.startswith("encoder.")}
            dec = {k[len("decoder_ema.") :]: v for k, v in state.items() if k.startswith("decoder_ema.")}
            model.encoder.load_state_dict(enc)
            model.decoder_ema.load_state_dict(dec)
            model.decoder.load_state_dict(dec)
        else:
            model.load_state_dict(state)
        model.set_phase(int(payload.get("phase", default_phase)), float(payload.get("alpha", 1.0)))
    except (RuntimeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{source}: weights do not fit the recorded {what} architecture ({exc})") from exc

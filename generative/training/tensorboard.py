"""TensorBoard event files of the trainers: the one writer every training loop uses.

A run writes ``<run folder>/tensorboard/events.out.tfevents.*`` beside its checkpoints and ``metrics.jsonl``
(``tensorboard --logdir <run folder>``): losses, learning rate, images/s, reconstruction grids and
reconstruction PSNR. The global step is the trainer's own progress counter (images seen by the
progressive autoencoders, iterations of the translator, optimiser steps of the GP-prior autoencoder), so
a resumed run appends to the same folder and its curves continue from the checkpoint: events that a
crashed run wrote after that checkpoint are purged (``purge_step``), so no curve ever steps backwards.

TensorBoard is an optional extra (``pip install 'viewgp[tensorboard]'``). ``enabled=None`` (the default)
writes event files where it is installed and otherwise prints one line, once per process, and goes on
with ``metrics.jsonl`` alone; ``enabled=True`` is a user who asked for TensorBoard: a missing package is
then an error before training starts; ``enabled=False`` writes nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Mapping, Optional, Union

import torch
from torch import Tensor

__all__ = ["EventLog", "TensorBoardUnavailable", "TENSORBOARD_DIR", "MISSING_MESSAGE", "tensorboard_available",
           "tile_images"]

TENSORBOARD_DIR = "tensorboard"  # the event folder inside a run folder
MISSING_MESSAGE = ("TensorBoard is not installed: no event files, metrics.jsonl only "
                   "(pip install 'viewgp[tensorboard]' for them)")
_warned = False  # the missing-package line is printed once per process, not once per run or stage


class TensorBoardUnavailable(ImportError):
    """TensorBoard was asked for explicitly (``enabled=True`` / ``--tensorboard``) but is not installed."""


def tensorboard_available() -> bool:
    """Whether event files can be written (the tensorboard package is importable through torch)."""
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def tile_images(images: Tensor, nrow: int, size: Optional[int] = None) -> Tensor:
    """``(N, 3, r, r)`` images in [-1, 1] -> one ``(3, H, W)`` grid in [0, 1], ``nrow`` images per row,
    each nearest-upsampled to ``size`` px first (tiny training images stay readable)."""
    from torchvision.utils import make_grid

    x = images.detach().float().cpu().clamp(-1, 1)
    if size is not None and x.shape[-1] != size:
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="nearest")
    return make_grid((x + 1) / 2, nrow=nrow, padding=1)


class EventLog:
    """A TensorBoard writer for one run folder, or a no-op where TensorBoard is off or missing.

    ``log_dir``: the event folder (``<run>/tensorboard``). ``purge_step``: the first step this start will
    write; events of earlier starts at or after it are hidden (a run resumed from a checkpoint passes
    ``checkpoint step + 1``). Every method is safe to call when :attr:`active` is False.
    """

    def __init__(self, log_dir: Union[str, Path], enabled: Optional[bool] = None, purge_step: Optional[int] = None) -> None:
        self.log_dir = Path(log_dir)
        self.writer = None
        self.last_step = -1 if purge_step is None else int(purge_step) - 1
        if enabled is False:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:  # torch raises it when the tensorboard package is missing
            if enabled:
                raise TensorBoardUnavailable(f"TensorBoard was asked for but cannot be used ({exc}); "
                                             "pip install 'viewgp[tensorboard]', or train without --tensorboard") from None
            _warn_missing()
            return
        self.writer = SummaryWriter(str(self.log_dir), purge_step=purge_step)

    @property
    def active(self) -> bool:
        """Whether event files are being written."""
        return self.writer is not None

    def scalars(self, step: int, values: Mapping[str, Optional[float]]) -> None:
        """One point per tag at ``step``; ``None`` values are skipped (a quantity this run does not have)."""
        if self.writer is None:
            return
        for tag, value in values.items():
            if value is not None:
                self.writer.add_scalar(tag, float(value), int(step))
        self.last_step = max(self.last_step, int(step))

    def image_grid(self, tag: str, step: int, images: Tensor, nrow: int, size: Optional[int] = None) -> None:
        """``images (N, 3, r, r)`` in [-1, 1] as one grid image (see :func:`tile_images`) at ``step``."""
        if self.writer is None:
            return
        self.writer.add_image(tag, tile_images(images, nrow, size), int(step))
        self.last_step = max(self.last_step, int(step))

    def flush(self) -> None:
        """Write pending events now (the writer otherwise flushes every 2 minutes)."""
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def __enter__(self) -> "EventLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _warn_missing() -> None:
    global _warned
    if not _warned:
        _warned = True
        print(MISSING_MESSAGE, file=sys.stderr)

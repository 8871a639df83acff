"""What several ``viewgp`` commands share: device choice, backbone loading, argument checks and option
groups, and the reading and writing of the images named on the command line.

Command modules import these public helpers and never each other's private names, so no command module
depends on another (the one exception, ``sample --conditional`` calling :mod:`sequences.cli.mix`, goes
one way). The project's packages (and with them torch) are imported inside the functions, so that
building the parser (``viewgp --help``) stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    import torch

__all__ = [
    "SCALE_FLAGS",
    "choose_device",
    "load_backbone",
    "backbone_from_args",
    "positive",
    "add_backbone_args",
    "load_images",
    "save_grid",
    "add_translator_model_args",
    "translator_model",
    "add_capture_args",
    "capture_from_args",
]


#: The automodulator scale options (--coarse ...): generative.mixing.SCALES, spelled out so that building
#: the parser does not import torch (a test checks that the two agree).
SCALE_FLAGS = ("coarse", "intermediate", "fine")


# ------------------------------------------------------------------------------------ backbone, device
def choose_device(name: str) -> str:
    """``--device`` value -> a torch device name; ``auto`` is ``cuda`` when available, else ``cpu``."""
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_backbone(path: str, device: str):
    """Load a backbone (tests replace this function with one returning a small model)."""
    from generative.backbone import load_backbone as load

    return load(path, device)


def backbone_from_args(args: argparse.Namespace):
    """The backbone of ``--backbone`` on the device of ``--device`` (see :func:`add_backbone_args`)."""
    # Looked up here at call time, so a test that replaces load_backbone replaces it for every command.
    return load_backbone(args.backbone, choose_device(args.device))


def positive(name: str, value) -> int:
    """``value`` as an int >= 1; a ``ValueError`` naming the option ``name`` otherwise."""
    if value is None or int(value) < 1:
        raise ValueError(f"{name} must be a positive integer, got {value}")
    return int(value)


def add_backbone_args(p: argparse.ArgumentParser, backbone_help: str = "checkpoint of a trained backbone") -> None:
    """``--backbone CKPT`` (required), ``--device`` (default auto) and ``--batch-size`` (default 16)."""
    p.add_argument("--backbone", required=True, metavar="CKPT", help=backbone_help)
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default auto: cuda when available)")
    p.add_argument("--batch-size", type=int, default=16, help="images per forward pass (default 16)")


# ------------------------------------------------------------------------------------------ image files
def load_images(specs: Sequence[str], resolution: int) -> tuple[list[Path], "torch.Tensor"]:
    """``(paths, images)`` for image files and folders ``specs`` (a folder's JPEG/PNG files, sorted, not
    recursive): images ``(N, 3, r, r)`` float in [-1, 1], centre-cropped to a square and resized."""
    import numpy as np

    from generative.backbone import to_model_images
    from generative.data import square_resize
    from generative.imageio import list_images, read_image

    paths = list_images(specs)
    frames = np.stack([square_resize(read_image(p), resolution) for p in paths])
    return paths, to_model_images(frames)


def save_grid(path: Path, images: "torch.Tensor", nrow: int) -> None:
    """Tile ``(N, 3, r, r)`` images in [-1, 1] into rows of ``nrow`` with a 2-pixel white border."""
    import torchvision

    from generative.backbone import to_uint8
    from generative.imageio import write_image

    grid = torchvision.utils.make_grid(images.clamp(-1, 1), nrow=max(1, int(nrow)), padding=2, pad_value=1.0)
    write_image(path, to_uint8(grid)[0])


# --------------------------------------------------------------------------------- CycleGAN translators
def add_translator_model_args(group) -> None:
    """The CycleGAN network options, shared by ``viewgp train translator`` and ``viewgp age train``."""
    group.add_argument("--gen-width", type=int, default=64, help="first generator conv width (default 64, the paper's)")
    group.add_argument("--res-blocks", type=int, default=9, help="generator residual blocks (default 9)")
    group.add_argument("--disc-width", type=int, default=64, help="discriminator width (default 64)")
    group.add_argument("--disc-layers", type=int, default=3, help="PatchGAN stride-2 layers (default 3: 70x70 "
                       "patches; images must be >= 3 * 2^layers px)")  # fmt: skip


def translator_model(args: argparse.Namespace) -> dict:
    """``TranslatorConfig`` fields from :func:`add_translator_model_args` options."""
    return dict(gen_width=args.gen_width, n_res_blocks=args.res_blocks, disc_width=args.disc_width, disc_layers=args.disc_layers)


# ------------------------------------------------------------------------------------------ captures
POSE_FORMATS_HELP = ("poses file (TUM, EuRoC, KITTI, COLMAP images.txt/images.bin or model folder, NeRF "
                     "transforms.json, ARKit, ADVIO, phone gyroscope/orientation CSV)")


def add_capture_args(group) -> None:
    """The capture source options: ``--video``/``--images`` with ``--poses`` and how to time them."""
    group.add_argument("--video", help="a video file OpenCV can read")
    group.add_argument("--images", metavar="DIR",
                       help="a folder of posed images: matched to the poses by file name where the format names "
                       "images (COLMAP, transforms.json), else by sorted order (the counts must agree)")
    group.add_argument("--poses", help=POSE_FORMATS_HELP)
    group.add_argument("--format", default=None, help="pose format; detected from the file when omitted "
                       "(an ambiguous file is refused with the candidates)")
    group.add_argument("--times", default=None, help="KITTI times.txt (with --format kitti)")
    group.add_argument("--frame-times", default=None, metavar="FILE",
                       help="per-frame times (t, or t,frame_index per line): with --images one time per image; "
                       "with --video and poses without timestamps (COLMAP, transforms.json) the time of each "
                       "posed frame on the video clock, one per pose")
    group.add_argument("--time-offset", type=float, default=0.0, help="seconds added to frame times before alignment")
    group.add_argument("--max-frames", type=int, default=None)


def capture_from_args(args: argparse.Namespace):
    """The :class:`~sequences.run.CameraRun` of :func:`add_capture_args` options (and ``--run`` where present)."""
    from sequences.captures import load_capture

    return load_capture(run=getattr(args, "run", None), video=args.video, images=args.images, poses=args.poses,
                        format=args.format, times_path=args.times, frame_times=args.frame_times,
                        time_offset=args.time_offset, max_frames=args.max_frames)

"""The one way every ``viewgp`` command gets its backbone and the weight folders it checks first:
``--backbone`` / ``--device`` / ``--precision`` / ``--batch-size``, :func:`load_backbone` (through
:func:`generative.backbones.registry.load_backbone`, looked up at call time so a test can replace it
for every command), the LPIPS / VGG weight folders, and the CycleGAN translator's network options.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from sequences.cli.options import add_device_arg, add_precision_arg, choose_device, positive_int

__all__ = ["load_backbone", "backbone_from_args", "add_backbone_args", "LPIPS_ALEX_FILES", "LPIPS_VGG_FILES",
           "require_weights", "add_translator_model_args", "translator_model"]


def load_backbone(path: str | None, device: str):
    """The backbone of ``path`` (a checkpoint, ``stylegan2:G.pt``, or ``None`` for the bundled default) on
    ``device``: every command loads its backbone here (tests replace this function with a small model)."""
    from generative.backbones.registry import load_backbone as load

    return load(path, device)


def backbone_from_args(args: argparse.Namespace):
    """The backbone of ``--backbone`` on the device of ``--device`` (see :func:`add_backbone_args`)."""
    # Looked up here at call time, so a test that replaces load_backbone replaces it for every command.
    return load_backbone(args.backbone, choose_device(args.device))


ANY_BACKBONE_HELP = "checkpoint of a trained backbone (kinds: {registry:backbones})"  # kinds filled when shown


def add_backbone_args(p: argparse.ArgumentParser, backbone_help: str = ANY_BACKBONE_HELP,
                      required: bool = True) -> None:
    """``--backbone CKPT`` (required, or the bundled default), ``--device`` (default auto), ``--precision``
    and ``--batch-size``."""
    if required:
        p.add_argument("--backbone", required=True, metavar="CKPT", help=backbone_help)
    else:
        p.add_argument("--backbone", default=None, metavar="CKPT",
                       help=f"{backbone_help}; default: the bundled 64 px Pioneer")
    add_device_arg(p)
    add_precision_arg(p, "the encoder and decoder passes", whole_command=True)
    p.add_argument("--batch-size", type=positive_int, default=16, help="images per forward pass (default 16)")


# ------------------------------------------------------------------------------------------ weights
#: What a --lpips-weights / --vgg-weights folder must hold (torchvision's backbone, the lpips package's head).
LPIPS_ALEX_FILES = ("alexnet-owt-7be5be79.pth", "alex.pth")
LPIPS_VGG_FILES = ("vgg16-397923af.pth", "vgg.pth")


def require_weights(flag: str, folder: str | None, names: Sequence[str]) -> None:
    """``FileNotFoundError`` naming ``flag`` when ``folder`` is given but lacks one of ``names``, so a
    run fails before its work rather than after it."""
    if folder is None:
        return
    d = Path(folder).expanduser()
    missing = [n for n in names if not (d / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{flag} {folder}: {missing[0]} is not there (the folder needs {' and '.join(names)})")


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

"""``viewgp invert``: optimization-based inversion of images or video frames into a generator's latents."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from sequences.cli.backbones import LPIPS_VGG_FILES, require_weights
from sequences.cli.options import add_device_arg, non_negative_float, positive_float, positive_int

EPILOG = """examples:
  viewgp invert --generator stylegan2-ffhq-256.pt --images faces/ --space wplus --steps 1000 --out latents.pt
  viewgp invert --generator G.pt --video run.mp4 --every 10 --steps 200 --vgg-weights ~/weights --out keys.pt
  viewgp invert --generator runs/pioneer64/model.safetensors --images crops/ --init encoder --steps 50 --out z.pt

--generator takes a rosinality-format StyleGAN2 checkpoint (g_ema, latent_avg) or any of our checkpoints.
Per-frame results are written to OUT.frames/ as they finish; rerunning the same command after a kill
continues where it stopped. OUT holds {"latents": (N, *latent_shape), "indices", "names", "losses", "config"}.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser("invert", help="invert images or video frames into a generator's latent space",
                              description="Optimization-based inversion (StyleGAN2 projector schedule) into W / W+, "
                              "or encoder-initialised refinement for backbones with an encoder.",
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--generator", required=True, metavar="CKPT", help="rosinality StyleGAN2 .pt, or one of our checkpoints")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", nargs="+", metavar="DIR|FILE", help="image files or folders")
    src.add_argument("--video", metavar="FILE", help="a video file")
    p.add_argument("--every", type=positive_int, default=1, help="invert every K-th frame of a video (default 1)")
    p.add_argument("--space", choices=("w", "wplus"), default="wplus",
                   help="latent space: w (one style vector) or wplus (one per layer; closer fits) (default wplus)")
    p.add_argument("--steps", type=positive_int, default=1000, help="optimisation steps per image (default 1000)")
    p.add_argument("--lr", type=positive_float, default=0.1, help="Adam learning rate (default 0.1)")
    p.add_argument("--init", choices=("mean", "encoder"), default="mean",
                   help="start from the mean latent, or from the backbone's encoding (backbones with an "
                   "encoder) (default mean)")
    p.add_argument("--no-noise", action="store_true", help="keep the generator's noise maps fixed")
    p.add_argument("--mse", type=non_negative_float, default=0.0, help="pixel-MSE weight next to the perceptual loss (default 0)")
    p.add_argument("--vgg-weights", default=None, metavar="DIR",
                   help="folder with vgg16-397923af.pth and vgg.pth (LPIPS-VGG loss); default: pixel MSE")
    p.add_argument("--batch-size", type=positive_int, default=1, help="frames optimised together (default 1)")
    p.add_argument("--out", required=True, metavar="PT", help="output file (.pt); per-frame results in OUT.frames/")
    add_device_arg(p, "cpu")
    p.add_argument("--seed", type=int, default=0, help="seed of the latent noise schedule (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _generator(spec: str, device: str):
    from sequences.cli.backbones import load_backbone

    path = Path(spec).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"generator checkpoint not found: {path}")
    try:
        from generative.backbones.checkpoint import read_checkpoint

        read_checkpoint(path)
        return load_backbone(str(path), device)  # one of ours (records its kind)
    except ValueError:
        return load_backbone(f"stylegan2:{path}", device)  # rosinality layout


def _claim(work: Path, settings: dict) -> None:
    """Record the settings of a work folder once; refuse to mix results of other settings into it.

    ``settings.json`` is written only when it is missing or unreadable, atomically, so a kill at start-up
    never leaves a record that disowns the finished frames. An unreadable record (an older version wrote it
    in place) is rebuilt when every finished frame was made with this configuration."""
    import json

    from generative.backbones.checkpoint import load_torch_file
    from generative.images.fileio import atomic_write_text

    work.mkdir(parents=True, exist_ok=True)
    record = work / "settings.json"
    text = json.dumps(settings, sort_keys=True, indent=1)
    try:
        found = json.loads(record.read_text()) if record.exists() else None
    except (ValueError, OSError):
        found = "unreadable"
    if found == settings:
        return
    if found is not None and found != "unreadable":
        raise ValueError(f"{work} holds inversions made with other settings (see {record}); "
                         "delete it or choose another --out")
    if found == "unreadable":
        frames = sorted(work.glob("frame_*.pt"))
        if any(load_torch_file(f, "inversion result").get("config") != settings["config"] for f in frames):
            raise ValueError(f"{record} is unreadable and the finished frames in {work} were made with another "
                             "configuration; delete the folder or choose another --out")
    atomic_write_text(record, text)


def _sources(args) -> tuple[list[Path], Sequence, list[int], list[str]]:
    """``(image paths, frames, indices to invert, names)`` of ``--images`` or ``--video``."""
    if args.images:
        from generative.images.imageio import list_images, read_image

        paths = list_images(args.images)
        frames = [read_image(p) for p in paths]
        return paths, frames, list(range(len(frames))), [p.name for p in paths]
    from sequences.capture.video import VideoFrames

    frames = VideoFrames(args.video)  # lazy: frame i is decoded only when (and if) it is inverted
    indices = list(range(0, len(frames), args.every))
    return [], frames, indices, [f"frame {i}" for i in indices]


def run(args) -> int:
    from dataclasses import asdict

    import torch

    from generative.backbones.checkpoint import atomic_save, load_torch_file
    from generative.latents.invert import InversionConfig, PerceptualLoss, invert_frames

    require_weights("--vgg-weights", args.vgg_weights, LPIPS_VGG_FILES)
    gen = _generator(args.generator, args.device)
    paths, frames, indices, names = _sources(args)
    config = InversionConfig(space=args.space, steps=args.steps, lr=args.lr, init=args.init, mse=args.mse,
                             optimize_noise=not args.no_noise, batch_size=args.batch_size, seed=args.seed)
    perceptual = PerceptualLoss(args.vgg_weights, device=args.device) if args.vgg_weights else None
    work = Path(str(args.out) + ".frames")
    _claim(work, {"config": asdict(config), "generator": os.path.abspath(args.generator),
                  "source": os.path.abspath(args.video) if args.video else [os.path.abspath(p) for p in paths],
                  "vgg": bool(args.vgg_weights)})
    latents = invert_frames(gen, frames, work, config, perceptual, indices=indices, device=args.device,
                            progress=not args.quiet)
    losses = [float(load_torch_file(work / f"frame_{i:06d}.pt", "inversion result")["loss"]) for i in indices]
    atomic_save({"latents": latents, "indices": indices, "names": names, "losses": losses, "config": asdict(config),
                 "generator": os.path.abspath(args.generator)}, args.out)
    print(f"wrote {args.out}: {len(indices)} latents of shape {tuple(latents.shape[1:])}; "
          f"mean final loss {np.mean(losses):.5f}")
    return 0

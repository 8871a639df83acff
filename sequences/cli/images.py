"""``viewgp reconstruct | sample | interpolate-images | attribute``: a backbone's latent space on still
images (thesis 2.3.1): reconstructions, random samples, latent interpolation and attribute editing.

Images are read with OpenCV (any size; grey or alpha images become RGB), centre-cropped to a square and
resized to the backbone's resolution; outputs are PNGs. Image grids have a 2-pixel white border.
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from sequences.cli.backbones import add_backbone_args, backbone_from_args
from sequences.cli.image_files import load_images, save_grid
from sequences.cli.options import SCALE_FLAGS, UsageError, positive_int
from sequences.cli.outputs import add_output_args, staged_output
from sequences.cli.mix import run_conditional_sample

if TYPE_CHECKING:
    import torch

RECONSTRUCT_EPILOG = """examples:
  viewgp reconstruct --backbone celeba64.pt --images faces/ --out recon/
  viewgp reconstruct --backbone celeba64.pt --images a.png b.jpg --out recon/ --device cuda
writes OUT/<name>.png per input and OUT/comparison.png (input | reconstruction per row).
"""

SAMPLE_EPILOG = """examples:
  viewgp sample --backbone celeba64.pt -n 16 --out samples.png --seed 0
  viewgp sample --backbone celeba64.pt -n 64 --nrow 16 --out wide.png
  viewgp sample --conditional --backbone auto32.safetensors --coarse A.png -n 8 --out cond.png
--conditional (automodulator only): the blocks of the scales given (--coarse, --intermediate, --fine)
are driven by that image's code, the other blocks by random latents.
"""

INTERPOLATE_EPILOG = """examples:
  viewgp interpolate-images --backbone celeba64.pt A.png B.png --steps 8 --out strip.png
  viewgp interpolate-images --backbone celeba64.pt TL.png TR.png BL.png BR.png --steps 8 --out grid.png
two images: one row A | decoded path (steps images) | B. Four images: a steps x steps grid whose
corners are top-left, top-right, bottom-left, bottom-right. Sphere latents move along great circles.
"""

ATTRIBUTE_EPILOG = """examples:
  viewgp attribute --backbone celeba64.pt --with smiling/ --without neutral/ --images test/ \\
      --lambdas -2,-1,0,1,2 --out smile/
  viewgp attribute --backbone celeba64.pt --vector smile/attribute_vector.pt --images more/ --out smile2/
the attribute vector is mean(E(with)) - mean(E(without)), saved as OUT/attribute_vector.pt; each input
gets OUT/<name>.png = input | decode(E(x) + lambda v) for every lambda (re-projected onto the sphere
for sphere latents); OUT/grid.png stacks them. The thesis found lambda in [-2, 2] well-behaved on faces.
"""

DEFAULT_LAMBDAS = "-2,-1,0,1,2"


# ------------------------------------------------------------------------------------------ helpers
def _output_names(paths: Sequence[Path]) -> list[str]:
    """``<stem>.png`` per input, made unique when two inputs share a stem."""
    names, seen = [], {}
    for p in paths:
        k = seen.get(p.stem, 0)
        seen[p.stem] = k + 1
        names.append(f"{p.stem}.png" if k == 0 else f"{p.stem}_{k}.png")
    return names


def parse_lambdas(text: str) -> list[float]:
    """``"-2,-1,0,1,2"`` -> ``[-2.0, -1.0, 0.0, 1.0, 2.0]``; a clear ``ValueError`` on any bad entry."""
    parts = [s.strip() for s in str(text).split(",")]
    if not any(parts):
        raise ValueError(f"--lambdas is empty; give comma-separated numbers such as {DEFAULT_LAMBDAS}")
    out = []
    for s in parts:
        try:
            v = float(s)
        except ValueError:
            raise ValueError(f"bad --lambdas entry {s!r} in {text!r}; expected comma-separated numbers such as {DEFAULT_LAMBDAS}") from None
        if not math.isfinite(v):
            raise ValueError(f"bad --lambdas entry {s!r} in {text!r}; scales must be finite")
        out.append(v)
    return out


# --------------------------------------------------------------------------------------- registration
def register(subparsers) -> None:
    """Add ``reconstruct``, ``sample``, ``interpolate-images`` and ``attribute``."""
    _register_reconstruct(subparsers)
    _register_sample(subparsers)
    _register_interpolate(subparsers)
    _register_attribute(subparsers)


def _backbone_command(subparsers, name: str, epilog: str, required: bool = True, **texts) -> argparse.ArgumentParser:
    """A sub-command that runs a backbone: its parser, with the ``--backbone/--device/--batch-size`` options
    (``required=False``: ``--backbone`` defaults to the bundled backbone)."""
    p = subparsers.add_parser(name, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter, **texts)
    add_backbone_args(p, required=required)
    return p


def _register_reconstruct(subparsers) -> None:
    p = _backbone_command(
        subparsers, "reconstruct", RECONSTRUCT_EPILOG, required=False, help="encode and decode images with a backbone",
        description="Reconstruct images through a backbone's encoder and decoder, and report RMSE/PSNR "
        "(on the [0, 1] intensity scale, as the pipeline's metrics).",
    )  # fmt: skip
    p.add_argument("--images", nargs="+", required=True, metavar="DIR|FILE", help="image files and/or folders")
    add_output_args(p)
    p.set_defaults(func=run_reconstruct)


def _register_sample(subparsers) -> None:
    p = _backbone_command(
        subparsers, "sample", SAMPLE_EPILOG, required=False,
        help="decode random latents from the backbone's prior into an image grid",
        description="Draw latents from the prior (normalised N(0, I) on the sphere, N(0, I) otherwise) and "
        "decode them into one image grid.",
    )  # fmt: skip
    p.add_argument("-n", "--num", type=positive_int, default=16, help="number of samples (default 16)")
    p.add_argument("--nrow", type=positive_int, default=None, help="images per grid row (default ceil(sqrt(n)))")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--out", required=True, metavar="PNG", help="output image grid")
    # automodulator conditional sampling (sequences/cli/mix.py): keep the named scales of the given images
    p.add_argument("--conditional", action="store_true",
                   help="automodulator: fix the blocks of the scales given below from images, draw the rest")  # fmt: skip
    for scale in SCALE_FLAGS:
        p.add_argument(f"--{scale}", default=None, metavar="IMAGE", help=f"with --conditional: image whose code drives the {scale} blocks")
    p.set_defaults(func=run_sample)


def _register_interpolate(subparsers) -> None:
    p = _backbone_command(
        subparsers, "interpolate-images", INTERPOLATE_EPILOG, help="interpolate in latent space between 2 (strip) or 4 (grid) images",
        description="Encode two images and decode the latent path between them, or four images and "
        "decode the 2-D grid they span (slerp for sphere latents, lerp otherwise).",
    )  # fmt: skip
    p.add_argument("images", nargs="+", metavar="IMAGE", help="2 or 4 image files")
    p.add_argument("--steps", type=positive_int, default=8, help="interpolation steps incl. both ends, at least 2 (default 8)")
    p.add_argument("--out", required=True, metavar="PNG", help="output strip or grid")
    p.set_defaults(func=run_interpolate_images)


def _register_attribute(subparsers) -> None:
    p = _backbone_command(
        subparsers, "attribute", ATTRIBUTE_EPILOG, help="edit images along a latent attribute vector (mean difference of two sets)",
        description="Find an attribute's latent direction from exemplar folders with and without it, "
        "then add it to the latents of new images with several scales lambda.",
    )  # fmt: skip
    p.add_argument("--with", dest="with_images", nargs="+", metavar="DIR|FILE", help="images that have the attribute")
    p.add_argument("--without", dest="without_images", nargs="+", metavar="DIR|FILE", help="images that lack it")
    p.add_argument("--vector", default=None, metavar="PT", help="use a saved attribute_vector.pt instead of --with/--without")
    p.add_argument("--images", nargs="+", required=True, metavar="DIR|FILE", help="images to edit")
    p.add_argument("--lambdas", default=DEFAULT_LAMBDAS, help=f"comma-separated scales (default {DEFAULT_LAMBDAS})")
    add_output_args(p)
    # Let "--lambdas -2,-1,0,1,2" parse as a value: by default argparse only treats "-2" or "-.5" as
    # numbers and would take "-2,-1,..." for an unknown option.
    if hasattr(p, "_negative_number_matcher"):
        p._negative_number_matcher = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?(,\s*-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)*$")
    p.set_defaults(func=run_attribute)


# ------------------------------------------------------------------------------------------- commands
def run_reconstruct(args) -> int:
    import torch

    from generative.backbones.registry import to_uint8
    from generative.latents.edit import reconstruct
    from generative.images.imageio import write_image
    from generative.metrics import psnr, rmse

    with staged_output(args) as out:
        backbone = backbone_from_args(args)
        paths, x = load_images(args.images, int(backbone.resolution))
        rec = reconstruct(backbone, x, args.batch_size)
        for name, img in zip(_output_names(paths), to_uint8(rec)):
            write_image(out / name, img)
        pairs = torch.stack([x, rec], 1).reshape(-1, *x.shape[1:])  # input, reconstruction, input, ...
        save_grid(out / "comparison.png", pairs, nrow=2)
    # RMSE of [0, 1] intensities, as the pipeline's metrics (the images are in [-1, 1] here: half their
    # RMSE); the PSNR is the same on either scale (metrics.psnr takes [-1, 1] floats, range 2).
    rec = rec.clamp(-1, 1)  # what the written PNGs hold
    mean = x.mean(0, keepdim=True).expand_as(x)  # the baseline a model must beat
    print(
        f"{len(paths)} reconstructions -> {args.out}  RMSE {rmse((x + 1) / 2, (rec + 1) / 2).item():.4f} "
        f"(in [0, 1] units; the inputs' mean image: {rmse((x + 1) / 2, (mean + 1) / 2).item():.4f}), "
        f"PSNR {psnr(x, rec).item():.2f} dB"
    )
    return 0


def run_sample(args) -> int:
    import torch

    from generative.latents.edit import decode_latents, sample_latents

    n = args.num
    scales = [f"--{s}" for s in SCALE_FLAGS if getattr(args, s, None) is not None]
    if scales and not getattr(args, "conditional", False):
        raise UsageError(f"{', '.join(scales)} only go with --conditional")
    backbone = backbone_from_args(args)
    if getattr(args, "conditional", False):
        return run_conditional_sample(args, backbone)
    z = sample_latents(backbone, n, torch.Generator().manual_seed(int(args.seed)))
    images = decode_latents(backbone, z, args.batch_size)
    nrow = args.nrow if args.nrow is not None else math.ceil(math.sqrt(n))
    save_grid(Path(args.out), images, nrow)
    print(f"{n} samples (seed {args.seed}) -> {args.out}")
    return 0


def run_interpolate_images(args) -> int:
    import torch

    from generative.latents.edit import decode_latents, encode_images, interpolate, interpolation_grid

    if len(args.images) not in (2, 4):
        raise UsageError(f"interpolate-images takes 2 images (a strip) or 4 (a grid), got {len(args.images)}")
    steps = int(args.steps)
    if steps < 2:
        raise UsageError(f"--steps must be at least 2, got {steps}")
    bs = args.batch_size
    backbone = backbone_from_args(args)
    paths, x = load_images(args.images, int(backbone.resolution))
    z = encode_images(backbone, x, bs)
    if len(paths) == 2:
        path = decode_latents(backbone, interpolate(backbone, z[0], z[1], steps), bs)
        save_grid(Path(args.out), torch.cat([x[:1], path, x[1:]]), nrow=steps + 2)
        print(f"{steps}-step interpolation {paths[0].name} -> {paths[1].name} -> {args.out}")
    else:
        grid = interpolation_grid(backbone, z, steps, steps)
        images = decode_latents(backbone, grid.reshape((steps * steps,) + tuple(z.shape[1:])), bs)
        save_grid(Path(args.out), images, nrow=steps)
        print(f"{steps}x{steps} interpolation grid of {', '.join(p.name for p in paths)} -> {args.out}")
    return 0


def _read_vector(path: str, latent_shape: tuple) -> "torch.Tensor":
    import torch

    from generative.backbones.checkpoint import load_torch_file

    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"attribute vector file not found: {p}")
    v = load_torch_file(p, "attribute vector")
    if isinstance(v, dict):
        v = v.get("vector")
    if not isinstance(v, torch.Tensor) or tuple(v.shape) != tuple(latent_shape):
        got = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
        raise ValueError(f"{p}: expected an attribute vector of shape {tuple(latent_shape)}, got {got}")
    return v.float()


def run_attribute(args) -> int:
    import torch

    from generative.backbones.checkpoint import atomic_save
    from generative.latents.edit import apply_attribute, attribute_vector

    try:
        lambdas = parse_lambdas(args.lambdas)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    bs = args.batch_size
    if args.vector is None and not (args.with_images and args.without_images):
        raise UsageError("give both --with and --without exemplar images, or --vector with a saved attribute vector")
    if args.vector is not None and (args.with_images or args.without_images):
        raise UsageError("give either --vector or --with/--without, not both")
    with staged_output(args) as out:
        backbone = backbone_from_args(args)
        r = int(backbone.resolution)
        if args.vector is not None:
            v = _read_vector(args.vector, tuple(backbone.latent_shape))
        else:
            (_, xa), (_, xb) = load_images(args.with_images, r), load_images(args.without_images, r)
            v = attribute_vector(backbone, xa, xb, bs)
            atomic_save(v, out / "attribute_vector.pt")
            print(f"attribute vector from {len(xa)} with / {len(xb)} without, |v| = {v.norm().item():.4f}")
        paths, x = load_images(args.images, r)
        edited = apply_attribute(backbone, x, v, lambdas, bs)  # (L, B, 3, r, r)
        rows = torch.cat([x[None], edited]).transpose(0, 1)  # (B, 1 + L, 3, r, r)
        for name, row in zip(_output_names(paths), rows):
            save_grid(out / name, row, nrow=len(row))
        save_grid(out / "grid.png", rows.reshape(-1, *x.shape[1:]), nrow=rows.shape[1])
    print(f"{len(paths)} images x lambdas {lambdas} -> {args.out}")
    return 0

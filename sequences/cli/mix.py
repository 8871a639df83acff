"""``viewgp mix``: scale-specific style mixing of real images with an automodulator (thesis 3.3, 4.3), and
the conditional sampling behind ``viewgp sample --conditional``.

An automodulator decoder takes one latent per resolution block, so the codes of several encoded images
can drive different blocks: ``coarse`` = the 4-8 px blocks, ``intermediate`` = 16-64 px, ``fine`` = 128 px
and up. Three forms:

* ``--coarse A --intermediate B --fine C``: each scale's blocks driven by that image's code; a scale left
  out takes the image of the nearest coarser scale given (the coarsest given image fills coarser ones), so
  ``--coarse A --intermediate B`` on a 256 px model also takes the fine blocks from B;
* ``--a A --b B --cut K``: blocks ``0 ... K-1`` from A, blocks ``K ...`` from B;
* ``--grid --rows A1 A2 ... --cols B1 B2 ...``: a style-mixing grid, cell (i, j) = coarse blocks (or blocks
  below ``--cut``) from A_i, the rest from B_j; the first row shows the B images, the first column the A
  images (input images, not reconstructions), the corner is blank.

Conditional sampling (``viewgp sample --conditional --coarse A.png -n 8``): the blocks of the named scales
are driven by the image's code, the other blocks by fresh draws from the prior (uniform on the sphere).
Latents are drawn on the CPU with a seeded generator, so a seed gives the same samples on any device.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

from sequences.cli.backbones import add_backbone_args, backbone_from_args
from sequences.cli.image_files import load_images, save_grid
from sequences.cli.options import SCALE_FLAGS, UsageError, non_negative_int

if TYPE_CHECKING:
    import torch

MIX_EPILOG = """examples:
  viewgp mix --backbone auto32.safetensors --coarse A.png --intermediate B.png --out mix.png
  viewgp mix --backbone auto256.pt --coarse A.png --intermediate B.png --fine C.png --out mix.png
  viewgp mix --backbone auto32.safetensors --a A.png --b B.png --cut 1 --out cut.png
  viewgp mix --backbone auto32.safetensors --grid --rows A1.png A2.png --cols B1.png B2.png B3.png --out grid.png
scales: coarse = 4-8 px blocks, intermediate = 16-64 px, fine = 128 px and up. A scale left out takes
the image of the nearest coarser scale given. --cut K: blocks 0 ... K-1 from A, the rest from B.
--grid: cell (i, j) = coarse from row image A_i, the rest from column image B_j (or blocks < --cut
from A_i); the first row / column show the source images.
"""

# ------------------------------------------------------------------------------------------ checks
def require_automodulator(backbone, command: str) -> None:
    """A clear ``ValueError`` unless ``backbone`` decodes per-block latents (an automodulator)."""
    from generative.latents.mixing import is_automodulator

    if not is_automodulator(backbone):
        kind = getattr(backbone, "kind", type(backbone).__name__)
        raise ValueError(
            f"{command} needs an automodulator backbone (one latent per decoder block); the checkpoint holds "
            f"a '{kind}' model. Train one with: viewgp train automodulator ..."
        )


def _check_scales_exist(backbone, given: Sequence[str]) -> None:
    from generative.latents.mixing import blocks_by_scale

    blocks = blocks_by_scale(backbone)
    for s in given:
        if not blocks[s]:
            raise UsageError(
                f"the {int(backbone.resolution)} px automodulator has no {s} blocks (coarse = 4-8 px, "
                f"intermediate = 16-64 px, fine = 128 px and up); drop --{s}"
            )


def _check_file(path: Optional[str], flag: str) -> None:
    if path is not None and not Path(path).expanduser().is_file():
        raise FileNotFoundError(f"{flag}: image not found: {path}")


def _check_cut(cut: int, backbone) -> int:
    nb = len(backbone.block_scales())
    if not 0 <= int(cut) <= nb:
        scales = ", ".join(f"{p}: {s}" for p, s in enumerate(backbone.block_scales()))
        raise UsageError(f"--cut must be in 0 ... {nb} for this {int(backbone.resolution)} px model (blocks {scales}), got {cut}")
    return int(cut)


def _scale_files(args) -> dict:
    """``{scale: image file}`` for the scale options given (``--coarse`` ...)."""
    return {s: getattr(args, s, None) for s in SCALE_FLAGS if getattr(args, s, None) is not None}


def _check_mix_form(args) -> None:
    """Exactly one of the three forms of ``viewgp mix``, complete, with existing image files."""
    scale_files = _scale_files(args)
    cut_form = args.a is not None or args.b is not None
    if sum([bool(scale_files), cut_form, bool(args.grid)]) != 1:
        raise UsageError(
            "give exactly one form: scale images (--coarse/--intermediate/--fine), --a A --b B --cut K, "
            "or --grid --rows ... --cols ..."
        )
    if args.grid:
        if not args.rows or not args.cols:
            raise UsageError("--grid needs --rows (source-A images) and --cols (source-B images)")
    elif args.rows or args.cols:
        raise UsageError("--rows / --cols only go with --grid")
    if cut_form and (args.a is None or args.b is None or args.cut is None):
        raise UsageError("the cut form needs all of --a, --b and --cut")
    if scale_files and args.cut is not None:
        raise UsageError("--cut goes with --a/--b or --grid, not with --coarse/--intermediate/--fine")
    for flag, f in [(f"--{s}", v) for s, v in scale_files.items()] + [("--a", args.a), ("--b", args.b)]:
        _check_file(f, flag)
    for flag, files in (("--rows", args.rows or []), ("--cols", args.cols or [])):
        for f in files:
            _check_file(f, flag)


# ------------------------------------------------------------------------------------------ helpers
def _encode_one_each(backbone, files: dict, batch_size: int) -> dict:
    """``{name: image file}`` -> ``{name: (1, D) latent}`` (each file encoded once)."""
    from generative.latents.edit import encode_images

    unique = list(dict.fromkeys(files.values()))
    _, x = load_images(unique, int(backbone.resolution))
    z = encode_images(backbone, x, batch_size)
    code = {f: z[i : i + 1] for i, f in enumerate(unique)}
    return {name: code[f] for name, f in files.items()}


def _save_single(path: Path, image: "torch.Tensor") -> None:
    from generative.backbones.registry import to_uint8
    from generative.images.imageio import write_image

    write_image(path, to_uint8(image[None])[0])


# --------------------------------------------------------------------------------------- registration
def register(subparsers) -> None:
    """Add ``mix``."""
    p = subparsers.add_parser(
        "mix", help="style-mix real images at coarse / intermediate / fine scales (automodulator)",
        description="Encode real images with an automodulator and decode with different images' codes "
        "driving different resolution blocks: one mix, a cut at block K, or a style-mixing grid.",
        epilog=MIX_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    add_backbone_args(p, backbone_help="automodulator checkpoint or export")
    for s in SCALE_FLAGS:
        p.add_argument(f"--{s}", default=None, metavar="IMAGE", help=f"image whose code drives the {s} blocks")
    p.add_argument("--a", default=None, metavar="IMAGE", help="with --cut: image for blocks below the cut")
    p.add_argument("--b", default=None, metavar="IMAGE", help="with --cut: image for blocks from the cut on")
    p.add_argument("--cut", type=non_negative_int, default=None, metavar="K",
                   help="block index: blocks < K from A (or the grid's rows), the rest from B")  # fmt: skip
    p.add_argument("--grid", action="store_true", help="write a style-mixing grid of --rows x --cols")
    p.add_argument("--rows", nargs="+", default=None, metavar="IMAGE", help="grid: source-A images (coarse)")
    p.add_argument("--cols", nargs="+", default=None, metavar="IMAGE", help="grid: source-B images (the rest)")
    p.add_argument("--out", required=True, metavar="PNG", help="output image")
    p.set_defaults(func=run_mix)


# ------------------------------------------------------------------------------------------- commands
def run_mix(args) -> int:
    bs = args.batch_size
    _check_mix_form(args)
    backbone = backbone_from_args(args)
    require_automodulator(backbone, "viewgp mix")
    out = Path(args.out)
    if args.grid:
        return _run_grid(args, backbone, out, bs)
    if args.a is not None:
        return _run_cut(args, backbone, out, bs)
    return _run_scales(args, backbone, out, bs)


def _run_cut(args, backbone, out: Path, bs: int) -> int:
    from generative.latents.edit import decode_mixed_batched

    cut = _check_cut(args.cut, backbone)
    z = _encode_one_each(backbone, {"a": args.a, "b": args.b}, bs)
    nb = len(backbone.block_scales())
    image = decode_mixed_batched(backbone, [z["a"]] * cut + [z["b"]] * (nb - cut), bs)
    _save_single(out, image[0])
    print(f"blocks 0-{cut - 1} from {Path(args.a).name}, {cut}-{nb - 1} from {Path(args.b).name} -> {out}")
    return 0


def _run_scales(args, backbone, out: Path, bs: int) -> int:
    from generative.latents.edit import decode_mixed_batched
    from generative.latents.mixing import blocks_by_scale, fill_scales, per_block

    scale_files = _scale_files(args)
    _check_scales_exist(backbone, list(scale_files))
    z = _encode_one_each(backbone, scale_files, bs)
    files = fill_scales(scale_files)
    image = decode_mixed_batched(backbone, per_block(backbone, fill_scales(z)), bs)
    _save_single(out, image[0])
    used = [s for s in SCALE_FLAGS if blocks_by_scale(backbone)[s]]
    print(", ".join(f"{s} from {Path(files[s]).name}" for s in used) + f" -> {out}")
    return 0


def _run_grid(args, backbone, out: Path, bs: int) -> int:
    from generative.latents.mixing import blocks_by_scale, mixing_grid

    r = int(backbone.resolution)
    if args.cut is None:
        cut = len(blocks_by_scale(backbone)["coarse"])  # coarse blocks come first
    else:
        cut = _check_cut(args.cut, backbone)
    paths_a, xa = load_images(args.rows, r)
    paths_b, xb = load_images(args.cols, r)
    grid = mixing_grid(backbone, xa, xb, cut, bs)
    save_grid(out, grid, nrow=len(xb) + 1)
    print(f"{len(xa)} x {len(xb)} style-mixing grid (blocks < {cut} from the rows, the rest from the columns) -> {out}")
    return 0


def run_conditional_sample(args, backbone) -> int:
    """``viewgp sample --conditional``: called by :func:`sequences.cli.images.run_sample`."""
    import torch

    from generative.latents.edit import decode_mixed_batched
    from generative.latents.mixing import conditional_latents

    require_automodulator(backbone, "viewgp sample --conditional")
    n, bs = args.num, args.batch_size
    scale_files = _scale_files(args)
    if not scale_files:
        raise UsageError("--conditional needs an image for at least one scale to keep: --coarse, --intermediate or --fine")
    for s, f in scale_files.items():
        _check_file(f, f"--{s}")
    _check_scales_exist(backbone, list(scale_files))
    z = _encode_one_each(backbone, scale_files, bs)
    zs = conditional_latents(backbone, z, n, torch.Generator().manual_seed(int(args.seed)))
    images = decode_mixed_batched(backbone, zs, bs)
    nrow = args.nrow if args.nrow is not None else math.ceil(math.sqrt(n))
    save_grid(Path(args.out), images, nrow)
    kept = ", ".join(f"{s} from {Path(f).name}" for s, f in scale_files.items())
    print(f"{n} conditional samples ({kept}; the rest drawn with seed {args.seed}) -> {args.out}")
    return 0

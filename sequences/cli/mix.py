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
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

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

SCALE_FLAGS = ("coarse", "intermediate", "fine")


# ------------------------------------------------------------------------------------------ helpers
def require_automodulator(backbone, command: str) -> None:
    """A clear ``ValueError`` unless ``backbone`` decodes per-block latents (an automodulator)."""
    if not (hasattr(backbone, "decode_mixed") and hasattr(backbone, "block_scales")):
        kind = getattr(backbone, "kind", type(backbone).__name__)
        raise ValueError(
            f"{command} needs an automodulator backbone (one latent per decoder block); the checkpoint holds "
            f"a '{kind}' model. Train one with: viewgp train automodulator ..."
        )


def blocks_by_scale(backbone) -> dict[str, list[int]]:
    """``{scale: block indices}`` at the backbone's resolution, e.g. 32 px: coarse [0, 1], intermediate
    [2], fine []."""
    scales = list(backbone.block_scales())
    return {s: [p for p, name in enumerate(scales) if name == s] for s in SCALE_FLAGS}


def _check_scales_exist(backbone, given: Sequence[str]) -> None:
    blocks = blocks_by_scale(backbone)
    for s in given:
        if not blocks[s]:
            raise ValueError(
                f"the {int(backbone.resolution)} px automodulator has no {s} blocks (coarse = 4-8 px, "
                f"intermediate = 16-64 px, fine = 128 px and up); drop --{s}"
            )


def fill_scales(given: dict) -> dict:
    """Complete ``{scale: value}`` over all three scales: a missing scale takes the value of the nearest
    coarser scale given, or (for scales coarser than every given one) the coarsest given value."""
    if not given:
        raise ValueError("give an image for at least one scale: --coarse, --intermediate or --fine")
    out, last = {}, given[next(s for s in SCALE_FLAGS if s in given)]
    for s in SCALE_FLAGS:
        last = given.get(s, last)
        out[s] = last
    return out


def per_block(backbone, by_scale: dict) -> list:
    """``by_scale`` values (one per scale) laid out as one entry per decoder block."""
    return [by_scale[s] for s in backbone.block_scales()]


def decode_mixed_batched(backbone, zs: Sequence["torch.Tensor"], batch_size: int = 16) -> "torch.Tensor":
    """``decode_mixed`` over per-block latents ``zs`` (each ``(B, D)``, CPU) in batches ->
    ``(B, 3, r, r)`` CPU float32 images in [-1, 1]."""
    import torch

    from generative.edit import _device_of

    device = _device_of(backbone)
    n = zs[0].shape[0]
    out = []
    with torch.no_grad():
        for i in range(0, n, batch_size):
            out.append(backbone.decode_mixed([z[i : i + batch_size].to(device) for z in zs]).float().cpu())
    return torch.cat(out)


def _encode_one_each(backbone, files: dict, batch_size: int) -> dict:
    """``{name: image file}`` -> ``{name: (1, D) latent}`` (each file encoded once)."""
    from generative.edit import encode_images

    from .images import load_images

    unique = list(dict.fromkeys(files.values()))
    _, x = load_images(unique, int(backbone.resolution))
    z = encode_images(backbone, x, batch_size)
    code = {f: z[i : i + 1] for i, f in enumerate(unique)}
    return {name: code[f] for name, f in files.items()}


def _check_file(path: Optional[str], flag: str) -> None:
    if path is not None and not Path(path).expanduser().is_file():
        raise FileNotFoundError(f"{flag}: image not found: {path}")


def _check_cut(cut: int, backbone) -> int:
    nb = len(backbone.block_scales())
    if not 0 <= int(cut) <= nb:
        scales = ", ".join(f"{p}: {s}" for p, s in enumerate(backbone.block_scales()))
        raise ValueError(f"--cut must be in 0 ... {nb} for this {int(backbone.resolution)} px model (blocks {scales}), got {cut}")
    return int(cut)


# --------------------------------------------------------------------------------------- registration
def register(subparsers) -> None:
    p = subparsers.add_parser(
        "mix", help="style-mix real images at coarse / intermediate / fine scales (automodulator)",
        description="Encode real images with an automodulator and decode with different images' codes "
        "driving different resolution blocks: one mix, a cut at block K, or a style-mixing grid.",
        epilog=MIX_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("--backbone", required=True, metavar="CKPT", help="automodulator checkpoint or export")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default auto: cuda when available)")
    p.add_argument("--batch-size", type=int, default=16, help="images per forward pass (default 16)")
    for s in SCALE_FLAGS:
        p.add_argument(f"--{s}", default=None, metavar="IMAGE", help=f"image whose code drives the {s} blocks")
    p.add_argument("--a", default=None, metavar="IMAGE", help="with --cut: image for blocks below the cut")
    p.add_argument("--b", default=None, metavar="IMAGE", help="with --cut: image for blocks from the cut on")
    p.add_argument("--cut", type=int, default=None, metavar="K",
                   help="block index: blocks < K from A (or the grid's rows), the rest from B")  # fmt: skip
    p.add_argument("--grid", action="store_true", help="write a style-mixing grid of --rows x --cols")
    p.add_argument("--rows", nargs="+", default=None, metavar="IMAGE", help="grid: source-A images (coarse)")
    p.add_argument("--cols", nargs="+", default=None, metavar="IMAGE", help="grid: source-B images (the rest)")
    p.add_argument("--out", required=True, metavar="PNG", help="output image")
    p.set_defaults(func=run_mix)


# ------------------------------------------------------------------------------------------- commands
def run_mix(args) -> int:
    from .images import _device, _load_backbone, _positive

    bs = _positive("--batch-size", args.batch_size)
    scale_files = {s: getattr(args, s) for s in SCALE_FLAGS if getattr(args, s) is not None}
    cut_form = args.a is not None or args.b is not None
    modes = [bool(scale_files), cut_form, bool(args.grid)]
    if sum(modes) != 1:
        raise ValueError(
            "give exactly one form: scale images (--coarse/--intermediate/--fine), --a A --b B --cut K, "
            "or --grid --rows ... --cols ..."
        )
    if args.grid:
        if not args.rows or not args.cols:
            raise ValueError("--grid needs --rows (source-A images) and --cols (source-B images)")
    elif args.rows or args.cols:
        raise ValueError("--rows / --cols only go with --grid")
    if cut_form and (args.a is None or args.b is None or args.cut is None):
        raise ValueError("the cut form needs all of --a, --b and --cut")
    if scale_files and args.cut is not None:
        raise ValueError("--cut goes with --a/--b or --grid, not with --coarse/--intermediate/--fine")
    for flag, f in [(f"--{s}", v) for s, v in scale_files.items()] + [("--a", args.a), ("--b", args.b)]:
        _check_file(f, flag)
    for flag, files in (("--rows", args.rows or []), ("--cols", args.cols or [])):
        for f in files:
            _check_file(f, flag)

    backbone = _load_backbone(args.backbone, _device(args.device))
    require_automodulator(backbone, "viewgp mix")
    out = Path(args.out)
    if args.grid:
        return _run_grid(args, backbone, out, bs)
    if cut_form:
        cut = _check_cut(args.cut, backbone)
        z = _encode_one_each(backbone, {"a": args.a, "b": args.b}, bs)
        nb = len(backbone.block_scales())
        image = decode_mixed_batched(backbone, [z["a"]] * cut + [z["b"]] * (nb - cut), bs)
        _save_single(out, image[0])
        print(f"blocks 0-{cut - 1} from {Path(args.a).name}, {cut}-{nb - 1} from {Path(args.b).name} -> {out}")
        return 0
    _check_scales_exist(backbone, list(scale_files))
    z = _encode_one_each(backbone, scale_files, bs)
    files = fill_scales(scale_files)
    image = decode_mixed_batched(backbone, per_block(backbone, fill_scales(z)), bs)
    _save_single(out, image[0])
    used = [s for s in SCALE_FLAGS if blocks_by_scale(backbone)[s]]
    print(", ".join(f"{s} from {Path(files[s]).name}" for s in used) + f" -> {out}")
    return 0


def _save_single(path: Path, image: "torch.Tensor") -> None:
    from generative.backbone import to_uint8

    from .images import write_image

    write_image(path, to_uint8(image[None])[0])


def mixing_grid(backbone, x_rows: "torch.Tensor", x_cols: "torch.Tensor", cut: int, batch_size: int = 16) -> "torch.Tensor":
    """The style-mixing grid as ``((R + 1) * (C + 1), 3, r, r)`` images, row-major: a blank (white) corner,
    the column sources, then per row its source and the mixes ``blocks < cut from row, rest from column``.
    ``x_rows (R, 3, r, r)``, ``x_cols (C, 3, r, r)`` in [-1, 1]."""
    import torch

    from generative.edit import encode_images

    za, zb = encode_images(backbone, x_rows, batch_size), encode_images(backbone, x_cols, batch_size)
    n_r, n_c, nb = len(za), len(zb), len(backbone.block_scales())
    a = za.repeat_interleave(n_c, dim=0)  # row i, column j at i * C + j
    b = zb.repeat(n_r, 1)
    cells = decode_mixed_batched(backbone, [a] * cut + [b] * (nb - cut), batch_size).reshape(n_r, n_c, *x_rows.shape[1:])
    corner = torch.ones(1, *x_rows.shape[1:])
    rows = [torch.cat([corner, x_cols])] + [torch.cat([x_rows[i : i + 1], cells[i]]) for i in range(n_r)]
    return torch.cat(rows)


def _run_grid(args, backbone, out: Path, bs: int) -> int:
    from .images import load_images, save_grid

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


def conditional_latents(backbone, fixed: dict, n: int, generator: "torch.Generator") -> list:
    """Per-block latents ``(n, D)`` (CPU) for conditional sampling: blocks of the scales in
    ``fixed = {scale: (1, D) latent}`` use that latent in every sample, the others fresh prior draws (one
    per sample and block)."""
    from generative.edit import sample_latents

    out = []
    for s in backbone.block_scales():
        out.append(fixed[s].expand(n, -1).clone() if s in fixed else sample_latents(backbone, n, generator))
    return out


def run_conditional_sample(args, backbone) -> int:
    """``viewgp sample --conditional``: called by :func:`sequences.cli.images.run_sample`."""
    import math

    import torch

    from .images import _positive, save_grid

    require_automodulator(backbone, "viewgp sample --conditional")
    n = _positive("-n", args.num)
    bs = _positive("--batch-size", args.batch_size)
    scale_files = {s: getattr(args, s, None) for s in SCALE_FLAGS if getattr(args, s, None) is not None}
    if not scale_files:
        raise ValueError("--conditional needs an image for at least one scale to keep: --coarse, --intermediate or --fine")
    for s, f in scale_files.items():
        _check_file(f, f"--{s}")
    _check_scales_exist(backbone, list(scale_files))
    z = _encode_one_each(backbone, scale_files, bs)
    zs = conditional_latents(backbone, z, n, torch.Generator().manual_seed(int(args.seed)))
    images = decode_mixed_batched(backbone, zs, bs)
    nrow = _positive("--nrow", args.nrow) if args.nrow is not None else math.ceil(math.sqrt(n))
    save_grid(Path(args.out), images, nrow)
    kept = ", ".join(f"{s} from {Path(f).name}" for s, f in scale_files.items())
    print(f"{n} conditional samples ({kept}; the rest drawn with seed {args.seed}) -> {args.out}")
    return 0

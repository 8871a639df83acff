"""What several ``viewgp`` commands share: errors and exit codes, argument types, the help formatter,
device choice, backbone loading, the output folder (staged, replaced only on success) and the reading and
writing of the images named on the command line.

Command modules import these public helpers and never each other's private names, so no command module
depends on another (the one exception, ``sample --conditional`` calling :mod:`sequences.cli.mix`, goes
one way). The project's packages (and with them torch) are imported inside the functions, so that
building the parser (``viewgp --help``) stays fast.
"""

from __future__ import annotations

import argparse
import math
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

if TYPE_CHECKING:
    import torch

__all__ = [
    "CLIError",
    "UsageError",
    "SCALE_FLAGS",
    "OUTPUT_MANIFEST",
    "HelpFormatter",
    "positive_int",
    "non_negative_int",
    "finite_float",
    "positive_float",
    "non_negative_float",
    "unit_interval",
    "add_device_arg",
    "add_precision_arg",
    "PIPELINE_PRECISION",
    "choose_device",
    "load_backbone",
    "backbone_from_args",
    "add_backbone_args",
    "add_output_args",
    "check_output_folder",
    "staged_output",
    "listing",
    "LPIPS_ALEX_FILES",
    "LPIPS_VGG_FILES",
    "require_weights",
    "load_images",
    "save_grid",
    "add_translator_model_args",
    "translator_model",
    "add_capture_args",
    "capture_from_args",
]


class CLIError(Exception):
    """An expected failure with a message meant for the user (one line, exit code 1, no traceback)."""


class UsageError(CLIError):
    """A command line that cannot work as given: a bad option value or combination (exit code 2)."""


#: The automodulator scale options (--coarse ...): generative.latents.mixing.SCALES, spelled out so that building
#: the parser does not import torch (a test checks that the two agree).
SCALE_FLAGS = ("coarse", "intermediate", "fine")

#: Written last into every output folder a command fills: what made it (and the mark of a viewgp output).
OUTPUT_MANIFEST = "viewgp-output.json"


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Epilogs as written, and every option's default appended to its help unless the help names it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        shown = not (default is None or default is False or default is argparse.SUPPRESS)  # 0 and 0.0 are shown
        if (action.option_strings and shown and "default" not in text.lower()
                and not isinstance(action, (argparse._HelpAction, argparse._VersionAction))):
            text += " (default: %(default)s)"
        return text


# ------------------------------------------------------------------------------------- argument types
def _number(cast: Callable, test: Callable[[float], bool], wanted: str) -> Callable[[str], float]:
    """An argparse type: ``cast(text)`` when it passes ``test``; otherwise an error saying ``wanted``."""

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}") from None
        if not (math.isfinite(value) and test(value)):
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
        return value

    parse.__name__ = wanted  # argparse names the type in "invalid <name> value" messages
    return parse


positive_int = _number(int, lambda v: v >= 1, "an integer >= 1")
non_negative_int = _number(int, lambda v: v >= 0, "an integer >= 0")
finite_float = _number(float, lambda v: True, "a finite number")
positive_float = _number(float, lambda v: v > 0, "a number > 0")
non_negative_float = _number(float, lambda v: v >= 0, "a number >= 0")
unit_interval = _number(float, lambda v: 0 <= v <= 1, "a number in [0, 1]")


# ------------------------------------------------------------------------------------ backbone, device
def add_device_arg(p: argparse.ArgumentParser, default: str = "auto") -> None:
    """``--device`` (validated by :func:`choose_device` before the command runs)."""
    p.add_argument("--device", default=default, metavar="DEVICE",
                   help=f"cpu, cuda, cuda:N, or auto = cuda when available, else cpu (default {default})")


#: generative.precision.PRECISIONS, spelled out: building the parser must not import torch (a test checks both).
PRECISION_CHOICES = ("auto", "fp32", "bf16")
#: What ``--precision`` governs in the pipeline commands.
PIPELINE_PRECISION = "the posterior samples' decoding and --adapt-steps (scored frames are always decoded in float32)"


def add_precision_arg(p: argparse.ArgumentParser, what: str, whole_command: bool = False) -> None:
    """``--precision {auto,fp32,bf16}`` for ``what`` (:func:`generative.precision.choose_precision`);
    ``whole_command``: the command's backbone passes all run under it (the CLI's ``main`` sets it up)."""
    p.add_argument("--precision", choices=PRECISION_CHOICES, default="auto",
                   help=f"precision of {what}: auto = bfloat16 only where the device computes it natively "
                        "(a CPU with AVX512-BF16 or AMX, a recent GPU), else float32 (default auto)")
    if whole_command:
        p.set_defaults(precision_whole_command=True)


def choose_device(name: str) -> str:
    """``--device`` value -> a torch device name that works here; ``auto`` is ``cuda`` when available.

    A :class:`UsageError` names a device torch does not know, or one this machine does not have."""
    import torch

    text = str(name).strip().lower()
    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise UsageError(f"--device {name!r} is not a device; use cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name}: CUDA is not available on this machine (no GPU or driver, or a "
                             "CPU-only torch); use --device cpu or --device auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                             f"numbered from 0")
    elif device.type != "cpu":
        raise UsageError(f"--device {name}: viewgp runs on cpu or cuda devices; use --device cpu, cuda or auto")
    return str(device)


def load_backbone(path: str | None, device: str):
    """Load a backbone; ``None``: the bundled default (tests replace this function with a small model)."""
    from generative.backbones.registry import load_backbone as load

    return load(path, device)


def backbone_from_args(args: argparse.Namespace):
    """The backbone of ``--backbone`` on the device of ``--device`` (see :func:`add_backbone_args`)."""
    # Looked up here at call time, so a test that replaces load_backbone replaces it for every command.
    return load_backbone(args.backbone, choose_device(args.device))


def add_backbone_args(p: argparse.ArgumentParser, backbone_help: str = "checkpoint of a trained backbone",
                      required: bool = True) -> None:
    """``--backbone CKPT`` (required, or the bundled default), ``--device`` (default auto), ``--precision``
    and ``--batch-size``."""
    if required:
        p.add_argument("--backbone", required=True, metavar="CKPT", help=backbone_help)
    else:
        p.add_argument("--backbone", default=None, metavar="CKPT",
                       help=f"{backbone_help} (default: the bundled 64 px tabletop Pioneer)")
    add_device_arg(p)
    add_precision_arg(p, "the encoder and decoder passes", whole_command=True)
    p.add_argument("--batch-size", type=positive_int, default=16, help="images per forward pass (default 16)")


# ------------------------------------------------------------------------------------- output folders
def add_output_args(p: argparse.ArgumentParser, what: str = "output folder") -> None:
    """``--out DIR`` (required) and ``--overwrite``: see :func:`staged_output`."""
    p.add_argument("--out", required=True, metavar="DIR",
                   help=f"{what}; written only when the command succeeds (results go to a temporary folder beside "
                   "it first), and never over an earlier run's results without --overwrite")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the results of an earlier viewgp run in --out (its encoding cache is kept)")


def _is_viewgp_output(folder: Path) -> bool:
    # metrics.json: pipeline outputs written before the manifest existed
    return (folder / OUTPUT_MANIFEST).is_file() or (folder / "metrics.json").is_file()


def check_output_folder(out: Path, overwrite: bool, keep: Sequence[str] = ("cache",)) -> None:
    """Refuse (:class:`UsageError`) an ``--out`` that is a file, holds files viewgp did not write, or holds an
    earlier run's results without ``overwrite``; first clear what killed runs left beside and inside it."""
    from generative.images.fileio import remove_stale_staging, remove_stale_temporaries

    remove_stale_staging(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder (it is created when missing)")
    if not out.is_dir():
        return
    remove_stale_temporaries(out, *(out / k for k in keep))
    entries = sorted(p.name for p in out.iterdir() if p.name not in keep)
    if not entries:
        return
    if not _is_viewgp_output(out):
        shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise UsageError(f"--out {out} holds files viewgp did not write ({shown}); choose a new or empty folder")
    if not overwrite:
        raise UsageError(f"--out {out} holds the results of an earlier run; pass --overwrite to replace them, "
                         "or choose another folder")


def _manifest(args: argparse.Namespace) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("viewgp")
    except PackageNotFoundError:
        v = "unknown"
    options = {k: v for k, v in vars(args).items() if k != "func" and isinstance(v, (str, int, float, bool, list, type(None)))}
    return {"format": "viewgp-output", "version": 1, "command": getattr(args, "command", None), "options": options,
            "viewgp_version": v, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


@contextmanager
def staged_output(args: argparse.Namespace, keep: Sequence[str] = ("cache",)) -> Iterator[Path]:
    """The folder a command writes its results into instead of ``args.out``.

    ``--out`` is checked first (:func:`check_output_folder`); the results go to a new folder beside it,
    which replaces ``--out`` (keeping its ``keep`` entries, e.g. the pipeline's encoding cache) only when
    the block finishes without an error, with :data:`OUTPUT_MANIFEST` written last. On any failure the
    staging folder is deleted and ``--out`` is untouched, so no earlier result is lost or mixed."""
    from generative.images.fileio import atomic_write_json, make_staging_folder, replace_folder

    out = Path(args.out).expanduser()
    check_output_folder(out, bool(getattr(args, "overwrite", False)), keep)
    staging = make_staging_folder(out)
    try:
        yield staging
        atomic_write_json(staging / OUTPUT_MANIFEST, _manifest(args))
        replace_folder(staging, out, keep)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def listing(folder: Path, skip: Sequence[str] = (OUTPUT_MANIFEST,)) -> str:
    """``'a.mp4, b.png, run/'``: what a command wrote into ``folder`` (sorted; folders with a slash)."""
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in Path(folder).iterdir() if p.name not in skip)
    return ", ".join(names)


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


# ------------------------------------------------------------------------------------------ image files
def load_images(specs: Sequence[str], resolution: int) -> tuple[list[Path], "torch.Tensor"]:
    """``(paths, images)`` for image files and folders ``specs`` (a folder's JPEG/PNG files, sorted, not
    recursive): images ``(N, 3, r, r)`` float in [-1, 1], centre-cropped to a square and resized."""
    import numpy as np

    from generative.backbones.registry import to_model_images
    from generative.images.geometry import square_resize
    from generative.images.imageio import list_images, read_image

    paths = list_images(specs)
    frames = np.stack([square_resize(read_image(p), resolution) for p in paths])
    return paths, to_model_images(frames)


def save_grid(path: Path, images: "torch.Tensor", nrow: int) -> None:
    """Tile ``(N, 3, r, r)`` images in [-1, 1] into rows of ``nrow`` with a 2-pixel white border."""
    import torchvision

    from generative.backbones.registry import to_uint8
    from generative.images.imageio import write_image

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
                     "transforms.json, ARKit, ADVIO, phone gyroscope/orientation CSV), or 'auto': structure from "
                     "motion with pycolmap (pip install -e '.[sfm]'; 'viewgp poses' for its options)")


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
    group.add_argument("--max-frames", type=int, default=None, help="read only the first N frames of the video (default: all)")


def capture_from_args(args: argparse.Namespace):
    """The :class:`~sequences.run.CameraRun` of :func:`add_capture_args` options (and ``--run`` where present)."""
    from sequences.capture.load import load_capture

    return load_capture(run=getattr(args, "run", None), video=args.video, images=args.images, poses=args.poses,
                        format=args.format, times_path=args.times, frame_times=args.frame_times,
                        time_offset=args.time_offset, max_frames=args.max_frames,
                        progress=not getattr(args, "quiet", False))

"""Output folders of the ``viewgp`` commands: ``--out`` / ``--overwrite``, checked before the work starts,
written into a staging folder that replaces ``--out`` only on success (with a manifest written last),
and the one-line listing of what a command wrote.
"""

from __future__ import annotations

import argparse
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from sequences.cli.options import UsageError

__all__ = ["OUTPUT_MANIFEST", "add_output_args", "check_output_folder", "staged_output", "listing"]

#: Written last into every output folder a command fills: what made it (and the mark of a viewgp output).
OUTPUT_MANIFEST = "viewgp-output.json"


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

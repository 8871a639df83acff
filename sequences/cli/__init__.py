"""The ``viewgp`` command line.

Each sub-command lives in a small module that exposes ``register(subparsers)``; ``register`` adds an
argparse sub-parser and sets ``func=run`` on it, where ``run(args) -> int`` does the work. This module
only gathers them and turns failures into one clear line and an exit code:

* 0: success; 2: a usage error (a bad option value or combination: argparse's own errors and
  :class:`UsageError`); 1: any other failure (a missing or malformed file, a failed run); 130: interrupted.
* No traceback unless ``--debug`` is given (before or after the command name).

What several commands share lives in one module per concern: :mod:`~sequences.cli.options` (errors,
argument types, the help formatter that fills names from the registries, device and precision),
:mod:`~sequences.cli.backbones` (the one backbone-loading path, weight folders),
:mod:`~sequences.cli.outputs` (staged output folders), :mod:`~sequences.cli.capture_options` (capture
sources) and :mod:`~sequences.cli.image_files`. Command modules import those public helpers and never
each other's private names, so no command module depends on another (the one exception, ``sample
--conditional`` calling :mod:`sequences.cli.mix`, goes one way). The project's packages (and with them
torch) are imported inside the functions, so that building the parser (``viewgp --help``) stays fast. A
new command is a module with ``register(subparsers)`` plus its name in :data:`COMMAND_MODULES`.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import warnings

# Spinning OpenMP threads make small torch ops crawl when another process holds a core (measured: up to
# 50x on a 2-core machine); waiting passively costs nothing measurable. Must precede torch's import.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# OpenCV's FFmpeg backend logs to stderr from C (e.g. "moov atom not found") before we can say which file
# is broken in one line; its own warnings likewise. Must precede cv2's import.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
from typing import Optional, Sequence  # noqa: E402

from sequences.cli.options import CLIError, HelpFormatter, UsageError  # noqa: E402

__all__ = ["CLIError", "UsageError", "build_parser", "main", "version"]

# Modules that contribute sub-commands, in the order they appear in --help.
COMMAND_MODULES = [
    "sequences.cli.demo",
    "sequences.cli.bench",
    "sequences.cli.pipeline",
    "sequences.cli.captures",
    "sequences.cli.poses",
    "sequences.cli.train",
    "sequences.cli.images",
    "sequences.cli.mix",
    "sequences.cli.invert",
    "sequences.cli.age",
]

#: Failures that carry a message for the user: shown as one line, exit 1.
EXPECTED = (CLIError, ValueError, OSError, FloatingPointError)


def version() -> str:
    """The installed package's version (``unknown`` when run from a checkout that is not installed)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("viewgp")
    except PackageNotFoundError:
        return "unknown (not installed)"


class Parser(argparse.ArgumentParser):
    """argparse with a one-line usage error: the message and where to read more, not the usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _sub_parsers(parser: argparse.ArgumentParser):
    """Every parser below ``parser`` (sub-commands, and theirs)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases map to the same parser
                yield sub
                yield from _sub_parsers(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(  # sub-parsers are made of the same class
        prog="viewgp",
        description=(
            "View-aware Gaussian processes over the latent codes of camera runs: smooth, interpolate and "
            "predict views with calibrated uncertainty, and train the generative backbones."
        ),
        epilog="exit codes: 0 success, 1 failure (bad or missing file, failed run), 2 usage error, 130 interrupted",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"viewgp {version()}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of a failure")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that command module is not part of this build
                continue
            raise
        module.register(sub)
    for p in _sub_parsers(parser):
        p.formatter_class = HelpFormatter
        # SUPPRESS: a sub-command's parse must not reset a --debug given before the command name
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show the full traceback of a failure")
    return parser


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (library messages, e.g. PyTorch's, may span several)."""
    text = " ".join(part.strip() for part in str(exc).splitlines() if part.strip())
    return text or type(exc).__name__


class _Warnings:
    """Python warnings raised while a command runs, kept to be shown as one line each when it succeeds
    (a failure shows only its error line, which names the cause)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __enter__(self) -> "_Warnings":
        self._saved = warnings.catch_warnings()
        self._saved.__enter__()
        # linear_operator (under GPyTorch) decorates functions with torch.jit.script at import time, which
        # torch now deprecates: a warning on every run that a user can do nothing about.
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
        warnings.showwarning = self._keep
        return self

    def _keep(self, message, category, filename, lineno, file=None, line=None) -> None:
        text = f"viewgp: warning: {one_line(message)}"
        if text not in self.lines:
            self.lines.append(text)

    def show(self) -> None:
        for text in self.lines:
            print(text, file=sys.stderr)

    def __exit__(self, *exc) -> None:
        self._saved.__exit__(*exc)


def _command_precision(args):
    """The autocast context of a command whose backbone passes all follow ``--precision``
    (:func:`sequences.cli.options.add_precision_arg` with ``whole_command``); else a no-op."""
    if not getattr(args, "precision_whole_command", False):
        return contextlib.nullcontext()
    from generative.precision import choose_precision

    device = getattr(args, "device", None) or "cpu"
    return choose_precision(args.precision, device).autocast(device)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    command = " ".join(c for c in (args.command, getattr(args, "age_command", None)) if c)
    debug = bool(getattr(args, "debug", False))
    with _Warnings() as caught:
        try:
            if getattr(args, "device", None) is not None:
                from sequences.cli.options import choose_device

                args.device = choose_device(args.device)
            with _command_precision(args):
                rc = int(args.func(args) or 0)
        except KeyboardInterrupt:
            print(f"viewgp {command}: interrupted", file=sys.stderr)
            return 130
        except UsageError as exc:
            if debug:
                raise
            print(f"viewgp {command}: error: {one_line(exc)}", file=sys.stderr)
            return 2
        except EXPECTED as exc:
            # Expected failures (bad file, bad format, missing checkpoint): one line, exit 1.
            if debug:
                raise
            print(f"viewgp {command}: error: {one_line(exc)}", file=sys.stderr)
            return 1
        except Exception as exc:  # a bug or an unforeseen failure: still one line, with the way to see more
            if debug:
                raise
            print(f"viewgp {command}: error: {type(exc).__name__}: {one_line(exc)} "
                  "(unexpected; rerun with --debug for the traceback)", file=sys.stderr)
            return 1
        caught.show()
        return rc

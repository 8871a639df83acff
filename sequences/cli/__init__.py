"""The ``viewgp`` command line.

Each sub-command lives in a small module that exposes ``register(subparsers)``; ``register`` adds an
argparse sub-parser and sets ``func=run`` on it, where ``run(args) -> int`` does the work. This module
only gathers them and turns expected failures into one clear message and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Spinning OpenMP threads make small torch ops crawl when another process holds a core (measured: up to
# 50x on a 2-core machine); waiting passively costs nothing measurable. Must precede torch's import.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from typing import Optional, Sequence

# Modules that contribute sub-commands, in the order they appear in --help.
COMMAND_MODULES = [
    "sequences.cli.demo",
    "sequences.cli.bench",
    "sequences.cli.pipeline",
    "sequences.cli.captures",
    "sequences.cli.train",
    "sequences.cli.images",
    "sequences.cli.mix",
    "sequences.cli.invert",
    "sequences.cli.age",
]


class CLIError(Exception):
    """An expected failure with a message meant for the user (no traceback is shown)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="viewgp",
        description=(
            "View-aware Gaussian processes over the latent codes of camera runs: smooth, interpolate and "
            "predict views with calibrated uncertainty, and train the generative backbones."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that command module is not part of this build
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("viewgp: interrupted", file=sys.stderr)
        return 130
    except (CLIError, ValueError, FileNotFoundError, OSError) as exc:
        # Expected user-facing failures (bad file, bad format, missing checkpoint): one line, exit 1.
        print(f"viewgp {args.command}: error: {exc}", file=sys.stderr)
        return 1


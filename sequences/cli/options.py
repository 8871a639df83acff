"""The options every ``viewgp`` command shares, and what they raise: the errors and their exit codes,
argument types, the help formatter (which fills lists of names from the registries when help is shown),
``--device`` and ``--precision``.

Nothing here imports torch or the project's models at import time: building the parser (``viewgp
--help``) stays fast, and a registry is read only when a help text or a ``choices`` check needs it.
"""

from __future__ import annotations

import argparse
import math
import re
from typing import Callable, Iterator

__all__ = ["CLIError", "UsageError", "SCALE_FLAGS", "HelpFormatter", "registry_names", "RegistryChoices",
           "positive_int", "non_negative_int", "finite_float", "positive_float", "non_negative_float",
           "unit_interval", "add_device_arg", "add_precision_arg", "PRECISION_CHOICES", "PIPELINE_PRECISION",
           "choose_device"]


class CLIError(Exception):
    """An expected failure with a message meant for the user (one line, exit code 1, no traceback)."""


class UsageError(CLIError):
    """A command line that cannot work as given: a bad option value or combination (exit code 2)."""


#: The automodulator scale options (--coarse ...): generative.latents.mixing.SCALES, spelled out so that building
#: the parser does not import torch (a test checks that the two agree).
SCALE_FLAGS = ("coarse", "intermediate", "fine")


# ------------------------------------------------------------------------ names from the registries
def _kernels() -> tuple[str, ...]:
    from viewgp.kernels import KERNEL_NAMES

    return KERNEL_NAMES


def _latent_baselines() -> tuple[str, ...]:
    from viewgp.predict import BASELINES

    return BASELINES


def _pose_formats() -> tuple[str, ...]:
    from sequences.poses.formats import FORMATS

    return tuple(FORMATS)


def _backbones() -> tuple[str, ...]:
    from generative.backbones.registry import registered_kinds

    return tuple(registered_kinds())


def _trainers() -> tuple[str, ...]:
    from generative.training.registry import registered_variants  # the package's __init__ registers the trainers

    # The CycleGAN translator trains through its own loop (generative.aging.training), not the registry.
    return (*registered_variants(), "translator")


#: The registries a help text may name, read when the text is shown: ``{registry:kernels}`` in a help
#: string or epilog becomes ``view, orientation, ...``.
REGISTRIES: dict[str, Callable[[], tuple[str, ...]]] = {
    "kernels": _kernels,
    "latent_baselines": _latent_baselines,
    "pose_formats": _pose_formats,
    "backbones": _backbones,
    "trainers": _trainers,
}
_PLACEHOLDER = re.compile(r"\{registry:(\w+)\}")


def registry_names(name: str) -> tuple[str, ...]:
    """The names registered in registry ``name`` (a key of :data:`REGISTRIES`), in registration order."""
    return tuple(REGISTRIES[name]())


def _fill(text: str) -> str:
    return _PLACEHOLDER.sub(lambda m: ", ".join(registry_names(m.group(1))), text) if "{registry:" in text else text


class RegistryChoices:
    """``choices=`` for argparse read from a registry when first needed (a parse or a help), not when the
    parser is built."""

    def __init__(self, registry: str) -> None:
        self.registry = registry

    def __iter__(self) -> Iterator[str]:
        return iter(registry_names(self.registry))

    def __contains__(self, value: object) -> bool:
        return value in registry_names(self.registry)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Epilogs as written, and every option's default appended to its help unless the help names it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        shown = not (default is None or default is False or default is argparse.SUPPRESS)  # 0 and 0.0 are shown
        if (action.option_strings and shown and "default" not in text.lower()
                and not isinstance(action, (argparse._HelpAction, argparse._VersionAction))):
            text += " (default: %(default)s)"
        return _fill(text)

    def _format_text(self, text: str) -> str:
        return super()._format_text(_fill(text))


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


# ------------------------------------------------------------------------------------ device, precision
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

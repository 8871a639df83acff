"""Which precision the backbones compute in: bfloat16 only where the device computes it natively.

bfloat16 autocast runs convolutions 2-2.5x faster where the hardware has bfloat16 arithmetic: CUDA
GPUs from Ampere on, x86 CPUs with AVX512-BF16 or AMX, Arm CPUs with the BF16 extension. Elsewhere
it is emulated and far slower than float32: decoding 64 frames of the bundled backbone took 15.5 s in
bfloat16 against 0.65 s in float32 on an AVX2-only EPYC (24x; 11.0 s against 0.43 s with oneDNN
limited to AVX2 here, ``ONEDNN_MAX_CPU_ISA=AVX2``), and 0.17 s against 0.33 s where AVX512-BF16 is used.

So ``"auto"`` chooses by capability, never by assumption:

* CUDA: bfloat16 when the GPU computes it natively (``torch.cuda.is_bf16_supported(including_emulation=False)``);
* CPU: the instruction flags the operating system lists (``/proc/cpuinfo``): bfloat16 with
  ``avx512_bf16`` or ``amx_bf16`` (x86) or ``bf16`` (Arm), unless oneDNN, which runs the
  convolutions, is capped below those instructions (``ONEDNN_MAX_CPU_ISA`` / ``DNNL_MAX_CPU_ISA``);
  float32 when the flags are listed and none of them is there;
* where the flags cannot be read (macOS, Windows, another device): a one-off timing of a small
  convolution in both precisions, bfloat16 only if it is clearly faster.

``"fp32"`` and ``"bf16"`` force one. Every choice carries its reason, which ``metrics.json`` and the
training log record. bfloat16 is used for what tolerates a few intensity levels of rounding:
posterior samples (only their spread is used), adaptation and training steps (weights, optimizer and
losses stay float32), and decoding in the image commands; the pipeline decodes the predictions it
scores in float32.
"""

from __future__ import annotations

import functools
import os
import platform
import time
from dataclasses import dataclass
from typing import Optional

import torch

__all__ = ["PRECISIONS", "Precision", "choose_precision", "cpu_flags", "cpu_bf16_native"]

#: The values of every ``--precision`` option.
PRECISIONS = ("auto", "fp32", "bf16")
#: CPU flags (as /proc/cpuinfo names them) of native bfloat16 arithmetic.
BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")
#: oneDNN ISA caps (``ONEDNN_MAX_CPU_ISA``) that still include bfloat16 instructions.
_ONEDNN_BF16_ISAS = ("AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16",
                     "AVX10_1_512", "AVX10_1_512_AMX", "AVX10_1_512_AMX_FP16", "AVX10_2_512",
                     "AVX10_2_512_AMX_2", "ALL", "DEFAULT")
#: bfloat16 must be at least this much faster in the timing fallback (noise must not flip the choice).
TIMING_MARGIN = 0.8


@dataclass(frozen=True)
class Precision:
    """A resolved precision: ``name`` ``"fp32"`` or ``"bf16"``, what was asked (``requested``) and why."""

    name: str
    requested: str
    reason: str

    @property
    def bf16(self) -> bool:
        return self.name == "bf16"

    def autocast(self, device: str | torch.device = "cpu"):
        """bfloat16 autocast on ``device`` for ``"bf16"``, a disabled one (a no-op) for ``"fp32"``."""
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=self.bf16)

    def to_dict(self) -> dict:
        return {"precision": self.name, "requested": self.requested, "reason": self.reason}

    def __str__(self) -> str:
        return f"{self.name} ({self.reason})"


def cpu_flags() -> Optional[set[str]]:
    """The CPU's instruction flags as the OS lists them (``/proc/cpuinfo``'s ``flags`` on x86,
    ``Features`` on Arm); ``None`` where they cannot be read (not Linux, or no such line)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip().lower() in ("flags", "features"):
                    return set(value.split())
    except OSError:
        return None
    return None


def _onednn_cap() -> Optional[str]:
    """oneDNN's ISA cap from the environment (upper case), or ``None`` when unset."""
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        value = os.environ.get(name, "").strip()
        if value:
            return value.upper()
    return None


def cpu_bf16_native() -> tuple[Optional[bool], str]:
    """Whether this CPU computes bfloat16 natively for torch's convolutions, with the evidence:
    ``(True | False, reason)``, or ``(None, reason)`` when the flags cannot be read."""
    flags = cpu_flags()
    if flags is None:
        return None, f"the CPU's instruction flags cannot be read on {platform.system() or 'this system'}"
    found = [f for f in BF16_FLAGS if f in flags]
    if not found:
        simd = next((s.upper() for s in ("avx512f", "avx2", "avx", "asimd", "neon", "sse4_2") if s in flags), "no SIMD")
        return False, f"the CPU has no bfloat16 instructions ({simd}, no AVX512-BF16 / AMX)"
    cap = _onednn_cap()
    if cap is not None and cap not in _ONEDNN_BF16_ISAS:
        return False, f"oneDNN is capped at {cap} (ONEDNN_MAX_CPU_ISA), below the CPU's {', '.join(found).upper()}"
    return True, f"the CPU computes bfloat16 natively ({', '.join(found).upper()})"


def _time_conv(dtype_bf16: bool, device: torch.device, reps: int = 3) -> float:
    """Best-of-``reps`` seconds of a small decoder-like convolution (8 x 64 x 32 x 32, 3 x 3)."""
    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(8, 64, 32, 32, generator=g).to(device)
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).to(device)
    best = float("inf")
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype_bf16):
        for i in range(reps + 1):  # the first run warms the kernels up and is not counted
            t0 = time.perf_counter()
            conv(x)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i:
                best = min(best, time.perf_counter() - t0)
    return best


def _timed_choice(device: torch.device, why_unknown: str) -> tuple[str, str]:
    fp32, bf16 = _time_conv(False, device), _time_conv(True, device)
    name = "bf16" if bf16 < TIMING_MARGIN * fp32 else "fp32"
    return name, (f"{why_unknown}; timed a 3x3 convolution: bfloat16 {1e3 * bf16:.2f} ms, float32 "
                  f"{1e3 * fp32:.2f} ms")


@functools.lru_cache(maxsize=None)
def _auto(device: str) -> tuple[str, str]:
    dev = torch.device(device)
    if dev.type == "cuda":
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return "bf16", f"{torch.cuda.get_device_name(dev)} computes bfloat16 natively"
        return "fp32", f"{torch.cuda.get_device_name(dev)} has no native bfloat16"
    if dev.type != "cpu":
        return _timed_choice(dev, f"no bfloat16 capability is known for {dev.type} devices")
    native, reason = cpu_bf16_native()
    if native is None:
        return _timed_choice(dev, reason)
    return ("bf16" if native else "fp32"), reason


def choose_precision(requested: str = "auto", device: str | torch.device = "cpu") -> Precision:
    """Resolve ``requested`` (one of :data:`PRECISIONS`) for ``device``; ``"auto"`` decides by capability
    (see the module docstring; the timing fallback runs once per device and process)."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {requested!r}")
    if requested != "auto":
        reason = "requested"
        if requested == "bf16" and torch.device(device).type == "cpu":
            native, why = cpu_bf16_native()
            if native is False:
                reason = f"requested, although {why}: emulated, many times slower than fp32"
        return Precision(requested, requested, reason)
    name, reason = _auto(str(torch.device(device)))
    return Precision(name, "auto", reason)

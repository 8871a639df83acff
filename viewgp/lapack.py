"""LAPACK's Cholesky (``potrf``) in place on a torch CPU buffer, through the LAPACK that torch links.

``torch.linalg.cholesky`` copies its input into a column-major buffer, factorises it there and then
writes a cleaned copy of the factor (zeros above the diagonal) into yet another buffer: at N = 2,000
the factorisation is 17 of its 27 ms, at N = 5,000 about 260 of 390 ms (measured on 2 cores). A GP
that builds its kernel matrix itself needs none of the copies: the row-major lower triangle of a
symmetric ``A`` is the column-major upper triangle of ``A^T = A``, which ``potrf`` factorises where
it lies, and the factor ``U`` of ``A^T`` with ``U^T U = A^T`` is the wanted lower ``L`` read row-major.

The routine is looked up once in torch's own CPU library (the MKL of the x86 wheels exports the
64-bit-integer ``dpotrf_64_`` / ``spotrf_64_`` and the 32-bit ``dpotrf_`` / ``spotrf_``), so it runs
on torch's LAPACK and threads. Where it is not found (other builds, other devices, other dtypes)
:func:`cholesky_lower_` returns ``None`` and the caller uses torch's own Cholesky.
"""

from __future__ import annotations

import ctypes
import os
from functools import lru_cache
from typing import Optional

import torch
from torch import Tensor

__all__ = ["cholesky_lower_", "available"]

_PREFIX = {torch.float64: "d", torch.float32: "s"}


@lru_cache(maxsize=None)
def _routine(prefix: str) -> Optional[tuple]:
    """``(function, integer type)`` of ``{prefix}potrf`` in torch's CPU library, or ``None``."""
    path = os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so")
    try:
        lib = ctypes.CDLL(path)
    except OSError:
        return None
    for name, itype in ((f"{prefix}potrf_64_", ctypes.c_int64), (f"{prefix}potrf_", ctypes.c_int32)):
        fn = getattr(lib, name, None)
        if fn is not None:
            fn.restype = None
            return fn, itype
    return None


def available(dtype: torch.dtype) -> bool:
    """Whether :func:`cholesky_lower_` can factorise CPU matrices of ``dtype`` here."""
    return dtype in _PREFIX and _routine(_PREFIX[dtype]) is not None


def cholesky_lower_(A: Tensor, clean: bool = True) -> Optional[int]:
    """Overwrite the lower triangle of the row-major ``A`` ``(N, N)`` (the entries above the diagonal
    are not read) with the lower Cholesky factor ``L`` and, with ``clean``, zero the entries above it
    (else they keep what they held: for callers that only pass ``L`` to triangular routines); returns LAPACK's
    ``info`` (0: done; ``k > 0``: the leading minor of order ``k`` is not positive definite, and ``A``
    is then partly overwritten), or ``None``, leaving ``A`` untouched, when this cannot be done here
    (not a contiguous CPU float32/float64 matrix, or no LAPACK found in torch's library)."""
    if (A.device.type != "cpu" or A.dtype not in _PREFIX or A.dim() != 2 or A.shape[0] != A.shape[1]
            or not A.is_contiguous() or A.requires_grad):
        return None
    found = _routine(_PREFIX[A.dtype])
    if found is None:
        return None
    fn, itype = found
    n = A.shape[0]
    if n == 0:
        return 0
    if itype is ctypes.c_int32 and n * n >= 2**31:
        return None  # 32-bit LAPACK integers cannot index it
    info = itype(0)
    fn(ctypes.c_char_p(b"U"), ctypes.byref(itype(n)), ctypes.c_void_p(A.data_ptr()), ctypes.byref(itype(n)),
       ctypes.byref(info))
    if info.value == 0 and clean:
        A.tril_()  # row-major, so a cheap pass (0.6 ms at N = 2,000), unlike torch's on its column-major factor
    return int(info.value)

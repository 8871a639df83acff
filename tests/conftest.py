import os
import sys

import pytest

# Spinning OpenMP threads slow small torch ops many-fold when another process holds a core.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Let the suite run from a checkout that is not pip-installed (the package is importable either way).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(autouse=True)
def _one_thread():
    # Test tensors are tiny: on a shared CPU extra torch threads only add waiting (a second LAPACK
    # thread made a 500 x 500 eigvalsh 50x slower, measured), so every test runs single-threaded and
    # the setting is restored afterwards.
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def cpu_without_bf16(monkeypatch):
    """``precision="auto"`` decides as on a CPU without bfloat16 instructions (AVX2 only), whatever this
    machine has: for tests that compare command outputs with the float32 library calls bit for bit."""
    from generative import precision

    precision._auto.cache_clear()
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"sse4_2", "avx", "avx2", "fma"})
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    yield
    precision._auto.cache_clear()

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

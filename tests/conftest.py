import os
import sys

# Spinning OpenMP threads slow small torch ops many-fold when another process holds a core.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Let the suite run from a checkout that is not pip-installed (the package is importable either way).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import os
import sys

# Let the suite run from a checkout that is not pip-installed (the package is importable either way).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

"""``python -m sequences.cli``: the ``viewgp`` command line."""

import sys

from sequences.cli import main

sys.exit(main())

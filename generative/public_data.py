"""Where the public data beside a checkout lives (never shipped with the project): BSDS500 photographs,
real captures and real trajectories under ``<checkout>/../shared/data/<name>/``, or the folder an
environment variable names. Examples and tests look here and skip, saying why, when a folder is absent.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

__all__ = ["PUBLIC_DATA", "public_data_folder", "missing_reason"]

REPO = Path(__file__).resolve().parents[1]

#: name -> the environment variable that overrides its location
PUBLIC_DATA = {"natural": "VIEWGP_NATURAL", "captures": "VIEWGP_CAPTURES", "trajectories": "VIEWGP_TRAJECTORIES"}


def public_data_folder(name: str) -> Optional[Path]:
    """The folder of public data ``name`` (``"natural"``, ``"captures"``, ``"trajectories"``), or None."""
    if name not in PUBLIC_DATA:
        raise ValueError(f"unknown public data {name!r}; known: {', '.join(PUBLIC_DATA)}")
    env = os.environ.get(PUBLIC_DATA[name])
    candidates = ([Path(env)] if env else []) + [REPO.parent / "shared" / "data" / name, REPO / "shared" / "data" / name]
    return next((c for c in candidates if c.is_dir()), None)


def missing_reason(name: str) -> str:
    """One line saying that ``name`` is absent and how to point at it."""
    return (f"public data '{name}' not available (../shared/data/{name}/ beside the checkout is absent; "
            f"set {PUBLIC_DATA[name]} to its location)")

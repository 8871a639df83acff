"""Real trajectories for tests, read from the shared data folder beside the checkout (never shipped).

The extracts of public datasets (TUM RGB-D, EuRoC MAV, KITTI) are not part of the repository: tests
that need real camera motion look for ``<checkout>/../shared/data/trajectories/`` (or
``<checkout>/shared/...``, or the folder named by ``VIEWGP_TRAJECTORIES``) and skip, saying why, when
the file is not there.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def trajectories_folder() -> Path | None:
    """The first existing candidate folder, or None."""
    env = os.environ.get("VIEWGP_TRAJECTORIES")
    candidates = ([Path(env)] if env else []) + [
        REPO.parent / "shared" / "data" / "trajectories",
        REPO / "shared" / "data" / "trajectories",
    ]
    return next((c for c in candidates if c.is_dir()), None)


def trajectory_file(name: str) -> Path:
    """``name`` in the shared trajectories folder; skips the calling test when it is absent."""
    folder = trajectories_folder()
    if folder is None or not (folder / name).is_file():
        pytest.skip(f"real trajectory {name} not available (shared data folder ../shared/data/trajectories/ "
                    "absent; set VIEWGP_TRAJECTORIES to its location)")
    return folder / name


TUM = "tum_freiburg1_xyz_groundtruth.txt"
EUROC = "euroc_V102_groundtruth_first3000.csv"
KITTI = "kitti_00_gt_first500.txt"
KITTI_TIMES = "kitti_00_times_first500.txt"

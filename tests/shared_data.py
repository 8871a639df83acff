"""Real trajectories for tests, read from the shared data folder beside the checkout (never shipped).

The extracts of public datasets (TUM RGB-D, EuRoC MAV, KITTI) are not part of the repository: tests
that need real camera motion look for ``<checkout>/../shared/data/trajectories/`` (or
``<checkout>/shared/...``, or the folder named by ``VIEWGP_TRAJECTORIES``) and skip, saying why, when
the file is not there.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from generative.public_data import missing_reason, public_data_folder


def trajectories_folder() -> Path | None:
    """The shared trajectories folder (``VIEWGP_TRAJECTORIES`` first), or None."""
    return public_data_folder("trajectories")


def trajectory_file(name: str) -> Path:
    """``name`` in the shared trajectories folder; skips the calling test when it is absent."""
    folder = trajectories_folder()
    if folder is None or not (folder / name).is_file():
        pytest.skip(f"real trajectory {name} not available: {missing_reason('trajectories')}")
    return folder / name


TUM = "tum_freiburg1_xyz_groundtruth.txt"
EUROC = "euroc_V102_groundtruth_first3000.csv"
KITTI = "kitti_00_gt_first500.txt"
KITTI_TIMES = "kitti_00_times_first500.txt"

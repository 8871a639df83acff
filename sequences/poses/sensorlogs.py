"""Phone sensor logs: gyroscope CSVs (``imu``) and orientation CSVs (``orientation``).

Both read columns **by their header names** (any order, extra columns ignored), so an Android
Sensor Logger export is read as written: ``Gyroscope.csv`` has ``time, seconds_elapsed, z, y, x``
(z first), ``Orientation.csv`` has ``time, seconds_elapsed, qz, qy, qx, qw, roll, pitch, yaw``.

* Time: ``seconds_elapsed`` (seconds) when present, else ``timestamp`` / ``time`` / ``t`` in the unit
  the header states (``timestamp [ns]``) or ``time_unit`` (default seconds). A seconds column holding
  values beyond 1e12 (Unix nanoseconds read as seconds) is refused with the fix.
* ``imu``: ``timestamp, gx, gy, gz[, ax, ay, az]`` in rad/s (also ``x, y, z``, ``gyro_x`` ...,
  EuRoC's ``w_RS_S_x``); headerless files must have exactly that order. Orientation by integrating
  the gyroscope in the **body frame** (R(t0) = ``initial_rotation``, default identity); translations
  are zeros (not observable from a gyroscope).
* ``orientation``: unit quaternions ``qx, qy, qz, qw`` (any order), **device-to-world** as Android's
  rotation vector gives them (world: x east, y north, z up). Phone device axes are x right, y up
  the screen, z out of the screen: for the back camera held in portrait these are OpenGL camera
  axes, so ``R_cv = R_device @ diag(1, -1, -1)`` (``camera_axes='opencv'`` reads a file already in
  camera axes). Translations are zeros.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from generative.images.fileio import atomic_write_text
from sequences.poses.posefile import (
    PoseFormatError,
    ReadOptions,
    Table,
    check_increasing,
    fmt_floats,
    header_columns,
    make_trajectory,
    meta_list,
    opengl_to_opencv,
    quaternions_of,
    quats_to_rotations,
    read_table,
)
from sequences.poses.trajectory import PoseTrajectory
from viewgp.poses import integrate_gyroscope, so3_log

__all__ = ["IMU_LAYOUT", "ORIENTATION_LAYOUT", "TIME_NAMES", "GYRO_NAMES", "read_imu", "write_imu",
           "read_orientation", "write_orientation", "sensor_of_name"]

IMU_LAYOUT = "timestamp, gx, gy, gz[, ax, ay, az] (rad/s; header names any order, e.g. Gyroscope.csv 'time,seconds_elapsed,z,y,x')"
ORIENTATION_LAYOUT = "header naming a time column and qx, qy, qz, qw (any order), e.g. Orientation.csv"

_TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
_UNIT_NAMES = {"s": "s", "sec": "s", "seconds": "s", "ms": "ms", "us": "us", "µs": "us", "ns": "ns"}
#: Header names of a time column, in order of preference.
TIME_NAMES = ("seconds_elapsed", "timestamp", "time", "t", "ts")
#: Header names of the gyroscope axes, in order of preference.
GYRO_NAMES = {
    "gx": ("gx", "gyro_x", "gyroscope_x", "wx", "w_rs_s_x", "x"),
    "gy": ("gy", "gyro_y", "gyroscope_y", "wy", "w_rs_s_y", "y"),
    "gz": ("gz", "gyro_z", "gyroscope_z", "wz", "w_rs_s_z", "z"),
}
_ACCEL_NAMES = {
    "ax": ("ax", "acc_x", "accel_x", "accelerometer_x", "a_rs_s_x"),
    "ay": ("ay", "acc_y", "accel_y", "accelerometer_y", "a_rs_s_y"),
    "az": ("az", "acc_z", "accel_z", "accelerometer_z", "a_rs_s_z"),
}
_QUAT_NAMES = {"qx": ("qx",), "qy": ("qy",), "qz": ("qz",), "qw": ("qw",)}


def _check_unit(time_unit: str, fmt: str) -> None:
    if time_unit not in _TIME_UNITS:
        raise ValueError(f"{fmt}: time_unit must be one of {sorted(_TIME_UNITS)}, got {time_unit!r}")


def _times(tab: Table, col: int, time_unit: str) -> tuple[np.ndarray, str]:
    """Seconds from column ``col``: the header's unit, ``seconds_elapsed``'s seconds, else ``time_unit``."""
    unit = time_unit
    if tab.header is not None:
        stated = (tab.units or [None] * len(tab.header))[col]
        if tab.header[col] == "seconds_elapsed":
            unit = "s"
        elif stated is not None:
            if stated.lower() not in _UNIT_NAMES:
                raise PoseFormatError(f"{tab.path}: time column {tab.header[col]!r} has unknown unit [{stated}]; "
                                      f"known: {', '.join(_TIME_UNITS)}")
            unit = _UNIT_NAMES[stated.lower()]
    raw = tab.floats([col])[:, 0]
    if unit == "s" and raw.size and np.abs(raw).max() > 1e12:
        name = tab.header[col] if tab.header is not None else "1"
        raise PoseFormatError(
            f"{tab.path}: time column {name!r} holds values like {raw[0]:.6g}, too large for seconds "
            "(Unix nanoseconds?); pass time_unit='ns' (or 'us', 'ms') to say its unit"
        )
    times = raw * _TIME_UNITS[unit]
    check_increasing(tab, times)
    return times, unit


# ----------------------------------------------------------------------------------------------------
# Gyroscope CSV


def read_imu(path: Path, opts: ReadOptions, times_path=None, time_unit: str = "s", initial_rotation=None) -> PoseTrajectory:
    """Gyroscope CSV -> orientations by :func:`viewgp.poses.integrate_gyroscope` (trapezoidal, body frame),
    starting from ``initial_rotation`` (default identity). Translations are zeros. The raw samples are
    kept in ``metadata['gyroscope']`` (and ``metadata['accelerometer']`` when present)."""
    _check_unit(time_unit, "imu")
    tab = read_table(path, sep=",", ncols=4, min_cols=True, layout=IMU_LAYOUT, header=True)
    if tab.header is None:
        w = tab.same_width()
        if w not in (4, 7):
            raise tab.error(0, f"a headerless gyroscope CSV has 4 or 7 columns ({IMU_LAYOUT}), got {w}")
        t_col, g_cols, a_cols = 0, [1, 2, 3], ([4, 5, 6] if w == 7 else None)
        time_name = "column 1"
    else:
        cols = header_columns(tab, {"t": TIME_NAMES, **GYRO_NAMES, **_ACCEL_NAMES}, optional=tuple(_ACCEL_NAMES))
        t_col, g_cols = cols["t"], [cols["gx"], cols["gy"], cols["gz"]]
        a = [cols["ax"], cols["ay"], cols["az"]]
        a_cols = a if all(c is not None for c in a) else None
        time_name = tab.header[t_col]
    times, unit = _times(tab, t_col, time_unit)
    gyro = tab.floats(g_cols)
    R = integrate_gyroscope(torch.from_numpy(times), torch.from_numpy(gyro.copy()), R0=initial_rotation).numpy()
    meta = {
        "gyroscope": gyro,
        "accelerometer": tab.floats(a_cols) if a_cols is not None else None,
        "time_unit": unit,
        "time_column": time_name,
        "has_times": True,
    }
    return make_trajectory(
        tab, times, R, np.zeros((times.shape[0], 3)), "imu",
        "body (IMU) orientation integrated from the gyroscope, R(t0) = initial rotation; translations are zeros",
        **meta,
    )


def _warn_unstored(traj: PoseTrajectory, what: str, first_rotation: bool) -> None:
    if np.abs(traj.translations).max(initial=0.0) > 0:
        warnings.warn(f"{what} holds orientations only: the translations are not written", stacklevel=4)
    if first_rotation and len(traj) and np.abs(traj.rotations[0] - np.eye(3)).max() > 1e-12:
        warnings.warn(f"{what} starts from the identity orientation: the first rotation is not written", stacklevel=4)


def write_imu(path: Path, traj: PoseTrajectory, times_path=None) -> None:
    """Angular velocities that reproduce ``traj``'s orientations exactly under the reader's trapezoidal
    integration: ``(w_k + w_{k+1}) / 2 = log(R_k^T R_{k+1}) / dt_k``, seeded with the stored first
    gyroscope sample when there is one (then a read file is written back as it was)."""
    n = len(traj)
    R = torch.from_numpy(traj.rotations)
    _warn_unstored(traj, "IMU CSV", first_rotation=True)
    omega = np.zeros((n, 3))
    if n > 1:
        dt = np.diff(traj.timestamps)
        rates = so3_log(R[:-1].transpose(-1, -2) @ R[1:]).numpy() / dt[:, None]
        gyro = meta_list(traj, "gyroscope")
        omega[0] = np.asarray(gyro[0], dtype=np.float64) if gyro is not None else rates[0]
        for k in range(n - 1):
            omega[k + 1] = 2.0 * rates[k] - omega[k]
    acc = meta_list(traj, "accelerometer")
    cols = ["timestamp", "gx", "gy", "gz"] + (["ax", "ay", "az"] if acc is not None else [])
    out = [",".join(cols)]
    for i in range(n):
        vals = [traj.timestamps[i], *omega[i]] + (list(np.asarray(acc[i], dtype=np.float64)) if acc is not None else [])
        out.append(",".join(fmt_floats(vals)))
    atomic_write_text(path, "\n".join(out) + "\n")


# ----------------------------------------------------------------------------------------------------
# Orientation CSV


def _check_axes(camera_axes: str) -> None:
    if camera_axes not in ("opengl", "opencv"):
        raise ValueError(f"orientation: camera_axes must be 'opengl' (phone device axes) or 'opencv', got {camera_axes!r}")


def read_orientation(path: Path, opts: ReadOptions, times_path=None, time_unit: str = "s",
                     camera_axes: str = "opengl") -> PoseTrajectory:
    """Orientation CSV (device-to-world unit quaternions; see the module docstring)."""
    _check_unit(time_unit, "orientation")
    _check_axes(camera_axes)
    tab = read_table(path, sep=",", ncols=5, min_cols=True, layout=ORIENTATION_LAYOUT, header=True)
    if tab.header is None:
        raise PoseFormatError(f"{path}: an orientation CSV needs a header naming its columns ({ORIENTATION_LAYOUT})")
    cols = header_columns(tab, {"t": TIME_NAMES, **_QUAT_NAMES})
    times, unit = _times(tab, cols["t"], time_unit)
    q = tab.floats([cols["qx"], cols["qy"], cols["qz"], cols["qw"]])
    R = quats_to_rotations(tab, q, scalar_first=False, opts=opts)
    if camera_axes == "opengl":
        R = opengl_to_opencv(R)
    return make_trajectory(
        tab, times, R, np.zeros((times.shape[0], 3)), "orientation",
        "device-to-world orientation (world x east, y north, z up); phone device axes converted to the back "
        "camera's OpenCV axes (portrait); translations are zeros" if camera_axes == "opengl" else
        "camera-to-world orientation, OpenCV camera axes; translations are zeros",
        time_unit=unit, time_column=tab.header[cols["t"]], camera_axes_in_file=camera_axes, has_times=True,
    )


def write_orientation(path: Path, traj: PoseTrajectory, times_path=None, camera_axes: str = "opengl") -> None:
    """``timestamp,qx,qy,qz,qw`` (seconds; device axes unless ``camera_axes='opencv'``)."""
    _check_axes(camera_axes)
    _warn_unstored(traj, "orientation CSV", first_rotation=False)
    R = opengl_to_opencv(traj.rotations) if camera_axes == "opengl" else traj.rotations
    q = quaternions_of(R)
    out = ["timestamp,qx,qy,qz,qw"]
    for i in range(len(traj)):
        out.append(",".join(fmt_floats(np.r_[traj.timestamps[i], q[i]])))
    atomic_write_text(path, "\n".join(out) + "\n")


def sensor_of_name(path: Path) -> Optional[str]:
    """What a Sensor-Logger-style file name says it holds: 'gyroscope', another sensor's name, or None."""
    name = path.name.lower()
    for key, sensor in (("gyro", "gyroscope"), ("accel", "accelerometer"), ("gravity", "gravity"),
                        ("magnet", "magnetometer"), ("orient", "orientation"), ("compass", "compass")):
        if key in name:
            return sensor
    return None

"""Novel-view query poses: cameras placed where the run never went."""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["azimuth_sweep"]


def azimuth_sweep(run, azimuths_deg: Sequence[float]):
    """Query poses on a circle around the run's look-at centre (novel views).

    The centre is the least-squares point closest to every optical axis of the run; the circle lies at
    the run's mean distance and mean elevation about the world up direction (the normal of the plane of
    the camera centres when they lie in one, else the mean of the cameras' -y axes). Returns a pose-only
    :class:`~sequences.run.CameraRun` with one pose per azimuth, timestamps spread evenly over the run's.
    """
    from sequences.run import CameraRun
    from sequences.synthetic import look_at

    R = np.asarray(run.rotations, np.float64)
    C = np.asarray(run.translations, np.float64)
    d = R[:, :, 2]  # optical axes in the world
    A = np.zeros((3, 3))
    b = np.zeros(3)
    for c, v in zip(C, d):
        P_ = np.eye(3) - np.outer(v, v)
        A += P_
        b += P_ @ c
    if np.linalg.cond(A) > 1e8:
        raise ValueError("cannot find a look-at centre: the run's optical axes are (nearly) parallel")
    centre = np.linalg.solve(A, b)
    up = -R[:, :, 1].mean(0)  # cameras are held roughly upright: image "up" is -y
    up /= np.linalg.norm(up)
    if len(C) >= 3:
        # Cameras circling at one elevation lie in a plane whose normal is the true up direction;
        # the mean -y axis is tilted by the elevation, so prefer the plane normal when there is one.
        _, sv, vt = np.linalg.svd(C - C.mean(0))
        if sv[1] > 1e-6 * max(sv[0], 1e-12) and sv[2] < 0.05 * sv[1]:
            up = vt[2] * np.sign(vt[2] @ up or 1.0)
    rel = C - centre
    dist = float(np.linalg.norm(rel, axis=1).mean())
    elev = float(np.mean(np.arcsin(np.clip(rel @ up / np.linalg.norm(rel, axis=1), -1, 1))))
    e1 = rel[0] - (rel[0] @ up) * up
    if np.linalg.norm(e1) < 1e-9:
        raise ValueError("cannot sweep azimuths: the first camera sits on the up axis through the centre")
    e1 = e1 / np.linalg.norm(e1)
    e2 = np.cross(up, e1)
    az = np.deg2rad(np.asarray(azimuths_deg, np.float64))
    eyes = centre + dist * (np.cos(elev) * (np.cos(az)[:, None] * e1 + np.sin(az)[:, None] * e2) + np.sin(elev) * up)
    rots = np.stack([look_at(e, centre, up) for e in eyes])
    # The sweep's times span the run's (a time-based baseline then moves through the run instead of
    # freezing on its last frame, as query times 0, 1, 2, ... s would on a run of a few seconds).
    t = np.asarray(run.timestamps, np.float64)
    times = np.linspace(t[0], t[-1], len(az)) if len(az) > 1 and t[-1] > t[0] else t[0] + np.arange(len(az), dtype=np.float64)
    return CameraRun(frames=None, timestamps=times, rotations=rots, translations=eyes,
                     metadata={"query": "azimuth_sweep", "centre": centre.tolist(), "distance": dist})

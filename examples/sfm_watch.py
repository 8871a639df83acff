"""Structure from motion checked against references: the ``watch`` capture and a rendered phone video.

1. **watch** (public data, ``../shared/data/captures/watch``: 44 hand-held iPhone photographs of a wall
   clock, 1080 x 1440): ``viewgp poses --images watch/images`` (:func:`sequences.capture.sfm.reconstruct`, default
   options, exhaustive matching) against the COLMAP model shipped beside the photographs
   (``watch/sparse/0``, 33 registered). The two models agree only up to a similarity (each has its own
   world frame and unit), so the camera centres of the photographs both registered are aligned with
   Umeyama's method (:func:`viewgp.poses.align_poses`); the rotation error (degrees) and the camera-centre
   error as a fraction of the capture's extent (largest distance between two reference centres) remain.
   Targets: >= 30 registered, median rotation error <= 2 degrees, median centre error <= 2% of the extent.
2. **rendered**: :func:`sequences.synthetic.phone_run` (exact poses) written as an H.264 video, posed as
   ``viewgp interpolate --video run.mp4 --poses auto`` would (:func:`sequences.capture.sfm.posed_capture`: frames
   sampled at 10 per second, sequential matching with loop closure), against the poses it was rendered
   with, at the registered frames.

Everything runs on one core (``--threads 1``), so the times are those of a single CPU core.

    .venv/bin/python examples/sfm_watch.py > examples/sfm_watch.txt
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP threads crawl on a shared CPU

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generative.public_data import missing_reason, public_data_folder  # noqa: E402
from sequences.poses.formats import read_poses  # noqa: E402
from sequences.capture.sfm import SfMOptions, posed_capture, pycolmap_missing_reason, reconstruct  # noqa: E402
from viewgp.poses import align_poses  # noqa: E402


def errors_line(alignment) -> str:
    s = alignment.summary()
    return (f"rotation error median {s['rotation_median_deg']:.2f} deg, max {s['rotation_max_deg']:.2f} deg; "
            f"centre error median {100 * s['centre_median_rel']:.2f}%, max {100 * s['centre_max_rel']:.2f}% of the extent "
            f"({s['poses']} poses compared)")


def check(name: str, ok: bool) -> str:
    return f"  {name}: {'ok' if ok else 'MISSED'}"


def watch(options: SfMOptions, progress: bool) -> bool:
    root = public_data_folder("captures")
    if root is None or not (root / "watch" / "images").is_dir():
        print(f"watch: skipped: {missing_reason('captures')}")
        return True
    capture = root / "watch"
    reference = read_poses(capture / "sparse" / "0")
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        result = reconstruct(capture / "images", Path(tmp) / "sparse" / "0", options=options, progress=progress)
        seconds = time.perf_counter() - t
    traj = result.trajectory
    ours = {n: i for i, n in enumerate(traj.metadata["names"])}
    ref_names = reference.metadata["names"]
    both = [n for n in ref_names if n in ours]
    i_ours = [ours[n] for n in both]
    i_ref = [ref_names.index(n) for n in both]
    a = align_poses(traj.rotations[i_ours], traj.translations[i_ours], reference.rotations[i_ref], reference.translations[i_ref])
    s = a.summary()
    f_ours = np.asarray(traj.metadata["intrinsics"])[0, 0]
    f_ref = np.asarray(reference.metadata["intrinsics"])[0, 0]
    print(f"watch: {len(result.names)} photographs (captures/watch/images), features at long side <= "
          f"{options.max_image_size} px, {result.matching} matching")
    print(f"  {result.report()}")
    print(f"  reference captures/watch/sparse/0: {len(ref_names)} registered; both registered: {len(both)}; "
          f"only ours: {', '.join(sorted(set(ours) - set(ref_names))) or 'none'}; "
          f"only the reference: {', '.join(sorted(set(ref_names) - set(ours))) or 'none'}")
    print(f"  time {seconds:.0f} s on one core (features {result.seconds['features']:.0f} s, matching "
          f"{result.seconds['matching']:.0f} s, mapping {result.seconds['mapping']:.0f} s); {result.points} points, "
          f"mean reprojection error {result.reprojection_error:.2f} px; focal length {f_ours:.1f} px (reference {f_ref:.1f})")
    print(f"  after Umeyama alignment: {errors_line(a)}")
    ok = [len(result.registered) >= 30, s["rotation_median_deg"] <= 2.0, s["centre_median_rel"] <= 0.02]
    print(check(">= 30 registered", ok[0]))
    print(check("median rotation error <= 2 deg", ok[1]))
    print(check("median centre error <= 2% of the extent", ok[2]))
    return all(ok)


def rendered(options: SfMOptions, progress: bool, n_frames: int, size: int, fps: float, seed: int) -> bool:
    from sequences.synthetic import phone_run
    from sequences.capture.video import write_video

    run = phone_run(n_frames, size=size, seed=seed, imu_noise=None)
    with tempfile.TemporaryDirectory() as tmp:
        video = write_video(Path(tmp) / "phone.mp4", run.frames, fps=30.0)
        t = time.perf_counter()
        posed = posed_capture(video=video, fps=fps, options=options, progress=progress, warn=lambda text: None)
        seconds = time.perf_counter() - t
    idx = np.asarray(posed.metadata["frame_indices"])
    sfm = posed.metadata["sfm"]
    a = align_poses(posed.rotations, posed.translations, run.rotations[idx], run.translations[idx])
    s = a.summary()
    print(f"rendered: phone_run({n_frames}, size={size}, seed={seed}) as a 30 fps video, sampled at {fps:g} frames per "
          f"second: {sfm['frames']} frames, {sfm['matching']} matching")
    print(f"  registered {sfm['registered']} of {sfm['frames']} frames; time {seconds:.0f} s on one core; focal length "
          f"{posed.intrinsics[0, 0]:.1f} px (rendered with {run.intrinsics[0, 0]:.1f})")
    print(f"  after Umeyama alignment: {errors_line(a)}")
    ok = [sfm["registered"] >= 0.9 * sfm["frames"], s["rotation_median_deg"] <= 2.0, s["centre_median_rel"] <= 0.02]
    print(check(">= 90% registered", ok[0]))
    print(check("median rotation error <= 2 deg", ok[1]))
    print(check("median centre error <= 2% of the extent", ok[2]))
    return all(ok)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    ap.add_argument("--max-image-size", type=int, default=SfMOptions.max_image_size)
    ap.add_argument("--frames", type=int, default=90, help="rendered run: frames at 30 fps (default 90)")
    ap.add_argument("--size", type=int, default=256, help="rendered run: frame size in pixels (default 256)")
    ap.add_argument("--progress", action="store_true", help="phase lines and progress bars on stderr")
    args = ap.parse_args()
    reason = pycolmap_missing_reason()
    if reason is not None:
        print(f"skipped: {reason}")
        return 0
    options = SfMOptions(threads=args.threads, max_image_size=args.max_image_size)
    import pycolmap

    print(f"pycolmap {pycolmap.__version__}, {args.threads} thread(s); targets: median rotation error <= 2 deg, "
          "median camera-centre error <= 2% of the extent after a similarity (Umeyama) alignment")
    ok = watch(options, args.progress)
    ok = rendered(options, args.progress, args.frames, args.size, fps=10.0, seed=0) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

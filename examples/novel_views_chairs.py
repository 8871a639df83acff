"""Reproduction 8(a): novel-view prediction in the ShapeNet-chairs protocol (thesis section 3.3).

For every bundled mesh, ``sequences.synthetic.chairs_protocol`` renders 60 training views (a grid of
20 azimuths x 3 elevations) and 60 novel views (one smooth loop round the object, between the training
azimuths and elevations). The training views are encoded with the backbone; each method predicts the
latents of the 60 novel views from the 60 training latents and their poses; the predictions are decoded.

Methods: GP kernels ``view`` (orientation x translation, the thesis kernel), ``euler`` (periodic SE on
Euler angles) and ``quaternion`` (SE on unit quaternions); ``linear`` (interpolation between the two
training views nearest in viewing angle, weighted by inverse angle, SLERP on the latent sphere) and
``nearest`` (the latent of the nearest training view). ``per-frame`` (encode + decode the true novel
view) is the floor any latent-space method can reach with this backbone.

Reported per method, averaged over objects: pixel MSE of the decoded prediction against the rendered
novel view (images in [0, 1], at the backbone's resolution), and latent MSE against the encoding of
the true novel view (``|z_pred - z_true|^2`` summed over the latent, so on the unit sphere it lies in
[0, 4]).

    .venv/bin/python examples/novel_views_chairs.py            # bundled backbone, all objects
    .venv/bin/python examples/novel_views_chairs.py --objects teddy duck --backbone run/model.safetensors

Several ``--backbone`` checkpoints give one table each, then a side-by-side summary: e.g. the 32 px
Balanced Pioneer and automodulator of ``train_pioneer_32px.py`` / ``train_automodulator_32px.py``, which
are trained on turntable views on mid-grey, so render with ``--background 128``:

    .venv/bin/python examples/novel_views_chairs.py --background 128 \
        --backbone /tmp/pioneer32/run/model.safetensors /tmp/automodulator32/run/model.safetensors
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP threads crawl on a shared CPU

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generative import load, load_default  # noqa: E402
from generative.data import square_resize  # noqa: E402
from generative.frames import decode_frames, encode_frames  # noqa: E402
from sequences.evaluate import frame_errors  # noqa: E402
from viewgp.predict import predict_latents  # noqa: E402
from viewgp.sphere import slerp  # noqa: E402
from sequences.synthetic import chairs_protocol, object_names  # noqa: E402
from viewgp.poses import geodesic_angle  # noqa: E402

GP_METHODS = ("view", "euler", "quaternion")
ROWS = GP_METHODS + ("linear", "nearest", "per-frame")


def two_view_interpolation(R_train: np.ndarray, z_train: np.ndarray, R_query: np.ndarray) -> np.ndarray:
    """For each query rotation, blend the latents of the two training views nearest in angle with
    inverse-angle weights (SLERP on the sphere): the "linear interpolation" baseline for unordered views.
    ``R_*``: ``(N, 3, 3)`` / ``(M, 3, 3)`` rotations; ``z_train``: ``(N, D)`` unit latents -> ``(M, D)``."""
    ang = geodesic_angle(torch.from_numpy(R_query)[:, None], torch.from_numpy(R_train)[None]).numpy()  # (M, N)
    order = np.argsort(ang, axis=1)[:, :2]
    a0 = np.take_along_axis(ang, order[:, :1], 1)[:, 0]
    a1 = np.take_along_axis(ang, order[:, 1:], 1)[:, 0]
    u = a0 / np.maximum(a0 + a1, 1e-12)  # 0 at the nearest view
    return slerp(torch.from_numpy(z_train[order[:, 0]]), torch.from_numpy(z_train[order[:, 1]]), torch.from_numpy(u)).numpy()


def evaluate_object(backbone, obj: str, size: int, steps: int, device: str, background: int = 255) -> dict[str, tuple[float, float]]:
    """``{method: (pixel MSE, latent MSE)}`` for one object rendered on a grey level ``background``."""
    train, novel = chairs_protocol(obj, size=size, background=(background,) * 3)
    z_tr = encode_frames(backbone, train.frames, progress=False).astype(np.float64)
    z_nv = encode_frames(backbone, novel.frames, progress=False).astype(np.float64)
    truth = np.stack([square_resize(np.asarray(f), backbone.resolution) for f in novel.frames])
    p_tr, p_nv = train.pose_features(with_time=True), novel.pose_features(with_time=True)
    t_tr, t_nv = np.asarray(train.timestamps), np.asarray(novel.timestamps)
    preds: dict[str, np.ndarray] = {}
    for m in GP_METHODS:
        preds[m] = predict_latents(m, p_tr, t_tr, z_tr, p_nv, t_nv, backbone.latent_geometry, steps=steps, device=device).mean
    preds["linear"] = two_view_interpolation(np.asarray(train.rotations), z_tr, np.asarray(novel.rotations))
    preds["nearest"] = predict_latents("nearest", p_tr, t_tr, z_tr, p_nv, t_nv, backbone.latent_geometry).mean
    preds["per-frame"] = z_nv
    out = {}
    for m, z in preds.items():
        frames = decode_frames(backbone, z.astype(np.float32))
        out[m] = (float(np.mean(frame_errors(frames, truth)["mse"])), float(((z - z_nv) ** 2).sum(1).mean()))
    return out


def print_table(name: str, per_obj: dict, objects: list[str]) -> None:
    print(f"Novel views, chairs protocol (60 training / 60 novel views per object), {len(objects)} objects, backbone {name}")
    print(f"| {'method':<11} | {'pixel MSE':>9} | {'latent MSE':>10} | {'wins (pixel)':>12} |")
    print(f"|{'-' * 13}|{'-' * 11}|{'-' * 12}|{'-' * 14}|")
    for m in ROWS:
        pix = np.mean([per_obj[o][m][0] for o in objects])
        lat = np.mean([per_obj[o][m][1] for o in objects])
        wins = sum(all(per_obj[o][m][0] <= per_obj[o][k][0] for k in ROWS[:-1] if k != m) for o in objects)
        w = f"{wins}/{len(objects)}" if m != "per-frame" else "(floor)"
        print(f"| {m:<11} | {pix:9.5f} | {lat:10.4f} | {w:>12} |")
    print("\nper object, pixel MSE:")
    print("  " + " ".join(f"{m:>10}" for m in ROWS) + "  object")
    for o in objects:
        print("  " + " ".join(f"{per_obj[o][m][0]:10.5f}" for m in ROWS) + f"  {o}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", nargs="+", default=[None], help="checkpoint(s) (default: the bundled backbone)")
    p.add_argument("--objects", nargs="+", default=None, help=f"meshes (default: all of {', '.join(object_names())})")
    p.add_argument("--size", type=int, default=64, help="render size before resizing to the backbone's resolution")
    p.add_argument("--background", type=int, default=255, help="grey level behind the objects (default white)")
    p.add_argument("--steps", type=int, default=150, help="ML-II steps per GP fit")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    objects = args.objects or object_names()
    results = {}
    for path in args.backbone:
        backbone = load_default(args.device) if path is None else load(path, device=args.device)
        name = f"{backbone.kind} {backbone.resolution} px" + ("" if path is None else f" ({path})")
        results[name] = {obj: evaluate_object(backbone, obj, args.size, args.steps, args.device, args.background) for obj in objects}
        print_table(name, results[name], objects)
        print()
    if len(results) > 1:
        names = list(results)
        print("pixel MSE, mean over objects:")
        print(f"| {'method':<11} | " + " | ".join(f"{n.split(' (')[0]:>22}" for n in names) + " |")
        print(f"|{'-' * 13}|" + "|".join("-" * 24 for _ in names) + "|")
        mean = {n: {m: float(np.mean([results[n][o][m][0] for o in objects])) for m in ROWS} for n in names}
        for m in ROWS:
            print(f"| {m:<11} | " + " | ".join(f"{mean[n][m]:22.5f}" for n in names) + " |")
        for n in names:
            v, lin, floor = mean[n]["view"], mean[n]["linear"], mean[n]["per-frame"]
            closed = 100 * (lin - v) / (lin - floor) if lin > floor else float("nan")
            print(f"  {n}: view kernel {100 * (1 - v / lin):.1f}% below linear interpolation, closing {closed:.0f}% "
                  "of the gap from linear interpolation to the per-frame floor")
    print(f"\nwall time {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Reproduction 8(a): novel-view prediction in the ShapeNet-chairs protocol (thesis section 3.3).

For every object, ``sequences.synthetic.chairs_protocol`` renders 60 training views (a grid of 20
azimuths x 3 elevations) and 60 novel views (one smooth loop round the object, between the training
azimuths and elevations). The pipeline (``sequences.pipeline.run_pipeline``, training views observed,
novel views as the query) encodes the training views, predicts the novel views' latents from the
training latents and poses, decodes them, and scores every method at the rendered size against the
rendered novel views.

Objects: the eight bundled meshes and the procedural objects ``random_000`` ... ``random_049`` (58 in all).
The default backbone was trained on turntables of the meshes and of ``random_000`` ... ``random_024``
(other views than these), never on ``random_025`` ... ``random_049``: those are reported separately as
*held out*.

Methods:
* latent GP kernels ``view`` (orientation x translation, the thesis kernel), ``euler`` (periodic SE on
  Euler angles), ``quaternion`` (SE on unit quaternions); ``view+warp`` / ``view+detail``: the view GP's
  decoded prediction with the training views' own pixels (warped along the decoded motion, from the two
  views nearest in pose) or their GP-interpolated residual detail;
* latent baselines ``linear-pose`` (SLERP between the two training views nearest in pose, inverse-distance
  weights) and ``nearest``;
* no backbone at all: ``px-nearest-pose`` (the nearest training view's pixels), ``px-blend-pose`` (the two
  nearest views' pixels blended), ``px-gp`` (the view GP on pixels).

    .venv/bin/python examples/novel_views_chairs.py                       # bundled backbone, 58 objects
    .venv/bin/python examples/novel_views_chairs.py --objects teddy duck --backbone run/model.safetensors
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
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generative import load, load_default  # noqa: E402
from sequences.pipeline import PipelineConfig, run_pipeline  # noqa: E402
from sequences.pipeline.report import aggregate_table  # noqa: E402
from sequences.synthetic import chairs_protocol, object_names, random_object_names  # noqa: E402

METHODS = ("view", "euler", "quaternion", "linear-pose", "nearest")
HELD_OUT = set(random_object_names(25, 50))


def evaluate_object(backbone, obj: str, size: int, steps: int, device: str, background: int) -> dict:
    """The pipeline's ``metrics.json`` method entries for one object's 60 novel views."""
    train, novel = chairs_protocol(obj, size=size, background=(background,) * 3)
    config = PipelineConfig(methods=METHODS, n_samples=8, fit_steps=steps, device=device, progress=False, media=False,
                            output_size=size)
    with tempfile.TemporaryDirectory() as out:
        return run_pipeline(train, backbone, out, config, query=novel)["methods"]


def latent_summary(results: dict, objects: list[str]) -> str:
    mse = {r: np.mean([results[o][r]["mse_held_out"] for o in objects]) for r in METHODS}
    return "  latent methods, decoded: " + ", ".join(f"{r} {v:.5f}" for r, v in sorted(mse.items(), key=lambda kv: kv[1]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default=None, help="checkpoint (default: the bundled backbone)")
    p.add_argument("--objects", nargs="+", default=None,
                   help="objects (default: the 8 meshes and random_000 ... random_049)")
    p.add_argument("--size", type=int, default=128, help="render and scoring size (the backbone sees it resized)")
    p.add_argument("--background", type=int, default=255, help="grey level behind the objects (default white)")
    p.add_argument("--steps", type=int, default=150, help="ML-II steps per GP fit")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    objects = args.objects or (object_names() + random_object_names(0, 50))
    backbone = load_default(args.device) if args.backbone is None else load(args.backbone, device=args.device)
    results = {}
    for i, obj in enumerate(objects, 1):
        results[obj] = evaluate_object(backbone, obj, args.size, args.steps, args.device, args.background)
        print(f"  [{i}/{len(objects)}] {obj}: " + ", ".join(f"{m} {results[obj][m]['mse_held_out']:.5f}"
                                                          for m in ("view", "view+warp", "px-gp")), flush=True)
    name = f"{backbone.kind} {backbone.resolution} px" + ("" if args.backbone is None else f" ({args.backbone})")
    print(f"\nNovel views, chairs protocol (60 training / 60 novel views per object), scored at {args.size} px, backbone {name}\n")
    seen = [o for o in objects if o not in HELD_OUT]
    held = [o for o in objects if o in HELD_OUT]
    print(aggregate_table(results, "all objects"))
    print(latent_summary(results, objects))
    for title, group in (("objects seen in the backbone's training (other views)", seen),
                         ("objects held out of the backbone's training", held)):
        if group and len(group) < len(objects):
            print()
            print(aggregate_table({o: results[o] for o in group}, title))
            print(latent_summary(results, group))
    print(f"\nwall time {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

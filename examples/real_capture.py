"""Real captures in the tables: interpolation of held-out photographs of every posed real capture.

Every capture under ``../shared/data/captures/`` (or the folder ``VIEWGP_CAPTURES`` names) that is a folder
of posed photographs (``images/`` + a COLMAP model in ``sparse/0/``) goes through
``sequences.pipeline.run_pipeline`` as ``viewgp interpolate --images CAPTURE/images --poses CAPTURE/sparse/0``
would, with every 2nd and every 4th posed photograph observed, scored at 256 px on the photographs the
methods did not see. The table has every method of the pipeline: the latent GP kernels ``view`` and ``time``,
``linear`` (SLERP between the neighbouring keyframes' latents), the headline ``view+warp`` (the view GP's
decoded prediction with the keyframes' pixels warped along the decoded motion), ``view+detail``, the
per-frame reconstruction (a floor: it encodes every true frame), every baseline that uses no model
(``px-nearest-time``, ``px-nearest-pose``, ``px-blend``, ``px-flow``, ``px-gp``), and two diagnostic rows that
see the held-out photographs and so are no methods: the same warp driven by each photograph's own
reconstruction (``per-frame+warp``: a perfect latent prediction) and by the photograph itself at the
backbone's resolution (``truth+warp``: a perfect decoder).

The first capture's comparison video (every 2nd observed) gives one held-out frame to
``examples/real_capture_comparison_frame.png``.

    .venv/bin/python examples/real_capture.py > examples/real_capture.txt
    .venv/bin/python examples/real_capture.py --backbone runs/natural/model.safetensors
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

from generative.backbones.registry import load_backbone  # noqa: E402
from generative.public_data import missing_reason, public_data_folder  # noqa: E402
from sequences.capture.load import load_capture  # noqa: E402
from sequences.pipeline import PipelineConfig, run_pipeline  # noqa: E402
from sequences.pipeline.report import aggregate_table  # noqa: E402
from viewgp.keyframes import parse_keyframes  # noqa: E402

METHODS = ("view", "time", "linear")
PROTOCOLS = ("every:2", "every:4")
FRAME_PNG = Path(__file__).with_name("real_capture_comparison_frame.png")


def posed_captures(root: Path) -> list[Path]:
    """The capture folders under ``root`` with ``images/`` and a COLMAP model ``sparse/0/``."""
    return [c for c in sorted(root.iterdir()) if (c / "images").is_dir() and (c / "sparse" / "0").is_dir()]


def comparison_frame(video: Path, index: int, png: Path) -> None:
    """Frame ``index`` of the comparison video written as a PNG."""
    import cv2

    cap = cv2.VideoCapture(str(video))
    cap.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, frame = cap.read()
    cap.release()
    if not ok:
        raise RuntimeError(f"cannot read frame {index} of {video}")
    cv2.imwrite(str(png), frame)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default=None, help="weights file (default: the bundled backbone)")
    p.add_argument("--size", type=int, default=256, help="output and scoring size (default 256)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--frame", default=str(FRAME_PNG), help="where the comparison frame goes ('' for none)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    root = public_data_folder("captures")
    if root is None:
        print(f"skipped: {missing_reason('captures')}")
        return 0
    captures = posed_captures(root)
    if not captures:
        print(f"skipped: no posed captures (images/ + sparse/0/) under {root}")
        return 0
    t0 = time.perf_counter()
    backbone = load_backbone(args.backbone)
    results: dict[str, dict] = {proto: {} for proto in PROTOCOLS}
    runs = {}
    for capture in captures:
        run = load_capture(images=capture / "images", poses=capture / "sparse" / "0")
        runs[capture.name] = len(run)
        for proto in PROTOCOLS:
            observed = parse_keyframes(proto, len(run))
            media = bool(args.frame) and capture == captures[0] and proto == PROTOCOLS[0]
            config = PipelineConfig(methods=METHODS, output_size=args.size, progress=False, media=media,
                                    diagnostics=True)
            with tempfile.TemporaryDirectory() as folder:
                m = run_pipeline(run.with_observed(observed), backbone, folder, config)
                if media:  # the held-out frame in the middle of the run
                    held = np.flatnonzero(~np.asarray(observed, bool))
                    comparison_frame(Path(folder) / "comparison.mp4", int(held[len(held) // 2]), Path(args.frame))
            results[proto][capture.name] = m["methods"]
    print(f"Real captures: {', '.join(f'{k} ({n} posed photographs)' for k, n in runs.items())}; backbone "
          f"{backbone.kind} {backbone.resolution} px ({args.backbone or 'bundled'}); scored at {args.size} px on the "
          f"photographs not observed\n")
    for proto in PROTOCOLS:
        print(aggregate_table(results[proto], f"{proto} observed, captures"))
        print()
    print(f"wall time {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

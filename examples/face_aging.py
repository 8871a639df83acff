"""Face aging by chained CycleGAN translators on our synthetic faces (issue 8 must-show; Publication IV).

1. renders labelled synthetic faces (``generative.aging.synthetic_faces``: age drives grey hair, wrinkles and
   sagging) into the six SPEC-5 domains 15 ... 65, and a second, disjoint labelled set;
2. trains our small age regressor on the second set (the estimator only scores, as in the paper) and
   reports its error on the first;
3. runs ``generative.aging.chain.train_aging``: a fresh translator per stage, then the greedy re-use choice
   (Algorithm 1) -- the same code as ``viewgp age train``;
4. writes the per-stage table (mean estimated age of translated validation images and its increase,
   separate vs re-used translators) to ``examples/face_aging.txt`` and an aging strip (a validation face of
   15 taken forward to 65 by the greedy chain, the separate translators where they differ and the re-use
   candidates, and one of 65 taken back to 15) to ``examples/face_aging_strip.png``.

    .venv/bin/python examples/face_aging.py --out /tmp/aging --threads 2      # ~40 min on 2 CPU cores

Resumable: run it again with the same --out after a kill and finished translators are skipped.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generative.aging.age_estimator import load_age_estimator  # noqa: E402
from generative.aging.chain import AgingConfig, aging_strip, fit_age_regressor, load_face, read_age_labels, train_aging  # noqa: E402
from generative.aging.synthetic_faces import DOMAIN_CENTRES, make_face_dataset  # noqa: E402

HERE = Path(__file__).resolve().parent


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="/tmp/aging")
    p.add_argument("--identities", type=int, default=120, help="faces per age (training set)")
    p.add_argument("--size", type=int, default=32, help="image size (multiple of 4)")
    p.add_argument("--steps", type=int, default=1500, help="iterations per fresh translator")
    p.add_argument("--retrain-steps", type=int, default=None, help="iterations per partial re-training (default steps/2)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--gen-width", type=int, default=16)
    p.add_argument("--res-blocks", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--table", default=str(HERE / "face_aging.txt"))
    p.add_argument("--strip", default=str(HERE / "face_aging_strip.png"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)
    out = Path(args.out)
    t0 = time.perf_counter()

    # 1. data: three ages per domain (c-4, c-1, c+2); the estimator's set shares no identity (seed 1)
    ages = [c + d for c in DOMAIN_CENTRES for d in (-4, -1, 2)]
    csv_path = out / "faces" / "labels.csv"
    if not csv_path.is_file():
        make_face_dataset(out / "faces", args.identities, ages, size=args.size, seed=0)
    labels = read_age_labels(csv_path)

    # 2. the age estimator
    est_path = out / "age_estimator.pt"
    if not est_path.is_file():
        est_csv = out / "estimator_faces" / "labels.csv"
        if not est_csv.is_file():
            make_face_dataset(out / "estimator_faces", 60, range(10, 70, 2), size=args.size, seed=1)
        fit_age_regressor(read_age_labels(est_csv), steps=1500, seed=0).save(est_path)
    estimator = load_age_estimator(est_path)
    imgs = np.stack([cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB) for f, _ in labels])
    err = np.abs(estimator.predict(imgs) - np.array([a for _, a in labels]))
    est_line = f"age estimator (trained on 1800 other faces): mean absolute error {err.mean():.2f} years on the {len(labels)} training faces"
    print(est_line)

    # 3. fresh translators, greedy re-use, evaluation
    cfg = AgingConfig(
        out_dir=str(out / "run"), image_size=args.size, steps=args.steps, retrain_steps=args.retrain_steps,
        batch_size=args.batch_size, model=dict(gen_width=args.gen_width, n_res_blocks=args.res_blocks, disc_width=16),
        threads=args.threads, progress=False,
    )  # fmt: skip
    result = train_aging(cfg, labels, estimator)
    # summed over resumed runs, so the table states the whole cost
    elapsed = out / "elapsed_s.txt"
    wall = time.perf_counter() - t0 + (float(elapsed.read_text()) if elapsed.is_file() else 0.0)
    elapsed.write_text(f"{wall:.1f}\n")

    # 4. table and strip
    text = (out / "run" / "evaluation.txt").read_text()
    sel = "\n".join(
        f"  stage {s['stage']}: |mean age - target| fresh {s['score_fresh']:.2f}, re-used {s['score_reused']:.2f} -> {s['chosen']}"
        for s in result["selection"]
    )
    header = (
        f"# examples/face_aging.py: {args.identities} synthetic identities x {len(ages)} ages at {args.size} px, "
        f"translators gen_width {args.gen_width}, {args.res_blocks} residual blocks, batch {args.batch_size}, "
        f"{args.steps} steps fresh / {cfg.retrain_steps or args.steps // 2} re-training; total {wall / 60:.1f} min "
        f"on {args.threads} CPU threads (all runs)\n# {est_line}\n"
        "# columns: input = mean estimated age of the stage's real validation images; direct = after one "
        "translation; chained = the 15-domain validation faces taken through every stage so far\n"
        "# chains: separate = a fresh translator per stage; reused = the greedy choice; re-use candidate = every "
        "stage from the previous translator partially re-trained on it, chosen or not\n"
    )
    Path(args.table).write_text(header + "\ngreedy selection (Algorithm 1):\n" + sel + "\n" + text)
    print(header + sel + "\n" + text)

    chain, separate = result["chain"], result["separate"]
    val = out / "run" / "domains" / "val"
    face = lambda c: load_face(sorted((val / f"age_{c}").glob("*.png"))[0], args.size)  # noqa: E731
    strips = {"greedy chain, 15 -> 65": (chain, 15, 65), "separate translators, 15 -> 65": (separate, 15, 65),
              "re-use candidates, 15 -> 65": (result["candidates"], 15, 65), "greedy chain backwards, 65 -> 15": (chain, 65, 15)}  # fmt: skip
    if chain.stages == separate.stages:  # the greedy choice kept every fresh translator: one row shows both
        del strips["separate translators, 15 -> 65"]
    titles = list(strips)
    rows = [aging_strip(ch, face(a), a, b) for ch, a, b in strips.values()]
    w = max(r.shape[1] for r in rows)
    blocks = []
    for t, r in zip(titles, rows):
        bar = np.full((16, w, 3), 255, np.uint8)
        cv2.putText(bar, t, (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        blocks += [bar, np.pad(r, ((0, 0), (0, w - r.shape[1]), (0, 0)), constant_values=255)]
    cv2.imwrite(args.strip, cv2.cvtColor(np.concatenate(blocks), cv2.COLOR_RGB2BGR))
    print(f"table: {args.table}\nstrip: {args.strip}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

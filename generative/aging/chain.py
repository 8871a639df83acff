"""Face aging by recursively chained translators (Publication IV; thesis 3.1.3, 4.4; SPEC 5).

Faces are binned by age into domains centred on 15, 25, ..., 65 (10 years wide; the outer bins are open,
as the paper's 2-18 and 60+). A CycleGAN translator is trained for every transition ``A_k -> A_k+1``, and
the chain re-uses translators greedily (:func:`train_aging`, our reading of the thesis' Algorithm 1, whose
text is not available -- see notes/aging_inversion.md A.8):

    T = fresh translator for A_0 -> A_1;  serves = [0]
    for k = 1 ... K-2:
        fresh_k  = a new translator trained on A_k -> A_k+1
        reused_k = T partially re-trained (``retrain_steps``) jointly on every transition it serves and
                   A_k -> A_k+1 (the original's --triplet mode: one update per transition per step)
        score(t) = | mean age of t(val A_k) - mean age of val A_k+1 |   (the estimator only scores)
        if score(reused_k) <= score(fresh_k) + tolerance:  T = reused_k, serves += [k]   (re-use)
        else:                                              T = fresh_k,  serves = [k]

so one translator can cover several consecutive stages, fed its own output (the paper found 25->35 also
serving 35->45 and 45->55). Chains run forward (``G_ab``: older) and backward (``G_ba``: younger).

Run folder of :func:`train_aging`: ``domains/{train,val}/age_<c>/`` (hard links or copies of the binned
images), ``fresh_<a>_<b>/`` and ``reuse_<a>_<b>/`` translator runs (each resumable, skipped when finished),
``age_estimator.pt`` when our regressor was trained here, ``chain.json`` (the greedy chain),
``chain_separate.json`` (one fresh translator per stage), ``chain_reuse_candidates.json`` (every stage from
its re-use candidate, chosen or not), ``selection.json`` (every comparison) and ``evaluation.txt`` /
``evaluation.json`` (:func:`evaluate_chain` for the three chains).
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from generative.backbones.registry import to_uint8
from generative.backbones.checkpoint import CheckpointManager
from generative.images.datasets import ImageFolderDataset, uint8_to_tensor
from generative.images.geometry import square_resize
from generative.images.fileio import atomic_write_csv, atomic_write_text
from generative.images.imageio import is_image_file, read_image
from generative.aging.translator import Translator, load_translator

__all__ = [
    "DEFAULT_CENTRES",
    "age_domain",
    "read_age_labels",
    "estimate_folder_ages",
    "estimate_ages",
    "fit_age_regressor",
    "domain_dir",
    "load_folder_images",
    "load_face",
    "split_domains",
    "AgingConfig",
    "choose_reused",
    "stage_score",
    "AgingChain",
    "train_aging",
    "evaluate_chain",
    "format_evaluation",
    "aging_strip",
    "parse_stages",
]

DEFAULT_CENTRES: tuple[int, ...] = (15, 25, 35, 45, 55, 65)
AgeEstimator = Callable[[Tensor], Tensor]
PathLike = Union[str, os.PathLike]


# ------------------------------------------------------------------------------ domains
def age_domain(age: float, centres: Sequence[int] = DEFAULT_CENTRES) -> int:
    """Domain centre for ``age``: the centre nearest to it (bins half-way between centres, ties to the
    older bin); everything below the first / above the last bin goes to the outer bins (open ends)."""
    if not math.isfinite(age):
        raise ValueError(f"age must be a finite number, got {age}")
    cs = sorted(int(c) for c in centres)
    for lo, hi in zip(cs, cs[1:]):
        if age < (lo + hi) / 2:
            return lo
    return cs[-1]


def read_age_labels(csv_path: PathLike, root: Optional[PathLike] = None) -> list[tuple[Path, float]]:
    """``(image path, age)`` rows of a labels CSV with a header naming ``file`` and ``age`` columns (file
    paths relative to ``root``, default the CSV's folder). Missing columns, non-numeric or non-finite ages
    and listed files that do not exist raise ``ValueError`` naming the row; an empty table too."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"age labels file not found: {csv_path} (a CSV with columns file,age)")
    root = Path(root) if root is not None else csv_path.parent
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        header = [h.strip().lower() for h in (reader.fieldnames or [])]
        if "file" not in header or "age" not in header:
            raise ValueError(f"{csv_path}: the header must name the columns 'file' and 'age', got {reader.fieldnames}")
        reader.fieldnames = header
        rows = []
        for line, row in enumerate(reader, start=2):
            try:
                age = float(row["age"])
            except (TypeError, ValueError):
                raise ValueError(f"{csv_path} line {line}: age {row['age']!r} is not a number") from None
            if not math.isfinite(age):
                raise ValueError(f"{csv_path} line {line}: age {row['age']!r} is not finite")
            path = root / row["file"].strip()
            if not path.is_file():
                raise ValueError(f"{csv_path} line {line}: image {path} does not exist")
            rows.append((path, age))
    if not rows:
        raise ValueError(f"{csv_path} lists no images")
    return rows


def estimate_folder_ages(folder: PathLike, estimator: AgeEstimator, image_size: int = 64, batch: int = 64) -> list[tuple[Path, float]]:
    """Label every image under ``folder`` with ``estimator`` (for data without an age CSV)."""
    ds = ImageFolderDataset(folder, image_size, flip=False)
    out = []
    for i in range(0, ds.num_images(), batch):
        idx = range(i, min(i + batch, ds.num_images()))
        ages = torch.as_tensor(estimator(torch.stack([ds[j] for j in idx]))).reshape(-1).tolist()
        out.extend((ds.files[j], float(a)) for j, a in zip(idx, ages))
    return out


def fit_age_regressor(labels: Sequence[tuple[Path, float]], steps: int = 1500, seed: int = 0):
    """Our :class:`~generative.aging.age_estimator.AgeRegressor` (32 px input) trained on labelled image files."""
    from generative.aging.age_estimator import AgeRegressor

    imgs = [square_resize(read_image(f, what="labelled image"), 32) for f, _ in labels]
    reg = AgeRegressor(input_size=32)
    reg.fit(np.stack(imgs), [a for _, a in labels], steps=steps, seed=seed)
    return reg


def split_domains(
    labels: Sequence[tuple[Path, float]],
    centres: Sequence[int] = DEFAULT_CENTRES,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> dict[str, dict[int, list[tuple[Path, float]]]]:
    """Bin labelled images into domains and split each into ``{"train": ..., "val": ...}`` (a seeded
    shuffle; at least one validation image per domain). Every domain must get two images or more."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    cs = sorted(int(c) for c in centres)
    if len(cs) < 2 or len(set(cs)) != len(cs):
        raise ValueError(f"need at least two distinct domain centres, got {list(centres)}")
    binned: dict[int, list] = {c: [] for c in cs}
    for path, age in labels:
        binned[age_domain(age, cs)].append((Path(path), float(age)))
    empty = [c for c in cs if len(binned[c]) < 2]
    if empty:
        counts = ", ".join(f"{c}: {len(binned[c])}" for c in cs)
        raise ValueError(f"age domain(s) {empty} have fewer than 2 images (need train and validation images; counts {counts})")
    rng = np.random.default_rng(seed)
    out: dict[str, dict[int, list]] = {"train": {}, "val": {}}
    for c in cs:
        items = sorted(binned[c], key=lambda r: str(r[0]))
        order = rng.permutation(len(items))
        n_val = min(max(1, int(round(val_fraction * len(items)))), len(items) - 1)
        out["val"][c] = [items[i] for i in order[:n_val]]
        out["train"][c] = [items[i] for i in order[n_val:]]
    return out


def domain_dir(root: Path, split: str, centre: int) -> Path:
    """``root/domains/<split>/age_<centre>`` of a :func:`train_aging` run."""
    return root / "domains" / split / f"age_{centre}"


def _materialise(split: dict, root: Path) -> None:
    """Hard-link (or copy) every binned image into ``root/domains/<split>/age_<c>/`` with a labels.csv."""
    for name, domains in split.items():
        for c, items in domains.items():
            d = domain_dir(root, name, c)
            d.mkdir(parents=True, exist_ok=True)
            rows = []
            for i, (src, age) in enumerate(items):
                dst = d / f"{i:06d}{src.suffix.lower()}"
                if not dst.exists():
                    try:
                        os.link(src, dst)
                    except OSError:
                        shutil.copyfile(src, dst)
                rows.append((dst.name, age, str(src)))
            atomic_write_csv(d / "labels.csv", ["file", "age", "source"], rows)


def load_folder_images(folder: Path, image_size: int) -> Tensor:
    """Every image under ``folder`` as ``(N, 3, s, s)`` in [-1, 1] (sorted by path)."""
    ds = ImageFolderDataset(folder, image_size, flip=False)
    return torch.stack([ds[i] for i in range(ds.num_images())])


# ------------------------------------------------------------------------------ chains
@dataclass
class AgingChain:
    """Translators for the stages ``centres[k] -> centres[k+1]``; ``stages[k]`` is the file of the
    translator that does stage ``k`` (the same file on consecutive stages = a translator fed its own output)."""

    centres: list
    stages: list
    root: Path = field(default=Path("."), repr=False)
    _cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.centres = [int(c) for c in self.centres]
        if len(self.stages) != len(self.centres) - 1:
            raise ValueError(f"a chain over {len(self.centres)} domains needs {len(self.centres) - 1} stages, got {len(self.stages)}")

    @classmethod
    def load(cls, path: PathLike) -> "AgingChain":
        """From a ``chain.json`` file or a folder holding one."""
        path = Path(path)
        if path.is_dir():
            path = path / "chain.json"
        if not path.is_file():
            raise FileNotFoundError(f"aging chain not found: {path} (the chain.json that `viewgp age train` writes)")
        try:
            d = json.loads(path.read_text())
            return cls(d["centres"], [s["translator"] for s in d["stages"]], root=path.parent)
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"{path} is not an aging chain file ({exc})") from exc

    def save(self, path: PathLike) -> Path:
        path = Path(path)
        d = {
            "centres": self.centres,
            "stages": [{"from": a, "to": b, "translator": str(t)} for a, b, t in zip(self.centres, self.centres[1:], self.stages)],
        }
        return atomic_write_text(path, json.dumps(d, indent=2))

    def translator(self, k: int) -> Translator:
        f = str(self.stages[k])
        if f not in self._cache:
            self._cache[f] = load_translator(self.root / f)
        return self._cache[f]

    @property
    def image_size(self) -> int:
        return self.translator(0).image_size

    def steps(self, start: int, end: int) -> list[tuple[int, str]]:
        """``(stage index, direction)`` from domain ``start`` to domain ``end`` (centres)."""
        for c in (start, end):
            if c not in self.centres:
                raise ValueError(f"age {c} is not a domain of this chain; its domains are {self.centres}")
        i, j = self.centres.index(start), self.centres.index(end)
        return [(k, "ab") for k in range(i, j)] if j >= i else [(k, "ba") for k in range(i - 1, j - 1, -1)]

    @torch.no_grad()
    def apply(self, x: Tensor, start: int, end: int) -> list[Tensor]:
        """Images ``(N, 3, s, s)`` in [-1, 1] of age ``start`` taken step by step to ``end`` (older with
        ``end > start``, younger otherwise); returns ``[x, after step 1, ..., at end]``."""
        out = [x]
        for k, direction in self.steps(start, end):
            out.append(self.translator(k).translate(out[-1], direction).cpu())
        return out


def parse_stages(text: str) -> tuple[int, int]:
    """``"25:65"`` -> ``(25, 65)``."""
    try:
        a, b = (int(v) for v in text.split(":"))
    except ValueError:
        raise ValueError(f"stages must be START:END ages, e.g. 25:65 (or 65:25 to go younger), got {text!r}") from None
    return a, b


# ------------------------------------------------------------------------------ the greedy re-use rule
def stage_score(translated_ages: Tensor, target_ages: Tensor) -> float:
    """Distance in years of the mean estimated age of translated images from that of the real images of
    the target domain (lower is better)."""
    return abs(float(torch.as_tensor(translated_ages).double().mean()) - float(torch.as_tensor(target_ages).double().mean()))


def choose_reused(score_reused: float, score_fresh: float, tolerance: float = 0.0) -> bool:
    """Thesis Algorithm 1's test: keep the re-used translator when it is no worse than the fresh one."""
    return score_reused <= score_fresh + tolerance


@torch.no_grad()
def estimate_ages(estimator: AgeEstimator, x: Tensor, batch: int = 128) -> Tensor:
    """``estimator`` over ``x (N, 3, s, s)`` in batches -> float64 ages ``(N,)``."""
    return torch.cat([torch.as_tensor(estimator(x[i : i + batch])).reshape(-1).double().cpu() for i in range(0, x.shape[0], batch)])


# ------------------------------------------------------------------------------ training
@dataclass
class AgingConfig:
    """One aging run. ``steps``: iterations per fresh translator; ``retrain_steps``: of each partial
    re-training (default ``steps // 2``, the paper's 300k on top of 600k); ``model``: translator fields."""

    out_dir: str = "runs/aging"
    centres: tuple = DEFAULT_CENTRES
    val_fraction: float = 0.1
    image_size: int = 64
    steps: int = 10_000
    retrain_steps: Optional[int] = None
    batch_size: int = 1
    model: dict = field(default_factory=dict)
    tolerance: float = 0.0
    seed: int = 0
    device: str = "cpu"
    threads: Optional[int] = None
    progress: bool = True

    def to_dict(self) -> dict:
        d = asdict(self)
        d["centres"] = list(self.centres)
        return d


def _run_translator(cfg: AgingConfig, root: Path, name: str, pairs: list, steps: int, init: Optional[str]) -> str:
    """Train (or finish, or skip when done) one translator run ``root/name``; returns its translator.pt path."""
    from generative.aging.training import TranslatorTrainConfig, train_translator

    out = root / name
    if (out / "translator.pt").is_file():
        return f"{name}/translator.pt"
    tc = TranslatorTrainConfig(
        pairs=pairs, out_dir=str(out), steps=steps, batch_size=cfg.batch_size, image_size=cfg.image_size,
        model=dict(cfg.model), init=init, seed=cfg.seed, device=cfg.device, threads=cfg.threads,
        checkpoint_every=max(steps // 4, 1), sample_every=max(steps // 4, 1), log_every=max(min(50, steps // 10), 1),
        progress=cfg.progress,
    )  # fmt: skip
    train_translator(tc, resume=bool(CheckpointManager(out / "checkpoints").checkpoints()))
    return f"{name}/translator.pt"


def train_aging(
    cfg: AgingConfig,
    labels: Sequence[tuple[Path, float]],
    estimator: AgeEstimator,
    log: Callable[[str], None] = print,
) -> dict:
    """Bin ``labels`` into domains, train fresh translators for every stage and pick the greedy re-use
    chain (module docstring); resumable: finished translator runs are skipped, unfinished ones resumed.
    Returns ``{"chain": AgingChain, "separate": AgingChain, "candidates": AgingChain, "selection": [...],
    "evaluation": {...}}``."""
    root = Path(cfg.out_dir)
    root.mkdir(parents=True, exist_ok=True)
    centres = sorted(int(c) for c in cfg.centres)
    split = split_domains(labels, centres, cfg.val_fraction, cfg.seed)
    _materialise(split, root)
    atomic_write_text(root / "aging_config.json", json.dumps(cfg.to_dict(), indent=2))
    train_dir = {c: str(domain_dir(root, "train", c)) for c in centres}
    val = {c: load_folder_images(domain_dir(root, "val", c), cfg.image_size) for c in centres}
    val_age = {c: estimate_ages(estimator, val[c]) for c in centres}
    retrain = cfg.retrain_steps if cfg.retrain_steps is not None else max(cfg.steps // 2, 1)
    K = len(centres) - 1

    fresh = []
    for k in range(K):
        a, b = centres[k], centres[k + 1]
        log(f"fresh translator {a} -> {b} ({cfg.steps} steps)")
        fresh.append(_run_translator(cfg, root, f"fresh_{a}_{b}", [(train_dir[a], train_dir[b])], cfg.steps, None))

    def score(file: str, k: int) -> float:
        t = load_translator(root / file)
        return stage_score(estimate_ages(estimator, t.translate(val[centres[k]], "ab")), val_age[centres[k + 1]])

    stages = [fresh[0]] + [None] * (K - 1)
    current, serves, selection = fresh[0], [0], []
    for k in range(1, K):
        a, b = centres[k], centres[k + 1]
        pairs = [(train_dir[centres[j]], train_dir[centres[j + 1]]) for j in serves + [k]]
        init = str(root / Path(current).parent)
        log(f"re-used translator ({current}) partially re-trained on stages {[centres[j] for j in serves + [k]]} ({retrain} steps)")
        reused = _run_translator(cfg, root, f"reuse_{a}_{b}", pairs, retrain, init)
        s_fresh, s_reused = score(fresh[k], k), score(reused, k)
        keep = choose_reused(s_reused, s_fresh, cfg.tolerance)
        selection.append({"stage": f"{a}->{b}", "fresh": fresh[k], "reused": reused, "score_fresh": round(s_fresh, 3),
                          "score_reused": round(s_reused, 3), "chosen": "reused" if keep else "fresh"})  # fmt: skip
        log(f"stage {a} -> {b}: |age error| fresh {s_fresh:.2f}, re-used {s_reused:.2f} -> {'re-use' if keep else 'fresh'}")
        if keep:
            serves.append(k)
            for j in serves:
                stages[j] = reused
            current = reused
        else:
            stages[k], current, serves = fresh[k], fresh[k], [k]

    chain = AgingChain(centres, stages, root=root)
    separate = AgingChain(centres, fresh, root=root)
    # every stage from its re-use candidate, chosen or not: what re-use would have given where it lost
    candidates = AgingChain(centres, [fresh[0]] + [s["reused"] for s in selection], root=root)
    chain.save(root / "chain.json")
    separate.save(root / "chain_separate.json")
    candidates.save(root / "chain_reuse_candidates.json")
    atomic_write_text(root / "selection.json", json.dumps(selection, indent=2))
    named = {"separate": separate, "reused": chain, "re-use candidate": candidates}
    evaluation = {name: evaluate_chain(ch, val, estimator, val_age) for name, ch in named.items()}
    atomic_write_text(root / "evaluation.json", json.dumps(evaluation, indent=2))
    text = format_evaluation(evaluation, val_age)
    atomic_write_text(root / "evaluation.txt", text)
    log(text)
    return {"chain": chain, "separate": separate, "candidates": candidates, "selection": selection, "evaluation": evaluation}


# ------------------------------------------------------------------------------ evaluation
@torch.no_grad()
def evaluate_chain(
    chain: AgingChain, val: dict[int, Tensor], estimator: AgeEstimator, val_age: Optional[dict[int, Tensor]] = None
) -> list[dict]:
    """Per stage ``a -> b``: the mean estimated age of ``val[a]`` translated once (``direct``) and of the
    youngest domain's validation images chained up to ``b`` (``chained``), each with its increase over the
    stage's input. ``val``: ``{centre: (N, 3, s, s)}`` images in [-1, 1]; ``val_age``: their estimated
    ages, when already known (several chains are evaluated on the same images)."""
    if val_age is None:
        val_age = {c: estimate_ages(estimator, x) for c, x in val.items()}
    x = val[chain.centres[0]]
    prev = float(val_age[chain.centres[0]].mean())
    rows = []
    for k, (a, b) in enumerate(zip(chain.centres, chain.centres[1:])):
        t = chain.translator(k)
        src = float(val_age[a].mean())
        direct = float(estimate_ages(estimator, t.translate(val[a], "ab")).mean())
        x = t.translate(x, "ab")
        chained = float(estimate_ages(estimator, x).mean())
        rows.append({"stage": f"{a}->{b}", "translator": str(chain.stages[k]), "input_age": round(src, 2),
                     "direct_age": round(direct, 2), "direct_increase": round(direct - src, 2),
                     "chained_age": round(chained, 2), "chained_increase": round(chained - prev, 2)})  # fmt: skip
        prev = chained
    return rows


def format_evaluation(evaluation: dict, val_age: Optional[dict] = None) -> str:
    """Plain-text table of :func:`evaluate_chain` results for several chains (``{name: rows}``)."""
    lines = []
    if val_age:
        lines.append("mean estimated age of the real validation images: "
                     + ", ".join(f"{c}: {float(v.mean()):.1f}" for c, v in val_age.items()))  # fmt: skip
    for name, rows in evaluation.items():
        lines.append(f"\n{name} translators")
        lines.append(f"{'stage':>8} {'translator':>26} {'input':>7} {'direct':>7} {'+':>6} {'chained':>8} {'+':>6}")
        for r in rows:
            lines.append(f"{r['stage']:>8} {r['translator']:>26} {r['input_age']:7.1f} {r['direct_age']:7.1f} "
                         f"{r['direct_increase']:+6.1f} {r['chained_age']:8.1f} {r['chained_increase']:+6.1f}")  # fmt: skip
    return "\n".join(lines) + "\n"


def load_face(path: PathLike, image_size: int) -> Tensor:
    """One image file -> ``(1, 3, s, s)`` in [-1, 1] (centre square crop, area resize)."""
    path = Path(path)
    if not is_image_file(path):
        raise FileNotFoundError(f"face image not found or not a JPEG/PNG file: {path}")
    return uint8_to_tensor(square_resize(read_image(path, what="face image"), image_size))[None]


def aging_strip(chain: AgingChain, image: Tensor, start: int, end: int, cell: int = 96) -> np.ndarray:
    """uint8 RGB strip ``(cell + 14, n * cell, 3)``: the input and every chained step, labelled with the
    domain age (thesis Fig. 3.1). ``image``: ``(1, 3, s, s)`` in [-1, 1]."""
    import cv2

    frames = chain.apply(image, start, end)
    ages = [start] + [chain.centres[k + 1] if d == "ab" else chain.centres[k] for k, d in chain.steps(start, end)]
    cells = []
    for f, age in zip(frames, ages):
        img = cv2.resize(to_uint8(f)[0], (cell, cell), interpolation=cv2.INTER_NEAREST)
        label = np.full((14, cell, 3), 255, np.uint8)
        cv2.putText(label, f"{age}" + (" (input)" if age == start else ""), (3, 11), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
        cells.append(np.concatenate([label, img], axis=0))
    return np.concatenate(cells, axis=1)

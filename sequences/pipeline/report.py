"""What a pipeline run shows a person: side-by-side panels, strips, videos, uncertainty maps, plots,
and ``metrics.json``.

Frames are uint8 ``(N, H, W, 3)``; videos and strips are upscaled (nearest neighbour, pixels stay
exact) to at least ``display_size`` pixels so small model outputs stay viewable; metrics are computed
elsewhere (:mod:`sequences.pipeline.evaluate`) on the frames as they are.
"""

from __future__ import annotations

import math
import os
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from generative.images.geometry import square_resize
from generative.images.fileio import atomic_write_json

__all__ = [
    "upscale_for_display",
    "with_header",
    "std_to_rgb",
    "with_colour_scale",
    "mark_keyframes",
    "panel_grid",
    "LazyPanelGrid",
    "pose_kernel_matrices",
    "FrameOutputs",
    "write_plots",
    "start_media",
    "add_media",
    "finish_media",
    "write_report",
    "write_metrics",
    "methods_table",
    "aggregate_table",
    "write_html",
]


def upscale_for_display(frames: np.ndarray, min_size: int) -> np.ndarray:
    """Nearest-neighbour upscale ``(N, h, w, C)`` frames by the smallest integer factor making
    ``min(h, w) >= min_size`` (small model outputs stay viewable in a video player; pixels stay exact)."""
    h, w = frames.shape[1:3]
    k = max(1, -(-int(min_size) // max(1, min(h, w))))
    return frames if k == 1 else frames.repeat(k, axis=1).repeat(k, axis=2)


def with_header(side: np.ndarray, labels: Sequence[str], height: int = 18) -> np.ndarray:
    """Prepend a white bar naming each of the equally wide panels of side-by-side frames ``(N, H, W, 3)``."""
    import cv2

    n, _, w = side.shape[:3]
    bar = np.full((height, w, 3), 255, np.uint8)
    pw = w // max(1, len(labels))
    for i, text in enumerate(labels):
        cv2.putText(bar, text, (i * pw + 3, height - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([np.broadcast_to(bar, (n,) + bar.shape), side], axis=1)


def std_to_rgb(std: np.ndarray, top: Optional[float] = None) -> np.ndarray:
    """Per-pixel std maps ``(M, r, r)`` -> uint8 heat-map frames (inferno), one colour scale for the
    whole run: 0 -> black, ``top`` (default: the largest value) -> white-yellow."""
    import cv2

    top = max(float(std.max()) if top is None else float(top), 1e-6)
    # a frame at a time: whole-stack float temporaries cost more in page faults than in arithmetic
    return np.stack([cv2.applyColorMap(np.clip(g / top * 255.0, 0, 255).astype(np.uint8), cv2.COLORMAP_INFERNO)[..., ::-1]
                     for g in std])


def with_colour_scale(heat: np.ndarray, top: float, height: int = 14) -> np.ndarray:
    """Heat-map frames ``(M, h, w, 3)`` with the colour scale along their bottom edge: a gradient
    from 0 to ``top`` and both values printed (posterior sd, [0, 1] intensity units; values above
    ``top`` show as ``top``)."""
    import cv2

    m, h, w = heat.shape[:3]
    ramp = std_to_rgb(np.linspace(0.0, 1.0, w)[None, None, :].repeat(height, axis=1), 1.0)[0]
    for x, text in ((2, "0"), (max(2, w - 8 * len(f"{top:.3f}") - 2), f"{top:.3f}")):
        cv2.putText(ramp, text, (x, height - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.34, (255, 255, 255), 1, cv2.LINE_AA)
    out = heat.copy()
    out[:, h - height:] = ramp
    return out


def mark_keyframes(frames: np.ndarray, observed: np.ndarray, width: int = 3) -> np.ndarray:
    """Frames ``(M, h, w, 3)`` with a green border on the observed (key) frames."""
    out = frames.copy()
    k = np.asarray(observed, bool)
    for sl in (np.s_[:, :width], np.s_[:, -width:], np.s_[:, :, :width], np.s_[:, :, -width:]):
        region = out[k]
        region[sl] = (40, 200, 60)
        out[k] = region
    return out


def panel_grid(panels: Mapping[str, np.ndarray], columns: int, label_height: int = 18) -> np.ndarray:
    """Equally sized panels ``{label: (M, S, S, 3)}`` tiled in rows of ``columns``, each row with a
    label bar above it; ``(M, rows * (label_height + S), columns * S, 3)``."""
    labels, stacks = list(panels), list(panels.values())
    m, s, w = stacks[0].shape[:3]
    n_rows = -(-len(stacks) // columns)
    out = np.full((m, n_rows * (label_height + s), columns * w, 3), 255, np.uint8)  # one copy of every panel
    for i in range(0, len(stacks), columns):
        top = (i // columns) * (label_height + s)
        row_labels = labels[i : i + columns]
        # the label bar alone (a frame of zero height under it), broadcast down the frames
        out[:, top : top + label_height] = with_header(np.zeros((1, 0, columns * w, 3), np.uint8),
                                                       row_labels + [""] * (columns - len(row_labels)), label_height)
    _place_panels(out, stacks, columns, label_height)
    return out


def _place_panels(out: np.ndarray, stacks: Sequence[np.ndarray], columns: int, label_height: int) -> None:
    """The panels' frames into their cells of :func:`panel_grid`'s frames ``out`` (label bars untouched)."""
    s, w = stacks[0].shape[1:3]
    for i, stack in enumerate(stacks):
        top = (i // columns) * (label_height + s) + label_height
        out[:, top : top + s, (i % columns) * w : (i % columns + 1) * w] = stack


class LazyPanelGrid:
    """:func:`panel_grid` of ``panels`` made a block of frames at a time, as a frame source for
    :func:`sequences.capture.video.write_video`: the whole grid video of a long run does not fit in memory
    (13 panels of 256 px: 3 MB a frame, 3 GB per 1,000 frames). A block of frames is written into one
    buffer, reused by the next block of no more frames (label bars drawn once): a block stays valid
    until the next one is asked for."""

    def __init__(self, panels: Mapping[str, np.ndarray], columns: int) -> None:
        self.panels, self.columns, self.label_height = dict(panels), columns, 18
        first = panel_grid({k: v[:1] for k, v in self.panels.items()}, columns, self.label_height)
        self.shape = (len(next(iter(self.panels.values()))),) + first.shape[1:]
        self._buffer: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            return self[index : index + 1][0].copy()
        stacks = [v[index] for v in self.panels.values()]
        m = len(stacks[0])
        if self._buffer is None or len(self._buffer) < m:
            self._buffer = panel_grid(dict(zip(self.panels, stacks)), self.columns, self.label_height)
            return self._buffer
        out = self._buffer[:m]
        _place_panels(out, stacks, self.columns, self.label_height)
        return out


def pose_kernel_matrices(poses: Tensor) -> dict[str, np.ndarray]:
    """Translation and orientation kernel matrices over the frames, lengthscales by the median heuristic."""
    from viewgp.hyperparameters import median_distance
    from viewgp.kernels import OrientationKernel, TranslationKernel

    out = {}
    for name, k in (("translation", TranslationKernel()), ("orientation", OrientationKernel())):
        with torch.no_grad():
            k = k.to(torch.float64)
            cols = k.active_dims.tolist()
            k.lengthscale = median_distance(poses[:, cols])
            out[f"{name} kernel"] = k(poses, poses).to_dense().numpy()
    return out


#: The comparison video's grid frames are made this many bytes at a time (256 px panels: 15 frames,
#: 1080 px: one); the video writer queues a few such blocks (sequences.capture.video.QUEUED_BLOCKS).
GRID_BLOCK_BYTES = 5e7


class FrameOutputs:
    """Videos and strips of a run, written a chunk of frames at a time (:meth:`add`, then :meth:`close`).

    ``panels`` (given to :meth:`add`): ``{label: uint8 (m, S, S, 3)}`` of one chunk in display order
    (ground truth first where there is one; the same labels every chunk); ``headline`` names the panel
    written alone as ``interpolated.mp4``; ``std`` ``(m, S, S)``: per-pixel posterior sd, shown with its
    colour scale (``uncertainty.mp4`` and a panel; the scale's top is the first chunk's 99.5th
    percentile, so every chunk is drawn alike); ``observed`` ``(m,)``: keyframes, marked with a green
    border on the first panel. Writes ``comparison.mp4`` (the panels tiled ``columns`` to a row,
    labelled), each video's poster (a frame near the middle, shown by report.html before it plays),
    ``comparison_strip.png`` (every tenth frame of the run, the panels side by side) and
    ``strip_<label>.png`` per panel. ``n_frames``: the run's frame count (strips and posters).
    """

    def __init__(self, out_dir: str, n_frames: int, headline: str, fps: float, display_size: int,
                 columns: int = 4, progress: bool = False) -> None:
        self.out_dir, self.n, self.headline, self.fps = out_dir, int(n_frames), headline, fps
        self.display_size, self.columns, self.progress = display_size, columns, progress
        self.step = max(1, self.n // 10)  # the strips' frames: every step-th of the run
        self.poster_at = self.n * 5 // 11
        self.writers: dict[str, Any] = {}
        self.posters: dict[str, np.ndarray] = {}
        self.strips: dict[str, list] = {}
        self.top: Optional[float] = None
        self.labels: Optional[list[str]] = None
        self.done = 0

    def _video(self, name: str, frames: np.ndarray, first: int) -> None:
        """Append ``frames`` (the run's frames ``first``, ``first + 1``, ...) to the video ``name``."""
        from sequences.capture.video import VideoWriter

        if name not in self.writers:
            self.writers[name] = VideoWriter(os.path.join(self.out_dir, name), self.fps, self.progress, total=self.n)
        self.writers[name].write(frames)
        if first <= self.poster_at < first + len(frames):
            self.posters[name] = np.array(frames[self.poster_at - first])  # a copy: blocks may share a buffer

    def add(self, panels: Mapping[str, np.ndarray], std: Optional[np.ndarray], observed: Optional[np.ndarray]) -> None:
        """Append one chunk's frames to every video and keep its strip frames."""
        show = lambda frames: upscale_for_display(frames, self.display_size)  # noqa: E731
        panels = {k: show(v) for k, v in panels.items()}
        self._video("interpolated.mp4", panels[self.headline], self.done)
        if observed is not None and observed.any() and not observed.all():
            first = next(iter(panels))
            panels[first] = mark_keyframes(panels[first], observed)
        if std is not None:
            if self.top is None:  # a few extreme pixels would leave the rest of the map black
                self.top = float(np.percentile(std, 99.5))
            heat = with_colour_scale(show(std_to_rgb(std, self.top)), self.top)
            self._video("uncertainty.mp4", heat, self.done)
            panels["uncertainty (sd)"] = heat
        self.labels = list(panels)
        grid = LazyPanelGrid(panels, self.columns)
        block = int(np.clip(GRID_BLOCK_BYTES // np.prod(grid.shape[1:]), 1, 64))
        for s in range(0, len(grid), block):
            self._video("comparison.mp4", grid[s : s + block], self.done + s)
        m = len(panels[self.labels[0]])
        keep = [i for i in range(m) if (self.done + i) % self.step == 0]
        for label, frames in panels.items():
            self.strips.setdefault(label, []).extend(frames[keep])
        self.done += m

    def close(self) -> list[str]:
        """Finish the videos and write the posters and strips; returns the comparison's panel labels in
        reading order."""
        from generative.images.imageio import write_image
        from sequences.capture.video import write_strip

        for name, writer in self.writers.items():
            writer.close()
            write_image(os.path.join(self.out_dir, name.replace(".mp4", "_poster.png")), self.posters[name])
        small = min(128, self.strips[self.labels[0]][0].shape[0])  # the strip is an overview: at most 128 px a panel
        side = np.concatenate([np.stack([square_resize(f, small) for f in v]) for v in self.strips.values()], axis=2)
        strip = np.concatenate(list(side), axis=0)[None]  # every 10th frame, one row each, one header on top
        write_strip(os.path.join(self.out_dir, "comparison_strip.png"), with_header(strip, self.labels))
        for label, frames in self.strips.items():
            name = "".join(c if c.isalnum() or c in "-_+" else "_" for c in label)
            write_strip(os.path.join(self.out_dir, f"strip_{name}.png"), np.stack(frames))
        return self.labels

    def abort(self) -> None:
        """Remove the unfinished videos' temporary files."""
        for writer in self.writers.values():
            writer.abort()


def write_plots(
    out_dir: str,
    times: np.ndarray,
    predictions: Mapping[str, tuple[np.ndarray, Optional[np.ndarray]]],
    observed: np.ndarray,
    encoded: Optional[np.ndarray],
    poses: Tensor,
) -> None:
    """``latent_trajectories.png`` (a few latent dimensions against time, 2-sigma bands) and
    ``kernel_matrices.png`` (pose kernels over the frames)."""
    from sequences.pipeline.plots import plot_kernel_matrices, plot_latent_trajectories

    plot_latent_trajectories(os.path.join(out_dir, "latent_trajectories.png"), times, predictions, observed, encoded)
    # a long run's kernel matrices over evenly spaced frames (10,000 frames: two 0.8 GB matrices, and
    # more cells than the figure has pixels)
    rows = np.unique(np.round(np.linspace(0, len(times) - 1, min(len(times), PLOT_FRAMES))).astype(np.int64))
    plot_kernel_matrices(os.path.join(out_dir, "kernel_matrices.png"), pose_kernel_matrices(poses[rows]),
                         np.asarray(times)[rows])


#: The kernel-matrix plot shows at most this many frames.
PLOT_FRAMES = 1000


def _finite_or_none(x: Any) -> Any:
    """Metrics as strict JSON: NaN and inf (not JSON) become ``null``; numpy scalars become floats."""
    if isinstance(x, dict):
        return {k: _finite_or_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite_or_none(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(float(x)) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def write_metrics(path: str, metrics: dict) -> None:
    """``metrics.json``, written atomically as strict JSON (see :func:`_finite_or_none`)."""
    atomic_write_json(path, _finite_or_none(metrics))


def methods_table(metrics: Mapping[str, Any]) -> str:
    """The held-out scores of every method in ``metrics`` (as written to ``metrics.json``) as a text
    table: MSE, PSNR, SSIM (and LPIPS when scored), best value of each column marked ``*``, the share
    of held-out pixels inside the 95% predictive interval (methods with uncertainty; calibrated: 0.95);
    then how the headline method compares with the best method that uses no backbone."""
    methods = metrics["methods"]
    rows = [(m, e) for m, e in methods.items() if e.get("mse_held_out") is not None]
    if not rows:
        return "  (no held-out frames with ground truth to score)"
    cols = [("mse_held_out", "MSE", min, "{:.5f}"), ("psnr_held_out", "PSNR dB", max, "{:.2f}"),
            ("ssim_held_out", "SSIM", max, "{:.4f}")]
    if any("lpips_held_out" in e for _, e in rows):
        cols.append(("lpips_held_out", "LPIPS", min, "{:.4f}"))
    ranked = [(m, e) for m, e in rows if not _diagnostic(e)]  # diagnostics see the truth: never "best"
    best = {key: pick(e[key] for _, e in ranked if e.get(key) is not None) for key, _, pick, _ in cols}
    width = max(len(m) for m, _ in rows)
    lines = [f"  {'method':<{width}}  " + "  ".join(f"{label:>9}" for _, label, _, _ in cols) + f"  {'95% int.':>9}  kind"]
    for m, e in rows:
        cells = []
        for key, _, _, fmt in cols:
            v = e.get(key)
            cells.append(f"{(fmt.format(v) + ('*' if v == best[key] else ' ')) if v is not None else '-':>9}")
        cov = (e.get("calibration") or {}).get("coverage_95")
        cells.append(f"{'-' if cov is None else f'{cov:.3f}':>9}")
        lines.append(f"  {m:<{width}}  " + "  ".join(cells) + f"  {e.get('kind', '')}")
    head = metrics.get("headline")
    pixel = [(m, e["mse_held_out"]) for m, e in rows if e.get("kind", "").startswith("pixel")]
    if head in methods and methods[head].get("mse_held_out") is not None and pixel:
        name, mse = min(pixel, key=lambda p: p[1])
        ratio = methods[head]["mse_held_out"] / mse
        verdict = f"{(1 - ratio) * 100:.1f}% lower MSE" if ratio < 1 else f"{(ratio - 1) * 100:.1f}% HIGHER MSE (loses)"
        lines.append(f"  {head} vs the best no-backbone baseline ({name}): {verdict}")
    lines += _diagnostic_lines({m: e["mse_held_out"] for m, e in ranked}, {m: e["mse_held_out"] for m, e in rows})
    return "\n".join(lines)


def _diagnostic(entry: Mapping[str, Any]) -> bool:
    return entry.get("kind", "").startswith("diagnostic")


def _diagnostic_lines(methods: Mapping[str, float], mse: Mapping[str, float]) -> list[str]:
    """How far the best warp among ``methods`` (held-out MSE by name) is from the same warp driven by the
    held-out frames' own reconstructions (a perfect latent prediction) and by the true frames (a perfect
    decoder), when those diagnostic rows are in ``mse``."""
    warps = [m for m in methods if m.endswith("+warp")]  # the diagnostics are of the warp
    if not warps:
        return []
    warp = min(warps, key=methods.get)
    return [f"  {warp} / {d}: {mse[warp] / mse[d]:.2f}x the MSE ({what})"
            for d, what in (("per-frame+warp", "a perfect latent prediction"), ("truth+warp", "a perfect decoder"))
            if mse.get(d)]


def aggregate_table(per_unit: Mapping[str, Mapping[str, Mapping[str, Any]]], title: str) -> str:
    """Methods scored on several runs or objects: ``per_unit[unit][method]`` is a ``metrics.json``
    method entry. A markdown table of the mean held-out MSE (PSNR of it), mean SSIM, on how many units
    each method was best and, for methods with uncertainty, the mean 95%-interval coverage and NLPD over
    held-out pixels; sorted by MSE with the best marked ``*``; then how the best method with a backbone
    compares with the best method without one."""
    units = list(per_unit)
    rows = [m for m in per_unit[units[0]] if per_unit[units[0]][m].get("mse_held_out") is not None]
    mse = {r: float(np.mean([per_unit[u][r]["mse_held_out"] for u in units])) for r in rows}
    ssim = {r: float(np.mean([per_unit[u][r]["ssim_held_out"] for u in units])) for r in rows}
    ranked = [r for r in rows if not _diagnostic(per_unit[units[0]][r])]  # diagnostics see the truth: never "best"
    wins = {r: sum(per_unit[u][r]["mse_held_out"] == min(per_unit[u][k]["mse_held_out"] for k in ranked) for u in units)
            for r in rows}
    def calib(r: str, key: str) -> str:
        vals = [(per_unit[u][r].get("calibration") or {}).get(key) for u in units]
        return f"{np.mean(vals):.3f}" if all(v is not None for v in vals) else "-"

    best = min(mse[r] for r in ranked)
    lines = [f"{title}: {len(units)}",
             f"| {'method':<16} | {'pixel MSE':>10} | {'PSNR dB':>7} | {'SSIM':>6} | {'best on':>7} | 95% int. | NLPD | kind |",
             f"|{'-' * 18}|{'-' * 12}|{'-' * 9}|{'-' * 8}|{'-' * 9}|---------:|-----:|------|"]
    for r in sorted(rows, key=lambda r: mse[r]):
        lines.append(f"| {r:<16} | {mse[r]:9.5f}{'*' if mse[r] == best else ' '} | {10 * np.log10(1 / max(mse[r], 1e-12)):7.2f} | "
                     f"{ssim[r]:6.4f} | {wins[r]:>3}/{len(units):<3} | {calib(r, 'coverage_95'):>8} | {calib(r, 'nlpd'):>6} | "
                     f"{per_unit[units[0]][r].get('kind', '')} |")
    pixel = [r for r in rows if per_unit[units[0]][r].get("kind", "").startswith("pixel")]
    # per-frame and the diagnostics see the held-out frames: floors, not methods
    model = [r for r in ranked if r not in pixel and r != "per-frame"]
    if pixel and model:
        p, m = min(pixel, key=mse.get), min(model, key=mse.get)
        ratio = mse[m] / mse[p]
        verdict = f"{(1 - ratio) * 100:.1f}% lower MSE" if ratio < 1 else f"{(ratio - 1) * 100:.1f}% HIGHER MSE (loses)"
        lines.append(f"  best with a backbone ({m}) vs best without ({p}): {verdict}")
        lines += _diagnostic_lines({r: mse[r] for r in model}, mse)
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------- report.html
_CSS = """body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1180px;
padding:0 16px;color:#222}h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
.meta{color:#555}table{border-collapse:collapse;font-variant-numeric:tabular-nums;margin:6px 0}
td,th{padding:3px 9px;border-bottom:1px solid #eee;text-align:right}th{background:#f5f5f5}td:first-child,th:first-child{text-align:left}
td.kind{text-align:left;color:#666;font-size:12px}.best{font-weight:700;color:#0a6}.lose{color:#b22}
video{width:100%;border:1px solid #ddd;background:#111}img{max-width:100%;border:1px solid #ddd}.row{display:flex;gap:16px;flex-wrap:wrap;align-items:flex-start}
.row>div{flex:1 1 340px;min-width:0}.note{color:#555;font-size:13px}"""


def _cells(rows: list[dict], columns: list[tuple[str, str, str, str]]) -> str:
    """Table rows with the best value of each column marked; ``columns``: (key, header, 'min'|'max'|'',
    format)."""
    best = {}
    for key, _, rule, _ in columns:
        vals = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
        if rule and vals:
            best[key] = (min if rule == "min" else max)(vals)
    html = "<tr>" + "".join(f"<th>{h}</th>" for _, h, _, _ in columns) + "</tr>"
    for r in rows:
        cells = []
        for key, _, _, fmt in columns:
            v = r.get(key)
            if isinstance(v, (int, float)) and fmt:
                cls = ' class="best"' if key in best and v == best[key] else ""
                cells.append(f"<td{cls}>{fmt.format(v)}</td>")
            else:
                cls = ' class="kind"' if key == "kind" else ""
                cells.append(f"<td{cls}>{'' if v is None else v}</td>")
        html += "<tr>" + "".join(cells) + "</tr>"
    return f"<table>{html}</table>"


def write_html(out_dir: str, metrics: Mapping[str, Any], title: str = "viewgp run") -> str:
    """``report.html``: one self-contained page (inline style, no script, nothing fetched) showing the
    videos and images of ``out_dir`` by relative path, the metrics of every method and pixel baseline
    (best value of each column marked), the calibration and its build-up. Returns the path."""
    import html as _html

    def exists(name: str) -> bool:
        return os.path.exists(os.path.join(out_dir, name))

    rows = []
    for m, e in metrics.get("methods", {}).items():
        c = e.get("calibration") or {}
        rows.append({"method": _html.escape(m), "mse": e.get("mse_held_out"), "psnr": e.get("psnr_held_out"),
                     "ssim": e.get("ssim_held_out"), "lpips": e.get("lpips_held_out"), "cov95": c.get("coverage_95"),
                     "cov50": c.get("coverage_50"), "nlpd": c.get("nlpd"), "kind": _html.escape(e.get("kind", ""))})
    columns = [("method", "method", "", ""), ("mse", "MSE", "min", "{:.5f}"), ("psnr", "PSNR dB", "max", "{:.2f}"),
               ("ssim", "SSIM", "max", "{:.4f}")]
    if any(r["lpips"] is not None for r in rows):
        columns.append(("lpips", "LPIPS", "min", "{:.4f}"))
    columns += [("cov50", "50% int. covers", "", "{:.3f}"), ("cov95", "95% int. covers", "", "{:.3f}"),
                ("nlpd", "NLPD", "min", "{:.3f}"), ("kind", "kind", "", "")]
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{_html.escape(title)}</title>"
             f"<meta name=viewport content='width=device-width,initial-scale=1'><style>{_CSS}</style></head><body>",
             f"<h1>{_html.escape(title)}</h1>"]
    bb = metrics.get("backbone", {})
    parts.append(f"<p class=meta>{metrics.get('n_frames')} frames, {metrics.get('n_observed')} observed; backbone "
                 f"{_html.escape(str(bb.get('kind')))} at {bb.get('resolution')} px; scored at "
                 f"{metrics.get('output_size')} px (centre square); headline method "
                 f"<b>{_html.escape(str(metrics.get('headline')))}</b>; video codec "
                 f"{_html.escape(str(metrics.get('video', {}).get('codec', 'mp4v')))}.</p>")
    videos = [(n, label) for n, label in (("comparison.mp4", "Side by side: ground truth, every method, uncertainty"),
                                           ("uncertainty.mp4", "Per-pixel predictive sd of the headline method"),
                                           ("interpolated.mp4", "Headline method alone")) if exists(n)]
    if videos:
        parts.append("<h2>Videos</h2><div class=row>")
        for name, label in videos:
            poster = name.replace(".mp4", "_poster.png")
            poster = f" poster='{poster}'" if exists(poster) else ""
            wide = " style='flex-basis:100%'" if name == "comparison.mp4" else ""
            parts.append(f"<div{wide}><p class=note>{label} (<a href='{name}'>{name}</a>)</p>"
                         f"<video src='{name}'{poster} controls loop muted playsinline preload=metadata></video></div>")
        parts.append("</div>")
    if rows:
        parts.append("<h2>Held-out frames, every method</h2>")
        parts.append("<p class=note>Best value of each column in green. 'pixel baseline' rows use no backbone at "
                     "all. Interval coverage: the fraction of held-out pixels inside the central 50% / 95% "
                     "predictive interval (calibrated: 0.50 / 0.95); Student-t intervals with the number of "
                     "keyframes as degrees of freedom, since the variance scale is estimated from them.</p>")
        parts.append(_cells(rows, columns))
    abl = metrics.get("calibration_ablation")
    if abl:
        arows = [{"part": _html.escape(k), "cov50": v["coverage_50"], "cov90": v["coverage_90"], "cov95": v["coverage_95"],
                  "nlpd": v["nlpd"], "rmsz": v.get("rms_z"), "ratio": v["sd_ratio"]}
                 for k, v in abl.items() if isinstance(v, dict)]
        parts.append(f"<h2>Uncertainty of {_html.escape(str(abl.get('method')))}, built up part by part</h2>")
        parts.append(_cells(arows, [("part", "sd map", "", ""), ("cov50", "50%", "", "{:.3f}"), ("cov90", "90%", "", "{:.3f}"),
                                    ("cov95", "95%", "", "{:.3f}"), ("nlpd", "NLPD", "min", "{:.3g}"),
                                    ("rmsz", "rms(error / sd)", "", "{:.2f}"), ("ratio", "rms error / rms sd", "", "{:.2f}")]))
    images = [(n, label) for n, label in (("reliability.png", "Reliability diagram"),
                                           ("latent_trajectories.png", "Latent trajectories (2-sigma bands)"),
                                           ("kernel_matrices.png", "Pose kernel matrices")) if exists(n)]
    if images:
        parts.append("<h2>Plots</h2><div class=row>")
        parts += [f"<div><p class=note>{label}</p><img src='{n}' alt='{label}'></div>" for n, label in images]
        parts.append("</div>")
    if exists("comparison_strip.png"):
        parts.append("<h2>Every tenth frame</h2><img src='comparison_strip.png' alt='comparison strip'>")
    t = metrics.get("timings", {})
    if t:
        parts.append("<p class=meta>timings: " + ", ".join(f"{_html.escape(k)} {v:.1f} s" for k, v in t.items()) + "</p>")
    parts.append("</body></html>\n")
    path = os.path.join(out_dir, "report.html")
    from generative.images.fileio import atomic_write_text

    atomic_write_text(path, "\n".join(parts))
    return path


# ------------------------------------------------------------------------------ the pipeline's steps
def start_media(state, progress: Optional[bool] = None) -> Optional[FrameOutputs]:
    """The run's :class:`FrameOutputs` (``None`` without ``config.media``; ``progress``: a bar per
    video, default the config's)."""
    if not state.config.media:
        return None
    return FrameOutputs(state.out_dir, state.n_targets, state.headline or state.head, state.fps,
                        state.config.display_size, progress=state.config.progress if progress is None else progress)


def add_media(media: Optional[FrameOutputs], state) -> None:
    """One chunk's panels (ground truth first) appended to the videos and strips."""
    if media is None:
        return
    with state.timed("videos_s"):
        media.headline = state.headline
        panels = state.panels()
        media.add({k: panels[k] for k in state.panel_labels()}, state.sd_maps.get(state.headline),
                  state.target_obs if not state.novel else None)


def finish_media(media: Optional[FrameOutputs], state) -> None:
    """The videos closed, strips written (``state.labels``: the panels as written), and the latent and
    kernel plots (the kernel matrices over at most :data:`PLOT_FRAMES` frames of a long run)."""
    if media is None:
        return
    preds, z_all, obs = state.preds, state.latents, state.obs
    with state.timed("videos_s"):
        state.labels = media.close()
    with state.timed("plots_s"):
        trajectories = {m: (p.mean, p.var) for m, p in preds.items() if m != "independent"}
        write_plots(state.out_dir, state.times_q, trajectories or {"per-frame": (z_all, None)},
                    obs if not state.novel else np.zeros(len(state.times_q), bool), z_all if not state.novel else None,
                    state.poses_q)


def write_report(state, metrics: dict) -> None:
    """``metrics.json`` and, with media, the reliability diagram and ``report.html``."""
    if state.config.media:
        with state.timed("report_s"):
            curves = {m: e["calibration"]["reliability"] for m, e in metrics["methods"].items() if e.get("calibration")}
            ablation = metrics.get("calibration_ablation")
            if ablation:
                curves[f"{ablation['method']} (latent function only: before)"] = \
                    ablation["latent function only (before)"]["reliability"]
            if curves:
                from sequences.pipeline.plots import plot_reliability

                plot_reliability(os.path.join(state.out_dir, "reliability.png"), curves)
            write_html(state.out_dir, metrics)
    write_metrics(os.path.join(state.out_dir, "metrics.json"), metrics)

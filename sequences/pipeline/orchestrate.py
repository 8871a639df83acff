"""The main job, as its steps: encode a camera run -> fit a latent GP over poses -> predict -> decode ->
score -> report.

A :class:`~sequences.run.CameraRun` is encoded frame by frame into the latent space of a backbone
(:mod:`generative.latents.frames`; inverted at the keyframes for backbones without an encoder); latent
predictors (:mod:`viewgp.predict`: GP methods by kernel name and the latent baselines) are fitted to
the latents of the *observed* frames and predict at every requested pose; the backbone decodes the
posterior means into frames and posterior samples into per-pixel standard-deviation maps
(:mod:`~sequences.pipeline.latents`); the no-backbone baselines predict from the keyframes' pixels
(:mod:`~sequences.pipeline.baselines`); :mod:`~sequences.pipeline.report` writes the videos, strips
and plots, :mod:`~sequences.pipeline.scores` scores every method against the truth where there is one,
and everything lands in ``metrics.json``.

This module only orchestrates: each step is one call on the run's :class:`PipelineState`.
"""

from __future__ import annotations

import os

import torch
from tqdm.auto import tqdm

from sequences.pipeline.baselines import add_pixel_baselines, fit_pixel_baselines
from sequences.pipeline.latents import (adapt_backbone, decode_keyframes, decode_latents, encode_latents,
                                        predict_latents, warp_diagnostics)
from sequences.pipeline.report import add_media, finish_media, start_media, write_report
from sequences.pipeline.scores import Scorer
from sequences.pipeline.state import PipelineConfig, PipelineState

__all__ = ["run_pipeline"]


def run_pipeline(run, backbone, out_dir: str, config: PipelineConfig = PipelineConfig(), query=None) -> dict:
    """Encode ``run``, fit on its observed frames, predict, decode and write everything to ``out_dir``.

    Without ``query`` the prediction targets are the run's own frames (smoothing where all frames are
    observed, interpolation where some are masked out); with a ``query`` run (poses only, or with
    ground-truth frames) the targets are its poses (novel views). Every method is scored at the output
    size (:func:`~sequences.pipeline.state.output_size`). Steps 4-7 stream through the targets
    ``config.chunk_frames`` at a time (truth read, frames decoded, scored and appended to the videos,
    then dropped), so a long video never sits in memory. Returns the metrics dict that is also written
    to ``metrics.json``.
    """
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(config.seed)
    state = PipelineState.start(run, backbone, out_dir, config, query)  # checks, output size, keyframes, targets
    adapt_backbone(state)  # 1. optional test-time adaptation on the keyframes
    encode_latents(state)  # 2. every frame's latent (or the keyframes' inversions)
    predict_latents(state)  # 3. each method fitted on the observed latents, predicted at the targets
    decode_keyframes(state)  # 4a. what every chunk shares: the keyframes' decodes, the detail GP
    if config.pixel_baselines:
        fit_pixel_baselines(state)  # 5a. and the pixel GP
    # a long run shows one bar over its frames instead of every chunk's own bars
    many = state.n_targets > state.chunk_size()
    scorer, media = Scorer(state), start_media(state, progress=config.progress and not many)
    bar = tqdm(total=state.n_targets, desc="decode, score, write", unit="frame", disable=not (config.progress and many))
    try:
        for start, stop in state.chunks():
            chunk = state.chunk(start, stop, progress=config.progress and not many)
            decode_latents(chunk)  # 4. frames at the output size, detail layers, per-pixel sd maps
            if config.pixel_baselines:
                add_pixel_baselines(chunk)  # 5. the no-backbone methods on the keyframes' pixels
            if config.diagnostics:
                warp_diagnostics(chunk)
            state.headline = chunk.headline
            add_media(media, chunk)  # 6. videos and strips, this chunk's frames appended
            scorer.add(chunk)  # 7. every method against the truth, calibration sums
            state.dofs = chunk.dofs
            del chunk  # before the next one is read: never two chunks' frames at once
            bar.update(stop - start)
    except BaseException:
        if media is not None:
            media.abort()
        raise
    finally:
        bar.close()
    finish_media(media, state)  # 6. videos finished, strips, latent and kernel plots
    metrics = scorer.finish(state)  # 7. every method's scores and calibration
    write_report(state, metrics)  # 8. reliability diagram, report.html, metrics.json
    return metrics

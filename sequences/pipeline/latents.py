"""The pipeline's latent steps on a :class:`~sequences.pipeline.state.PipelineState`: adapt the backbone,
encode (or invert) the frames, fit and predict every method, decode the predictions to frames at the
output size with the detail layers and the per-pixel sd maps.

The work itself lives below: frame arrays <-> latents in :mod:`generative.latents`, the predictors in
:mod:`viewgp.predict`, the sd arithmetic in :mod:`generative.latents.uncertainty`.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from generative.images.geometry import square_resize_frames
from generative.latents.detail import add_detail, fit_detail, warp_detail
from generative.latents.frames import decode_frames, encode_frames, frames_to_model, invert_observed, pixel_std_maps
from generative.latents.uncertainty import (combine_sd, fuse_by_variance, reconstruction_variance, rescaled_sd,
                                            sd_ablation)
from sequences.pipeline.state import PipelineState
from viewgp.predict import BASELINES, pose_neighbours, predict_latents as fit_and_predict, time_neighbours

__all__ = ["adapt_backbone", "encode_latents", "predict_latents", "decode_keyframes", "decode_latents", "warp_diagnostics", "DIAGNOSTICS"]

DIAGNOSTICS = {
    "per-frame+warp": "diagnostic (sees the held-out frame): warp with flow from its own reconstruction",
    "truth+warp": "diagnostic (sees the held-out frame): warp with flow from the true frame",
}


def adapt_backbone(state: PipelineState) -> None:
    """The backbone fine-tuned on the observed frames when ``config.adapt_steps`` asks for it."""
    config = state.config
    if not config.adapt_steps:
        return
    from generative.latents.adapt import adapt

    with state.timed("adapt_s"):
        x = frames_to_model(state.keyframes, state.backbone.resolution)
        state.backbone, losses = adapt(state.backbone, x, config.adapt_steps, seed=config.seed,
                                       progress=config.progress, bf16=state.precision.bf16)
    state.adaptation = {"steps": int(config.adapt_steps), "frames": int(len(state.keyframes)),
                        "l1_first": losses[0], "l1_last": losses[-1]}


def encode_latents(state: PipelineState) -> None:
    """Latents ``(N, *latent_shape)`` of the run's frames: encoded, or inverted at the observed frames
    (NaN rows elsewhere) for backbones without an encoder or when ``config.inversion`` asks for it."""
    config, backbone, run = state.config, state.backbone, state.run
    with state.timed("encode_s"):
        if backbone.has_encoder and config.inversion is None:
            state.latents = encode_frames(backbone, run.frames, config.batch_size, config.progress, config.cache_dir)
        else:
            state.latents = invert_observed(backbone, run.frames, state.obs, config.cache_dir or state.out_dir,
                                            config.inversion, config.perceptual_weights, config.device, config.progress)


def predict_latents(state: PipelineState) -> None:
    """Every method of ``config`` fitted on the observed frames, predicted at the query poses; the
    headline method (``methods[0]``) also draws ``config.n_samples`` calibrated posterior samples (its
    per-pixel sd maps; the other methods' are carried over to first order,
    :func:`generative.latents.uncertainty.rescaled_sd`)."""
    config = state.config
    poses_obs, times_obs, z_obs = state.poses_obs, state.times_obs, state.latents[state.obs]
    for i, method in enumerate(config.methods):
        if method == "independent" and state.novel:
            continue
        kwargs = {}
        if method not in BASELINES:
            kwargs = dict(n_samples=config.n_samples if i == 0 else 0, steps=config.fit_steps, fixed=config.fixed,
                          seed=config.seed, bayes=config.bayes, device=config.device)
        with state.timed(f"{method}_s"):
            state.preds[method] = fit_and_predict(method, poses_obs, times_obs, z_obs, state.poses_q, state.times_q,
                                                  state.backbone.latent_geometry, **kwargs)


def decode_keyframes(state: PipelineState) -> None:
    """The keyframe layer, once for every chunk (``state.keyframe_layer``): the keyframes' own
    reconstructions ``recon_obs`` ``(K, r, r, 3)`` and their per-pixel error variance ``recon_var``
    ``(S, S)``; for the headline's detail layers its posterior mean at the keyframes decoded,
    ``decoded_obs``, and the residual GP fitted to what that decode misses, ``residual_gp``."""
    backbone, config, obs, layer = state.backbone, state.config, state.obs, state.keyframe_layer
    with state.timed("decode_s"), state.timed("decode_means_s"):
        z_obs = state.latents[obs]
        layer["recon_obs"] = recon = decode_frames(backbone, z_obs, config.batch_size)
        layer["recon_var"] = reconstruction_variance(state.keyframes, square_resize_frames(recon, state.size))
    h = state.preds[state.head]
    if config.detail and h.model is not None:
        with state.timed("decode_s"), state.timed("detail_s"):
            z_obs_post, _ = h.model.predict(state.poses_obs)
            layer["decoded_obs"] = decoded_obs = decode_frames(backbone, z_obs_post.cpu().numpy(), config.batch_size)
            layer["residual_gp"] = fit_detail(state.head, state.poses_obs, state.keyframes, decoded_obs, state.poses_q,
                                              state.size)


def decode_latents(state: PipelineState) -> None:
    """Every method's frames at the output size for one chunk of targets (decoded, upsampled; the
    headline method also with the keyframes' detail, and the two fused, ``+fuse``, the headline) and the
    per-frame reconstruction (``"per-frame"``, for the run's own frames); per-pixel sd maps
    ``(M, S, S)`` of every method with uncertainty; which frames have a reconstruction; and the
    headline's sd built up one principled part at a time. Samples are decoded under bfloat16 autocast
    where the precision says so; everything that is scored in float32."""
    with state.timed("decode_s"):  # all of it: means, samples, detail layers
        _decode(state)
    head = state.head
    state.headline = next(m for m in (f"{head}+fuse", f"{head}+warp", head) if m in state.outputs)
    # Student-t degrees of freedom of each sd map: a latent method's, also for its detail layers
    # (their variances are scaled from the same keyframes).
    state.dofs = {m: state.preds[m.split("+")[0]].dof for m in state.sd_maps}


def _decode(state: PipelineState) -> None:
    backbone, config, size = state.backbone, state.config, state.size
    head, preds, layer = state.head, state.preds, state.keyframe_layer
    with state.timed("decode_means_s"):
        if not state.novel:  # per-frame reconstructions where a latent exists (inverted backbones: keyframes only)
            z = state.target_latents
            state.have = ~np.isnan(z.reshape(len(z), -1)).any(1)
            recon = np.zeros((len(z), backbone.resolution, backbone.resolution, 3), np.uint8)
            recon[state.have] = decode_frames(backbone, z[state.have], config.batch_size, config.progress,
                                              desc="decode per-frame")
            state.outputs["per-frame"] = square_resize_frames(recon, size)
        decoded = {m: decode_frames(backbone, p.mean, config.batch_size, config.progress, desc=f"decode {m}")
                   for m, p in preds.items()}
    head_sd = None
    with state.timed("decode_samples_s"):
        if preds[head].samples is not None:
            head_sd = _sample_sd(state)
    with state.timed("detail_s"):  # the detail layers (warp, residual GP, fusion) and the sd maps
        h, recon_var = preds[head], layer["recon_var"]
        state.sd_maps = {m: combine_sd(rescaled_sd(head_sd, h.predictive_var, p.predictive_var), recon_var, size)
                         for m, p in preds.items() if head_sd is not None and p.predictive_var is not None}
        if "residual_gp" in layer:
            res_var, spread = _detail(state, decoded[head])
            if head_sd is not None:
                state.sd_maps[f"{head}+detail"] = combine_sd(head_sd, res_var, size)
                state.sd_maps[f"{head}+warp"] = combine_sd(head_sd, res_var + spread, size)
                rows = state.scored_rows()  # the ablation only enters the calibration: its scored targets
                state.ablation = sd_ablation(head_sd[rows], h.predictive_var[rows], h.var[rows], h.noise, res_var[rows],
                                             spread[rows], size)
        for m, frames in decoded.items():
            state.outputs[m] = square_resize_frames(frames, size)
        warp = f"{head}+warp"
        if warp in state.sd_maps and head in state.sd_maps:
            # the headline: warped keyframe pixels and the decoded frame, each pixel weighted by their
            # variances (observed frames stay the keyframes themselves, as the warp gives them)
            state.outputs[f"{head}+fuse"], state.sd_maps[f"{head}+fuse"] = fuse_by_variance(
                state.outputs[warp], state.sd_maps[warp], state.outputs[head], state.sd_maps[head],
                keep_a=None if state.novel else state.target_obs)


def sample_stride(n_targets: int, limit: Optional[int]) -> int:
    """Targets per decoded set of posterior samples: 1 (every target) up to ``limit`` targets in the
    run (``None``: no limit), else enough that at most about ``limit`` are decoded."""
    return 1 if limit is None or n_targets <= int(limit) else -(-int(n_targets) // int(limit))


def _sample_sd(state: PipelineState) -> np.ndarray:
    """The headline's per-pixel sd ``(m, r, r)`` of this chunk's targets from its decoded posterior
    samples. In runs longer than ``config.sample_frames`` targets they are decoded at one target per
    window of :func:`sample_stride` targets (the one with the largest predictive variance, where the
    sd map says most), and every target takes the map of the nearest such target, rescaled by the
    ratio of their predictive variances (:func:`~generative.latents.uncertainty.rescaled_sd`: first
    order, as every other method's map is carried from the headline's)."""
    config, h = state.config, state.preds[state.head]
    stride = sample_stride(state.n_targets, config.sample_frames)
    decode = lambda samples: pixel_std_maps(state.backbone, samples, config.batch_size,  # noqa: E731
                                            bf16=state.precision.bf16, progress=config.progress)[0]
    if stride == 1:
        return decode(h.samples)
    pv, m = h.predictive_var, len(state.times_q)
    refs = np.array([s + int(np.argmax(pv[s : s + stride])) for s in range(0, m, stride)])
    pick = np.abs(np.arange(m)[:, None] - refs[None, :]).argmin(1)  # index into refs of the nearest one
    return rescaled_sd(decode(h.samples[:, refs])[pick], pv[refs][pick], pv)


def _detail(state: PipelineState, decoded_q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The headline method at the output size with the keyframes' detail, both constructions of
    :mod:`generative.latents.detail`: ``"+warp"`` (keyframe pixels moved along the decoded motion;
    neighbours in time for the run's own frames, in pose for novel views) and ``"+detail"``
    (GP-interpolated residuals), added to ``state.outputs``. Returns the residual layer's predictive
    variance and the warped neighbours' spread (both ``(M, S, S)``)."""
    head, config, layer = state.head, state.config, state.keyframe_layer
    if not state.novel:
        idx, w = time_neighbours(state.times_obs, state.times_q)
    else:
        idx, w = pose_neighbours(state.poses_obs, state.poses_q)
    warped, spread = warp_detail(state.keyframes, layer["decoded_obs"], decoded_q, idx, w, state.size,
                                 progress=config.progress)
    residual, var = add_detail(layer["residual_gp"], state.poses_q, decoded_q, state.size)
    state.outputs[f"{head}+warp"], state.outputs[f"{head}+detail"] = warped, residual
    return var, spread


def warp_diagnostics(state: PipelineState) -> None:
    """The headline's warp driven by what a perfect latent prediction (every frame's own reconstruction at
    the output size) and a perfect decoder (the truth seen at the backbone's resolution) would give: how
    much of the warp's error is the latent prediction's and how much the decoder's (rows
    ``per-frame+warp`` and ``truth+warp``). Only for the run's own frames with every frame encoded."""
    if state.novel or state.truth is None or not state.every_frame_encoded:
        return
    idx, w = time_neighbours(state.times_obs, state.times_q)  # as the headline's warp
    r = state.backbone.resolution
    truth_small = square_resize_frames(state.truth, r)
    # the keyframes as each construction sees them: their reconstructions, and the keyframes themselves
    for name, decoded, decoded_obs in (
            ("per-frame+warp", state.outputs["per-frame"], state.keyframe_layer["recon_obs"]),
            ("truth+warp", truth_small, square_resize_frames(state.keyframes, r))):
        state.diagnostics[name], _ = warp_detail(state.keyframes, decoded_obs, decoded, idx, w, state.size,
                                                 progress=state.config.progress)

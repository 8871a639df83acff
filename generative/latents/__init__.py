"""Frame arrays <-> latents, for the pipeline and the image commands: encoding and decoding of uint8
frames, batched and cached (:mod:`~generative.latents.frames`), the core image encode / decode and
latent edits (:mod:`~generative.latents.edit`, :mod:`~generative.latents.mixing`),
optimization-based inversion (:mod:`~generative.latents.invert`), test-time adaptation
(:mod:`~generative.latents.adapt`), the native-resolution detail layers
(:mod:`~generative.latents.detail`) and the per-pixel uncertainty arithmetic
(:mod:`~generative.latents.uncertainty`). Every function takes a backbone; none knows which one.
"""

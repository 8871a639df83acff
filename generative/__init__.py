"""Generative image models that map frames to latents and back. Sub-packages by concern, bottom first:
:mod:`~generative.images` (image files, frame geometry, datasets), :mod:`~generative.backbones` (the
architectures and their registry), :mod:`~generative.metrics`, :mod:`~generative.latents` (frame arrays
<-> latents for the pipeline), :mod:`~generative.training` and :mod:`~generative.aging` (the face-aging
application). The public entry points are here: :func:`load`, :func:`load_default`, :class:`Backbone`."""

from generative.backbones.registry import DEFAULT_BACKBONE, Backbone, load, load_default

__all__ = ["Backbone", "load", "load_default", "DEFAULT_BACKBONE"]

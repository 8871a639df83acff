"""The pipeline: orchestration (:mod:`~sequences.pipeline.orchestrate`: :func:`run_pipeline` as its
steps on one :class:`~sequences.pipeline.state.PipelineState`), the steps on latents
(:mod:`~sequences.pipeline.latents`), the no-backbone pixel baselines
(:mod:`~sequences.pipeline.baselines`), the measures and the scoring step
(:mod:`~sequences.pipeline.evaluate`, :mod:`~sequences.pipeline.scores`), the report with its plots
(:mod:`~sequences.pipeline.report`, :mod:`~sequences.pipeline.plots`) and novel-view query poses
(:mod:`~sequences.pipeline.views`). A new baseline goes into :mod:`~sequences.pipeline.baselines`.

The public entry points stay here: ``from sequences.pipeline import PipelineConfig, run_pipeline`` (and
``parse_keyframes``, ``azimuth_sweep`` and ``output_size`` for the scripts that build runs and queries).
"""

from sequences.pipeline.orchestrate import run_pipeline
from sequences.pipeline.state import PipelineConfig, output_size
from sequences.pipeline.views import azimuth_sweep
from viewgp.keyframes import parse_keyframes

__all__ = ["PipelineConfig", "run_pipeline", "output_size", "parse_keyframes", "azimuth_sweep"]

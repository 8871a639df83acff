"""Camera runs and everything around them. Sub-packages by concern, bottom first: :mod:`~sequences.poses`
(the trajectory type and every pose-file reader and writer), :mod:`sequences.run` (``CameraRun``),
:mod:`~sequences.capture` (a video, an image folder or a run directory plus poses -> ``CameraRun``),
:mod:`sequences.synthetic` (rendered runs), :mod:`~sequences.pipeline` (orchestration, baselines,
evaluation, report) and :mod:`~sequences.cli` (the ``viewgp`` command)."""

"""Images as arrays and files, below every model: reading, writing and listing image files
(:mod:`~generative.images.imageio`), atomic file writes (:mod:`~generative.images.fileio`), the one
frame geometry (centre crops, crop boxes, resizing and the intrinsics that follow them,
:mod:`~generative.images.geometry`) and the training datasets built on them
(:mod:`~generative.images.datasets`). Nothing here knows a backbone.
"""

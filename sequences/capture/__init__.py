"""From what a user has on disk to a :class:`~sequences.run.CameraRun`: :mod:`~sequences.capture.load`
is the one entry point (a video, an image folder or a run directory, plus poses, or structure from
motion with ``poses='auto'``) and owns the alignment of frames with poses, the frame times and the
intrinsics. Below it: video decoding and writing (:mod:`~sequences.capture.video`), posed image
folders (:mod:`~sequences.capture.image_folder`), frame times (:mod:`~sequences.capture.align`),
structure from motion (:mod:`~sequences.capture.sfm`) and the description of a capture on disk
(:mod:`~sequences.capture.info`).
"""

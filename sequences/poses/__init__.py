"""Camera poses on disk and in memory: the trajectory type (:class:`~sequences.poses.trajectory.PoseTrajectory`)
and every pose-file reader and writer, with format detection, behind one registry
(:mod:`~sequences.poses.formats`): TUM, EuRoC, KITTI, COLMAP (:mod:`~sequences.poses.colmap`), NeRF
``transforms.json`` (:mod:`~sequences.poses.nerf`), phone sensor logs (:mod:`~sequences.poses.sensorlogs`),
and the line reading they share (:mod:`~sequences.poses.posefile`). A new pose format is a reader
(and writer) here plus one entry in ``FORMATS``. Nothing here reads a frame.
"""

"""Synthetic camera runs with exact poses, rendered on the CPU (tests, demo, benchmarks).

Two kinds of run, both deterministic for a seed:

* **object views** - :func:`turntable_run` renders one mesh from an azimuth/elevation grid (the
  camera looks at the object centre, up = world +z); :func:`chairs_protocol` gives the 60 training
  + 60 novel viewpoints of the ShapeNet-chairs experiment of the view-aware GP paper (our choice of
  angles, documented there);
* **a hand-held phone** - :func:`phone_run` looks at a few objects on a textured ground plane:
  a standstill at pose A, back-and-forth motion, a 90 degree landscape-to-portrait roll about the
  optical axis near the end (the thesis Fig. 1 scenario), 30 fps; :func:`simulate_imu` gives
  gyroscope readings consistent with the orientations.

Renderer: pybullet's software TinyRenderer (``p.connect(p.DIRECT)``, ``ER_TINY_RENDERER``; no GPU,
no display) with the meshes that ship in ``pybullet_data`` (:func:`object_names`). Everything
renderer-specific is inside :class:`PyBulletRenderer`; another renderer only needs the same
``render(rotation, translation, intrinsics) -> RenderedView`` method.

Camera conventions (exact, tested in ``tests/test_synthetic.py``):

* Our poses are camera-to-world ``(R, t)`` with OpenCV camera axes (x right, y down, z forward).
  OpenGL camera axes are x right, y up, z backward, i.e. ``x_gl = F x_cv`` with
  ``F = diag(1, -1, -1)``. The OpenGL view matrix (world -> GL camera) is therefore::

      V = [[F R^T, -F R^T t], [0, 0, 0, 1]]      and back:  R = (F V[:3, :3])^T,  t = -R F V[:3, 3]

  pybullet passes 4x4 matrices as 16 floats in column-major order (``V.T.ravel()``).
* Intrinsics ``K = [[fx, s, cx], [0, fy, cy], [0, 0, 1]]`` in OpenCV pixel coordinates (pixel
  centres at integers, image centre ``((W-1)/2, (H-1)/2)``). Measured on TinyRenderer: column
  ``i`` samples window x = ``i`` and row ``r`` (from the top) samples ``(1 - y_ndc) H/2 = r + 1``,
  so the matching OpenGL projection is::

      P[0] = [2fx/W, -2s/W, 1 - 2cx/W, 0]
      P[1] = [0, 2fy/H, 2(cy + 1)/H - 1, 0]
      P[2] = [0, 0, -(f + n)/(f - n), -2fn/(f - n)],   P[3] = [0, 0, -1, 0]

  With it a world point ``X`` lands at pixel ``K (R^T (X - t))`` (dehomogenised).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch

from sequences.run import CameraRun
from viewgp.poses import matrix_to_quat, so3_exp, so3_log

__all__ = [
    "MeshAsset",
    "OBJECTS",
    "object_names",
    "random_object_names",
    "RANDOM_OBJECTS",
    "PlacedObject",
    "Scene",
    "RenderedView",
    "PyBulletRenderer",
    "BACKGROUND",
    "GROUND",
    "look_at",
    "gl_view_from_pose",
    "pose_from_gl_view",
    "gl_projection_from_intrinsics",
    "intrinsics_from_fov",
    "project_points",
    "render_views",
    "turntable_poses",
    "turntable_scene",
    "turntable_run",
    "chairs_protocol",
    "tabletop_scene",
    "phone_trajectory",
    "phone_run",
    "simulate_imu",
]

#: Label of background pixels in :attr:`RenderedView.labels`.
BACKGROUND = -1
#: Label of ground-plane pixels in :attr:`RenderedView.labels` (objects are 0, 1, ...).
GROUND = -2

_GL_FROM_CV = np.diag([1.0, -1.0, -1.0])
_PHONE_DEFAULT_SCENE = ("duck", "teddy", "soccerball", "mug", "lego")


# ----------------------------------------------------------------------------------------------------
# Meshes


@dataclass(frozen=True)
class MeshAsset:
    """A mesh in ``pybullet_data``: file (relative path), its up axis, and a colour when untextured."""

    file: str
    up: str = "y"
    color: Optional[tuple[float, float, float, float]] = None
    description: str = ""


#: Meshes shipped with pybullet (textured ones keep their texture; the others get a colour).
OBJECTS: dict[str, MeshAsset] = {
    "duck": MeshAsset("duck.obj", "y", None, "rubber duck, textured (duckCM.png)"),
    "teddy": MeshAsset("teddy2_VHACD_CHs.obj", "y", (0.72, 0.45, 0.25, 1.0), "teddy bear (convex pieces)"),
    "soccerball": MeshAsset("soccerball.obj", "y", None, "football, textured (colors16.png)"),
    "bunny": MeshAsset("bunny.obj", "y", (0.85, 0.82, 0.74, 1.0), "Stanford bunny (low poly)"),
    "mug": MeshAsset("objects/mug.obj", "z", (0.2, 0.45, 0.85, 1.0), "mug with handle"),
    "lego": MeshAsset("lego/lego.obj", "y", (0.85, 0.15, 0.1, 1.0), "2x2 Duplo brick"),
    "torus": MeshAsset("torus/torus_textured.obj", "y", None, "torus, textured (cube.png)"),
    "sphere": MeshAsset("sphere_smooth.obj", "y", (0.9, 0.25, 0.2, 1.0), "smooth sphere"),
}


#: How many procedurally generated objects ``pybullet_data/random_urdfs/`` ships (``random_000`` ...).
RANDOM_OBJECTS = 1000


def object_names() -> list[str]:
    """Names of the hand-made meshes :func:`turntable_run` and :func:`phone_run` can render (the
    procedurally generated ones are in :func:`random_object_names`)."""
    return sorted(OBJECTS)


def random_object_names(start: int = 0, stop: int = RANDOM_OBJECTS) -> list[str]:
    """Names ``random_{start:03d}`` ... of pybullet's procedurally generated objects (convex-ish
    blobs, one solid colour each, from ``random_urdfs/NNN/NNN.urdf``); valid wherever an object name is."""
    if not 0 <= start <= stop <= RANDOM_OBJECTS:
        raise ValueError(f"random objects are numbered 0 ... {RANDOM_OBJECTS - 1}; got {start}:{stop}")
    return [f"random_{i:03d}" for i in range(start, stop)]


def _pybullet():
    try:
        with _quiet_c_output():  # pybullet's C code prints "pybullet build time: ..." on import
            import pybullet
            import pybullet_data
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "synthetic camera runs need pybullet (CPU TinyRenderer and its bundled meshes): pip install pybullet"
        ) from e
    return pybullet, pybullet_data


@contextlib.contextmanager
def _quiet_c_output():
    """File descriptors 1 and 2 point at /dev/null inside, so C-level prints go nowhere (Python's
    streams are flushed first, C's own stdio buffers before the descriptors are restored)."""
    import ctypes

    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    try:
        saved = [os.dup(1), os.dup(2)]
    except OSError:  # no such descriptors: nothing to keep quiet
        yield
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        yield
    finally:
        try:
            ctypes.CDLL(None).fflush(None)
        except (OSError, AttributeError, TypeError):  # pragma: no cover - no C library to flush (not POSIX)
            pass
        for fd, copy in zip((1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)
        os.close(null)


@functools.lru_cache(maxsize=None)
def _random_asset(index: int) -> MeshAsset:
    """The mesh and colour of ``random_urdfs/NNN``: the URDF's visual ``rgba`` (the mesh has no texture)."""
    _, pybullet_data = _pybullet()
    urdf = Path(pybullet_data.getDataPath()) / "random_urdfs" / f"{index:03d}" / f"{index:03d}.urdf"
    if not urdf.is_file():
        raise FileNotFoundError(f"random object {index:03d} not found in pybullet_data ({urdf})")
    match = re.search(r'<color\s+rgba="([^"]+)"', urdf.read_text(encoding="utf-8", errors="replace"))
    rgba = tuple(float(v) for v in match.group(1).split()) if match else (0.6, 0.6, 0.6, 1.0)
    if len(rgba) != 4:
        rgba = (0.6, 0.6, 0.6, 1.0)
    return MeshAsset(f"random_urdfs/{index:03d}/{index:03d}.obj", "z", rgba, f"procedural object {index:03d}")


def _asset(name: str) -> MeshAsset:
    if name in OBJECTS:
        return OBJECTS[name]
    match = re.fullmatch(r"random_(\d{3})", name)
    if match:
        return _random_asset(int(match.group(1)))
    raise ValueError(f"unknown object {name!r}; available: {', '.join(object_names())} or random_000 ... random_999")


def _mesh_path(asset: MeshAsset) -> Path:
    _, pybullet_data = _pybullet()
    path = Path(pybullet_data.getDataPath()) / asset.file
    if not path.is_file():
        raise FileNotFoundError(f"mesh {asset.file} not found in pybullet_data ({path})")
    return path


@functools.lru_cache(maxsize=None)
def _mesh_bounds(path: str) -> tuple[np.ndarray, np.ndarray]:
    """``(min, max)`` of the OBJ vertex coordinates, in file units."""
    verts = []
    with open(path, "r", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.startswith("v "):
                verts.append([float(v) for v in line.split()[1:4]])
    if not verts:
        raise ValueError(f"{path}: no vertices")
    v = np.asarray(verts)
    return v.min(0), v.max(0)


def _up_rotation(up: str) -> np.ndarray:
    """Rotation taking the mesh's up axis to world +z (y-up meshes: +90 degrees about x)."""
    if up == "z":
        return np.eye(3)
    if up == "y":
        return np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    raise ValueError(f"mesh up axis must be 'y' or 'z', got {up!r}")


def _rot_z(angle_rad: float) -> np.ndarray:
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


# ----------------------------------------------------------------------------------------------------
# Scenes


@dataclass
class PlacedObject:
    """A mesh in the world: its bounding-box centre at ``position``, turned by ``yaw_deg`` about +z,
    scaled so that its bounding-box diagonal is ``size`` (world units)."""

    name: str
    position: tuple[float, float, float] = (0.0, 0.0, 0.0)
    yaw_deg: float = 0.0
    size: float = 1.0

    def __post_init__(self) -> None:
        _asset(self.name)
        self.position = tuple(float(v) for v in self.position)
        if len(self.position) != 3 or not all(math.isfinite(v) for v in self.position):
            raise ValueError(f"object {self.name!r}: position must be 3 finite numbers, got {self.position}")
        if not (self.size > 0 and math.isfinite(self.size)):
            raise ValueError(f"object {self.name!r}: size must be positive, got {self.size}")
        self.yaw_deg, self.size = float(self.yaw_deg), float(self.size)

    def placement(self) -> tuple[float, np.ndarray, np.ndarray]:
        """``(mesh scale, body rotation (3, 3), body origin (3,))`` for the renderer."""
        asset = _asset(self.name)
        lo, hi = _mesh_bounds(str(_mesh_path(asset)))
        up = _up_rotation(asset.up)
        scale = self.size / float(np.linalg.norm(hi - lo))
        rot = _rot_z(math.radians(self.yaw_deg)) @ up
        centre_file = (lo + hi) / 2
        origin = np.asarray(self.position) - scale * rot @ centre_file
        return scale, rot, origin

    def height(self) -> float:
        """Vertical extent in the world (independent of the yaw)."""
        asset = _asset(self.name)
        lo, hi = _mesh_bounds(str(_mesh_path(asset)))
        ext = np.abs(_up_rotation(asset.up) @ (hi - lo))
        return float(self.size * ext[2] / np.linalg.norm(hi - lo))


@dataclass
class Scene:
    """Objects, an optional textured ground plane ``z = ground_z``, and the background colour."""

    objects: list[PlacedObject] = field(default_factory=list)
    ground: bool = False
    ground_z: float = 0.0
    ground_extent: float = 1.5
    background: tuple[int, int, int] = (255, 255, 255)
    light_direction: tuple[float, float, float] = (0.4, -0.3, 1.0)
    shadows: bool = False

    def __post_init__(self) -> None:
        self.objects = [o if isinstance(o, PlacedObject) else PlacedObject(**o) for o in self.objects]
        bg = tuple(int(v) for v in self.background)
        if len(bg) != 3 or not all(0 <= v <= 255 for v in bg):
            raise ValueError(f"background must be an RGB triple in 0..255, got {self.background}")
        self.background = bg
        self.light_direction = tuple(float(v) for v in self.light_direction)

    def to_dict(self) -> dict:
        """JSON-serialisable description (stored in run metadata; :meth:`from_dict` rebuilds it)."""
        d = asdict(self)
        d["objects"] = [asdict(o) for o in self.objects]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Scene":
        return cls(**d)


# ----------------------------------------------------------------------------------------------------
# Camera conventions


def look_at(eye, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Camera-to-world rotation ``(3, 3)`` (OpenCV axes) of a camera at ``eye`` looking at ``target``.

    z (optical axis) points at the target, x (right) is horizontal (perpendicular to ``up``), y
    (down) points away from ``up``. Raises ``ValueError`` when the view direction is parallel to up.
    """
    eye, target, up = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
    z = target - eye
    nz = np.linalg.norm(z)
    if nz < 1e-12:
        raise ValueError(f"look_at: eye {eye.tolist()} and target coincide")
    z = z / nz
    x = np.cross(z, up)
    nx = np.linalg.norm(x)
    if nx < 1e-9:
        raise ValueError(f"look_at: view direction {z.tolist()} is parallel to up {up.tolist()}")
    x = x / nx
    y = np.cross(z, x)
    return np.stack([x, y, z], axis=1)


def gl_view_from_pose(rotation, translation) -> np.ndarray:
    """OpenGL view matrix ``(4, 4)`` (world -> GL camera) of a camera-to-world OpenCV pose."""
    R = np.asarray(rotation, dtype=np.float64)
    t = np.asarray(translation, dtype=np.float64)
    V = np.eye(4)
    V[:3, :3] = _GL_FROM_CV @ R.T
    V[:3, 3] = -_GL_FROM_CV @ R.T @ t
    return V


def pose_from_gl_view(view) -> tuple[np.ndarray, np.ndarray]:
    """Camera-to-world OpenCV ``(R (3, 3), t (3,))`` from an OpenGL view matrix.

    Accepts a ``(4, 4)`` matrix or pybullet's 16 floats (column-major, as returned by
    ``p.computeViewMatrix``).
    """
    V = np.asarray(view, dtype=np.float64)
    if V.shape == (16,):
        V = V.reshape(4, 4).T  # column-major
    if V.shape != (4, 4):
        raise ValueError(f"view matrix: expected 16 floats or (4, 4), got shape {V.shape}")
    R = (_GL_FROM_CV @ V[:3, :3]).T
    t = -R @ (_GL_FROM_CV @ V[:3, 3])
    return R, t


def intrinsics_from_fov(fov_deg: float, width: int, height: Optional[int] = None) -> np.ndarray:
    """Pinhole ``K (3, 3)`` with the vertical field of view ``fov_deg``, square pixels, centred."""
    height = width if height is None else height
    if not 0 < fov_deg < 180:
        raise ValueError(f"field of view must be in (0, 180) degrees, got {fov_deg}")
    f = (height / 2) / math.tan(math.radians(fov_deg) / 2)
    return np.array([[f, 0.0, (width - 1) / 2], [0.0, f, (height - 1) / 2], [0.0, 0.0, 1.0]])


def gl_projection_from_intrinsics(K, width: int, height: int, near: float, far: float) -> np.ndarray:
    """OpenGL projection ``(4, 4)`` reproducing pinhole ``K`` on TinyRenderer's pixel grid (module doc)."""
    K = np.asarray(K, dtype=np.float64)
    if not 0 < near < far:
        raise ValueError(f"clip planes must satisfy 0 < near < far, got near={near}, far={far}")
    fx, s, cx, fy, cy = K[0, 0], K[0, 1], K[0, 2], K[1, 1], K[1, 2]
    P = np.zeros((4, 4))
    P[0] = [2 * fx / width, -2 * s / width, 1 - 2 * cx / width, 0.0]
    P[1] = [0.0, 2 * fy / height, 2 * (cy + 1) / height - 1, 0.0]
    P[2] = [0.0, 0.0, -(far + near) / (far - near), -2 * far * near / (far - near)]
    P[3] = [0.0, 0.0, -1.0, 0.0]
    return P


def project_points(points, rotation, translation, K) -> tuple[np.ndarray, np.ndarray]:
    """Pixels ``(M, 2)`` and depths ``(M,)`` of world points ``(M, 3)`` in a camera-to-world pose."""
    X = np.atleast_2d(np.asarray(points, dtype=np.float64))
    cam = (X - np.asarray(translation, dtype=np.float64)) @ np.asarray(rotation, dtype=np.float64)
    uvw = cam @ np.asarray(K, dtype=np.float64).T
    return uvw[:, :2] / uvw[:, 2:3], cam[:, 2]


# ----------------------------------------------------------------------------------------------------
# Renderer


@dataclass
class RenderedView:
    """One rendered frame: ``rgb (H, W, 3) uint8``, ``labels (H, W) int16`` (object index,
    :data:`GROUND` or :data:`BACKGROUND`) and ``depth (H, W) float32`` (camera z, inf on background)."""

    rgb: np.ndarray
    labels: np.ndarray
    depth: np.ndarray


def _ground_mesh(extent: float, cells: int = 8, texture_repeats: int = 6):
    """A subdivided square (TinyRenderer has no near-plane clipping, so huge triangles are avoided)."""
    xs = np.linspace(-extent, extent, cells + 1)
    verts, uvs = [], []
    for j in range(cells + 1):
        for i in range(cells + 1):
            verts.append([xs[i], xs[j], 0.0])
            uvs.append([texture_repeats * i / cells, texture_repeats * j / cells])
    idx = []
    for j in range(cells):
        for i in range(cells):
            a = j * (cells + 1) + i
            c = a + cells + 1
            idx += [a, a + 1, c + 1, a, c + 1, c]
    return verts, idx, uvs, [[0.0, 0.0, 1.0]] * len(verts)


class PyBulletRenderer:
    """Renders a :class:`Scene` with pybullet's CPU TinyRenderer; one private DIRECT client each.

    ``render(R, t, K)`` takes a camera-to-world OpenCV pose and pinhole intrinsics. Deterministic:
    the same scene and pose give bit-identical images. Use as a context manager or call
    :meth:`close`.
    """

    name = "pybullet-tinyrenderer"

    def __init__(self, scene: Scene, width: int, height: int, near: float = 0.01, far: float = 50.0) -> None:
        p, pybullet_data = _pybullet()
        if int(width) != width or int(height) != height or not (1 <= width <= 4096 and 1 <= height <= 4096):
            raise ValueError(f"image size must be integers in [1, 4096], got {width} x {height}")
        self._p = p
        self.scene = scene
        self.width, self.height = int(width), int(height)
        self.near, self.far = float(near), float(far)
        self._client = p.connect(p.DIRECT)
        self._labels = {}  # pybullet body id -> our label
        try:
            for i, obj in enumerate(scene.objects):
                asset = _asset(obj.name)
                scale, rot, origin = obj.placement()
                kw = {} if asset.color is None else {"rgbaColor": list(asset.color)}
                shape = p.createVisualShape(
                    p.GEOM_MESH, fileName=str(_mesh_path(asset)), meshScale=[scale] * 3, physicsClientId=self._client, **kw
                )
                quat = matrix_to_quat(torch.from_numpy(rot)).tolist()  # xyzw, pybullet's order
                body = p.createMultiBody(
                    baseMass=0, baseVisualShapeIndex=shape, basePosition=origin.tolist(), baseOrientation=quat,
                    physicsClientId=self._client,
                )
                self._labels[body] = i
            if scene.ground:
                verts, idx, uvs, normals = _ground_mesh(scene.ground_extent)
                shape = p.createVisualShape(
                    p.GEOM_MESH, vertices=verts, indices=idx, uvs=uvs, normals=normals, physicsClientId=self._client
                )
                body = p.createMultiBody(
                    baseMass=0, baseVisualShapeIndex=shape, basePosition=[0.0, 0.0, scene.ground_z],
                    physicsClientId=self._client,
                )
                tex = p.loadTexture(str(Path(pybullet_data.getDataPath()) / "checker_blue.png"), physicsClientId=self._client)
                p.changeVisualShape(body, -1, textureUniqueId=tex, physicsClientId=self._client)
                self._labels[body] = GROUND
        except Exception:
            self.close()
            raise

    def render(self, rotation, translation, intrinsics) -> RenderedView:
        """Render the view of camera-to-world pose ``(R (3, 3), t (3,))`` with intrinsics ``K (3, 3)``."""
        if self._client is None:
            raise RuntimeError("renderer is closed")
        p = self._p
        view = gl_view_from_pose(rotation, translation)
        proj = gl_projection_from_intrinsics(intrinsics, self.width, self.height, self.near, self.far)
        _, _, rgba, depth_buf, seg = p.getCameraImage(
            self.width, self.height,
            viewMatrix=view.T.ravel().tolist(), projectionMatrix=proj.T.ravel().tolist(),
            renderer=p.ER_TINY_RENDERER, shadow=int(self.scene.shadows),
            lightDirection=list(self.scene.light_direction), lightColor=[1.0, 1.0, 1.0],
            lightAmbientCoeff=0.55, lightDiffuseCoeff=0.45, lightSpecularCoeff=0.05,
            physicsClientId=self._client,
        )
        h, w = self.height, self.width
        rgb = np.asarray(rgba, dtype=np.uint8).reshape(h, w, 4)[..., :3].copy()
        seg = np.asarray(seg, dtype=np.int64).reshape(h, w)
        labels = np.full((h, w), BACKGROUND, dtype=np.int16)
        for body, label in self._labels.items():
            labels[seg == body] = label
        rgb[labels == BACKGROUND] = self.scene.background
        # Window depth -> camera z for the standard OpenGL projection.
        d = np.asarray(depth_buf, dtype=np.float64).reshape(h, w)
        z = self.far * self.near / (self.far - (self.far - self.near) * d)
        z[labels == BACKGROUND] = np.inf
        return RenderedView(rgb, labels, z.astype(np.float32))

    def close(self) -> None:
        if getattr(self, "_client", None) is not None:
            try:
                self._p.disconnect(physicsClientId=self._client)
            finally:
                self._client = None

    def __enter__(self) -> "PyBulletRenderer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


def _renderer_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"pybullet {version('pybullet')} TinyRenderer"
    except PackageNotFoundError:  # pragma: no cover
        return "pybullet TinyRenderer"


def render_views(scene: Scene, rotations, translations, intrinsics, width: int, height: Optional[int] = None,
                 progress: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render ``N`` camera-to-world poses. Returns frames ``(N, H, W, 3)`` uint8, labels ``(N, H, W)``
    int16 and depths ``(N, H, W)`` float32 (see :class:`RenderedView`)."""
    from tqdm import tqdm

    height = width if height is None else height
    R = np.asarray(rotations, dtype=np.float64).reshape(-1, 3, 3)
    T = np.asarray(translations, dtype=np.float64).reshape(-1, 3)
    if R.shape[0] != T.shape[0]:
        raise ValueError(f"render_views: {R.shape[0]} rotations but {T.shape[0]} translations")
    frames = np.empty((len(R), height, width, 3), dtype=np.uint8)
    labels = np.empty((len(R), height, width), dtype=np.int16)
    depths = np.empty((len(R), height, width), dtype=np.float32)
    with PyBulletRenderer(scene, width, height) as r:
        for i in tqdm(range(len(R)), desc="rendering", disable=not progress):
            v = r.render(R[i], T[i], intrinsics)
            frames[i], labels[i], depths[i] = v.rgb, v.labels, v.depth
    return frames, labels, depths


def _check_size(size: int) -> int:
    if int(size) != size or not 8 <= size <= 1024:
        raise ValueError(f"size must be an integer in [8, 1024] pixels, got {size}")
    return int(size)


# ----------------------------------------------------------------------------------------------------
# (a) Object views


def turntable_poses(azimuths_deg, elevations_deg, distance: float, target=(0.0, 0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    """Cameras on a sphere around ``target``: paired ``(M,)`` azimuths/elevations (degrees) ->
    rotations ``(M, 3, 3)``, centres ``(M, 3)``.

    Camera centre ``target + distance (cos el cos az, cos el sin az, sin el)``: azimuth counter-
    clockwise from +x seen from above, elevation above the xy-plane. Looks at ``target``, up = +z.
    """
    az = np.radians(np.asarray(azimuths_deg, dtype=np.float64).reshape(-1))
    el = np.radians(np.asarray(elevations_deg, dtype=np.float64).reshape(-1))
    if az.shape != el.shape:
        raise ValueError(f"turntable_poses: {az.size} azimuths but {el.size} elevations")
    if not distance > 0:
        raise ValueError(f"distance must be positive, got {distance}")
    bad = np.flatnonzero(np.abs(el) >= np.radians(89.9))
    if bad.size:
        raise ValueError(f"elevation at index {int(bad[0])} is {np.degrees(el[bad[0]]):.3g} deg; must be within (-89.9, 89.9) (up = +z)")
    target = np.asarray(target, dtype=np.float64)
    T = target + distance * np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=1)
    R = np.stack([look_at(c, target) for c in T])
    return R, T


def turntable_scene(obj: str = "duck", background=(255, 255, 255), object_size: float = 1.0) -> Scene:
    """One object, bounding-box centre at the origin, bounding-box diagonal ``object_size``."""
    return Scene(objects=[PlacedObject(obj, (0.0, 0.0, 0.0), 0.0, object_size)], background=background)


def _object_run(scene: Scene, az, el, distance: float, size: int, fov_deg: float, meta: dict, progress: bool) -> CameraRun:
    R, T = turntable_poses(az, el, distance)
    K = intrinsics_from_fov(fov_deg, size)
    frames, _, _ = render_views(scene, R, T, K, size, progress=progress)
    meta = dict(
        meta, renderer=_renderer_version(), scene=scene.to_dict(), fov_deg=float(fov_deg), distance=float(distance),
        azimuths_deg=np.asarray(az, dtype=float).tolist(), elevations_deg=np.asarray(el, dtype=float).tolist(),
        source_format="synthetic", timestamps="view index (seconds have no physical meaning)",
    )
    return CameraRun(frames, np.arange(len(R), dtype=np.float64), R, T, intrinsics=K, metadata=meta)


def _jittered(az: np.ndarray, el: np.ndarray, jitter_deg: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Azimuths and elevations plus ``jitter_deg`` standard normals each (unchanged for 0)."""
    if not jitter_deg:
        return az, el
    return az + jitter_deg * rng.standard_normal(az.shape), el + jitter_deg * rng.standard_normal(el.shape)


def turntable_run(
    obj: str = "duck",
    azimuths_deg: Sequence[float] = tuple(range(0, 360, 30)),
    elevations_deg: Sequence[float] = (20.0,),
    distance: float = 1.4,
    size: int = 64,
    fov_deg: float = 40.0,
    seed: int = 0,
    background=(255, 255, 255),
    grid: bool = True,
    jitter_deg: float = 0.0,
    progress: bool = False,
) -> CameraRun:
    """Views of one object (bounding-box diagonal 1, centred at the origin) on an azimuth/elevation grid.

    Args:
        obj: a name from :func:`object_names`.
        azimuths_deg, elevations_deg: with ``grid=True`` every combination, elevation-major (for each
            elevation a full azimuth sweep); with ``grid=False`` paired lists of equal length.
        distance: camera distance to the object centre (world units).
        size: square image side in pixels; fov_deg: vertical field of view.
        seed, jitter_deg: each view's azimuth and elevation are perturbed by ``jitter_deg`` times a
            standard normal drawn from ``seed`` (0 = the exact grid).
    Returns:
        a :class:`CameraRun` with the view index as timestamp, exact camera-to-world poses,
        intrinsics, and metadata (object, seed, renderer, scene, angles).
    """
    size = _check_size(size)
    az = np.asarray(azimuths_deg, dtype=np.float64).reshape(-1)
    el = np.asarray(elevations_deg, dtype=np.float64).reshape(-1)
    if grid:
        el, az = (g.ravel() for g in np.meshgrid(el, az, indexing="ij"))
    az, el = _jittered(az, el, jitter_deg, np.random.default_rng(seed))
    scene = turntable_scene(obj, background)
    meta = dict(kind="turntable", object=obj, seed=int(seed), jitter_deg=float(jitter_deg))
    return _object_run(scene, az, el, distance, size, fov_deg, meta, progress)


def chairs_protocol(
    obj: str = "teddy",
    size: int = 64,
    n_train: int = 60,
    n_novel: int = 60,
    seed: int = 0,
    distance: float = 1.4,
    fov_deg: float = 40.0,
    train_elevations_deg: Sequence[float] = (10.0, 25.0, 40.0),
    jitter_deg: float = 0.0,
    background=(255, 255, 255),
) -> tuple[CameraRun, CameraRun]:
    """Training and novel views following the ShapeNet-chairs protocol of the view-aware GP paper.

    The paper trains on 60 viewpoints (``pose60.npy``) and evaluates 60 novel ones (``seq_pose.npy``,
    shown as a sequence); their angles are not published, so we choose:

    * **train**: ``n_train / len(train_elevations_deg)`` azimuths evenly spaced from 0 degrees
      (every 18 degrees for the defaults) at each of the elevations 10, 25 and 40 degrees: a grid;
    * **novel**: a smooth sequence of ``n_novel`` views going once round the object, azimuth
      ``a_k = a_0 + 360 k / n_novel`` with ``a_0`` half a training step (9 degrees), and elevation
      ``mid + 0.4 range sin(2 pi k / n_novel)`` strictly between the lowest and highest training
      elevation (13..37 degrees for the defaults); so no novel view coincides with a training
      view, and all of them interpolate (never extrapolate) in elevation.

    One object per call (the paper's runs cover many ShapeNet chairs; call once per object).

    ``seed`` drives the optional ``jitter_deg`` perturbation (default none). Returns ``(train_run,
    novel_run)``; both record ``protocol='chairs'`` and their split in metadata.
    """
    size = _check_size(size)
    els = np.asarray(train_elevations_deg, dtype=np.float64).reshape(-1)
    if n_train < len(els) or n_train % len(els):
        raise ValueError(f"n_train = {n_train} must be a positive multiple of the {len(els)} training elevations")
    if n_novel < 1:
        raise ValueError(f"n_novel must be positive, got {n_novel}")
    n_az = n_train // len(els)
    step = 360.0 / n_az
    el_tr, az_tr = (g.ravel() for g in np.meshgrid(els, np.arange(n_az) * step, indexing="ij"))
    k = np.arange(n_novel)
    az_nv = step / 2 + 360.0 * k / n_novel
    # 0.4 of the training elevation range keeps every novel elevation strictly inside it.
    el_nv = (els.max() + els.min()) / 2 + 0.4 * (els.max() - els.min()) * np.sin(2 * np.pi * k / n_novel)
    rng = np.random.default_rng(seed)
    az_tr, el_tr = _jittered(az_tr, el_tr, jitter_deg, rng)
    az_nv, el_nv = _jittered(az_nv, el_nv, jitter_deg, rng)
    scene = turntable_scene(obj, background)
    base = dict(kind="object-views", protocol="chairs", object=obj, seed=int(seed), jitter_deg=float(jitter_deg))
    train = _object_run(scene, az_tr, el_tr, distance, size, fov_deg, dict(base, split="train"), False)
    novel = _object_run(scene, az_nv, el_nv, distance, size, fov_deg, dict(base, split="novel"), False)
    return train, novel


# ----------------------------------------------------------------------------------------------------
# (b) A hand-held phone looking at a small scene


def tabletop_scene(
    names: Sequence[str] = _PHONE_DEFAULT_SCENE,
    seed: int = 0,
    radius: float = 0.22,
    sizes: tuple[float, float] = (0.14, 0.22),
    background=(190, 215, 240),
    shadows: bool = True,
) -> Scene:
    """Objects resting on a checker-textured ground plane ``z = 0``, at seeded random positions
    within ``radius`` of the origin (no two overlapping), random yaws and sizes (bounding-box
    diagonals in ``sizes``, metres). ``background`` is the sky colour."""
    names = list(names)
    if not names:
        raise ValueError("tabletop_scene: give at least one object name")
    rng = np.random.default_rng(seed)
    for name in names:
        _asset(name)
    # A greedy placement can paint itself into a corner; start over (same stream, so seeds that
    # place at the first attempt give the same scene as before) rather than fail the seed.
    for _attempt in range(50):
        placed = _place_objects(names, rng, radius, sizes)
        if placed is not None:
            break
    else:
        raise ValueError(f"tabletop_scene: no room for {len(names)} objects within radius {radius}; increase radius")
    return Scene(objects=placed, ground=True, ground_z=0.0, background=background, shadows=shadows)


def _place_objects(names: Sequence[str], rng: np.random.Generator, radius: float,
                   sizes: tuple[float, float]) -> Optional[list[PlacedObject]]:
    """One greedy attempt at non-overlapping random placements; ``None`` when an object finds no room."""
    placed: list[PlacedObject] = []
    for name in names:
        size = float(rng.uniform(*sizes))
        for _ in range(1000):
            r, a = radius * math.sqrt(rng.uniform()), rng.uniform(0, 2 * math.pi)
            xy = np.array([r * math.cos(a), r * math.sin(a)])
            if all(np.linalg.norm(xy - np.asarray(o.position[:2])) > 0.45 * (size + o.size) for o in placed):
                break
        else:
            return None
        obj = PlacedObject(name, (xy[0], xy[1], 0.0), float(rng.uniform(0, 360)), size)
        obj.position = (obj.position[0], obj.position[1], obj.height() / 2)  # resting on the ground
        placed.append(obj)
    return placed


def _smooth_ramp(tau: np.ndarray) -> np.ndarray:
    """0 -> 1 on [0, 1] with zero velocity at both ends (so motion starts and stops smoothly)."""
    return tau - np.sin(2 * np.pi * tau) / (2 * np.pi)


def _wobble(rng: np.random.Generator, t: np.ndarray, amplitude: float) -> np.ndarray:
    """``(N, 3)`` smooth hand-shake: per axis, three sinusoids of 0.7-2.5 Hz with random phases."""
    f = rng.uniform(0.7, 2.5, size=(3, 3))
    ph = rng.uniform(0, 2 * np.pi, size=(3, 3))
    return amplitude / 3 * np.sin(2 * np.pi * f[None] * t[:, None, None] + ph[None]).sum(-1)


def phone_trajectory(
    n_frames: int = 120,
    fps: float = 30.0,
    seed: int = 0,
    target=(0.0, 0.0, 0.06),
    distance: float = 0.6,
    height: float = 0.38,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A hand-held phone trajectory around ``target`` (thesis Fig. 1).

    Phases, as fractions of ``n_frames`` (at least 20):

    1. standstill at pose A for the first 12% of frames (poses bit-identical);
    2. smooth back-and-forth motion (1.5 swings of +-22 degrees in azimuth on top of a 35 degree
       drift, moving in by 18% and bobbing 8 cm up and down), with seeded hand shake (about 4 mm,
       0.8 degrees) that fades in and out;
    3. from 70% to 92% a 90 degree roll about the optical axis (landscape -> portrait), ending at
       pose B, which holds to the end.

    The camera looks at ``target`` (up = +z) except for the shake and the roll. Returns timestamps
    ``(N,)`` (``k / fps``), camera-to-world rotations ``(N, 3, 3)``, centres ``(N, 3)`` and the roll
    angle ``(N,)`` in degrees.
    """
    n = int(n_frames)
    if n != n_frames or n < 20:
        raise ValueError(f"phone_trajectory: n_frames must be an integer >= 20, got {n_frames}")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    rng = np.random.default_rng(seed)
    k = np.arange(n, dtype=np.float64)
    t = k / fps
    n_still = max(2, round(0.12 * n))
    k_roll, k_end = round(0.70 * n), round(0.92 * n)
    w = _smooth_ramp(np.clip((k - (n_still - 1)) / (k_end - (n_still - 1)), 0.0, 1.0))
    envelope = np.sin(np.pi * w)  # zero at rest: shake only while moving

    az = math.radians(-90.0 + rng.uniform(-20, 20)) + math.radians(35.0) * w + math.radians(22.0) * np.sin(3 * np.pi * w)
    horiz = distance * (1 - 0.18 * np.sin(np.pi * w))
    tgt = np.asarray(target, dtype=np.float64)
    eye = tgt + np.stack([horiz * np.cos(az), horiz * np.sin(az), height + 0.08 * np.sin(2 * np.pi * w)], axis=1)
    eye = eye + envelope[:, None] * _wobble(rng, t, 0.004)
    look = tgt + envelope[:, None] * _wobble(rng, t, 0.02)
    shake = envelope[:, None] * _wobble(rng, t, math.radians(0.8))

    s = np.clip((k - k_roll) / (k_end - k_roll), 0.0, 1.0)
    roll = 90.0 * (1 - np.cos(np.pi * s)) / 2
    R_shake = so3_exp(torch.from_numpy(shake)).numpy()
    R = np.stack([look_at(eye[i], look[i]) @ R_shake[i] @ _rot_z(math.radians(roll[i])) for i in range(n)])
    R[:n_still], eye[:n_still] = R[0], eye[0]  # an exact standstill, not merely a numerically tiny motion
    return t, R, eye, roll


def simulate_imu(run, noise: float = 0.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gyroscope readings ``(times (N,), gyro (N, 3))`` consistent with a run's orientations.

    ``gyro[k]`` is the body-frame angular velocity (rad/s, camera axes x right, y down, z forward)
    at ``times[k]`` = the run's timestamps. The samples are built so that trapezoidal integration
    (:func:`viewgp.poses.integrate_gyroscope`, ``R_{k+1} = R_k exp((w_k + w_{k+1}) dt / 2)``) from
    ``R_0`` reproduces every orientation exactly: ``(w_k + w_{k+1}) / 2 = log(R_k^T R_{k+1}) / dt_k``.
    That recursion leaves ``w_0`` free; it is set to 0 when the run starts at rest and otherwise to
    the value giving the smoothest sequence. ``noise`` adds white Gaussian noise (rad/s standard
    deviation per sample) drawn from ``seed``.

    Args:
        run: anything with ``timestamps (N,)`` and ``rotations (N, 3, 3)`` (CameraRun, PoseTrajectory).
    """
    times = np.asarray(run.timestamps, dtype=np.float64)
    R = torch.as_tensor(np.asarray(run.rotations, dtype=np.float64))
    n = len(times)
    if n < 2:
        raise ValueError(f"simulate_imu: need at least 2 orientations, got {n}")
    if noise < 0:
        raise ValueError(f"simulate_imu: noise must be >= 0, got {noise}")
    rate = so3_log(R[:-1].transpose(-1, -2) @ R[1:]).numpy() / np.diff(times)[:, None]  # mean rate per interval
    c = np.zeros((n, 3))
    for i in range(n - 1):
        c[i + 1] = 2 * rate[i] - c[i]
    # Any w_0 gives w_k = c_k + (-1)^k w_0; pick the least-squares smoothest one (0 at rest).
    sign = (-1.0) ** np.arange(n - 1)
    w0 = np.zeros(3) if np.all(rate[0] == 0) else (sign[:, None] * np.diff(c, axis=0)).sum(0) / (2 * (n - 1))
    gyro = c + ((-1.0) ** np.arange(n))[:, None] * w0
    if noise:
        gyro = gyro + noise * np.random.default_rng(seed).standard_normal(gyro.shape)
    return times.copy(), gyro


def phone_run(
    n_frames: int = 120,
    size: int = 64,
    seed: int = 0,
    imu_noise: Optional[float] = 0.0,
    scene: Union[Sequence[str], Scene] = _PHONE_DEFAULT_SCENE,
    fov_deg: float = 55.0,
    fps: float = 30.0,
    progress: bool = False,
) -> CameraRun:
    """A hand-held phone run over a small scene (see :func:`phone_trajectory`), rendered exactly.

    Args:
        scene: object names for :func:`tabletop_scene` (placed with ``seed``) or a :class:`Scene`.
        imu_noise: ``None`` for no IMU; otherwise :func:`simulate_imu` readings with this noise
            (rad/s) are stored in ``metadata['imu']`` (``times``, ``gyro``, ``noise``, ``seed``).
    Returns:
        a :class:`CameraRun` at ``fps`` with intrinsics; metadata records the scene (object
        positions, sizes), seed, renderer, per-frame roll angle and phase boundaries.
    """
    size = _check_size(size)
    sc = scene if isinstance(scene, Scene) else tabletop_scene(scene, seed=seed)
    t, R, T, roll = phone_trajectory(n_frames, fps, seed)
    K = intrinsics_from_fov(fov_deg, size)
    frames, _, _ = render_views(sc, R, T, K, size, progress=progress)
    meta = dict(
        kind="phone", seed=int(seed), renderer=_renderer_version(), scene=sc.to_dict(),
        objects=[o.name for o in sc.objects], fov_deg=float(fov_deg), fps=float(fps), roll_deg=roll.tolist(),
        source_format="synthetic",
    )
    run = CameraRun(frames, t, R, T, intrinsics=K, metadata=meta)
    if imu_noise is not None:
        times, gyro = simulate_imu(run, imu_noise, seed)
        run.metadata["imu"] = dict(
            times=times.tolist(), gyro=gyro.tolist(), noise=float(imu_noise), seed=int(seed),
            frame="camera body frame, OpenCV axes (x right, y down, z forward); rad/s",
        )
    return run

"""Synthetic aging faces (generative/aging/synthetic_faces.py) and the age estimator (generative/aging/age_estimator.py)."""

import csv

import cv2
import numpy as np
import pytest
import torch

from generative.aging.age_estimator import AgeRegressor, ScriptedAgeEstimator, load_age_estimator, to_estimator_input
from generative.backbones.checkpoint import CheckpointError
from generative.aging.synthetic_faces import DOMAIN_CENTRES, domain_folder, domain_of, make_face_dataset, render_face

AGES = (15, 40, 50, 60, 75)


def grey_fraction(img: np.ndarray) -> float:
    """Fraction of bright, unsaturated pixels (grey/white hair; eye whites are constant per identity)."""
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
    return float(((hsv[..., 1] < 40) & (hsv[..., 2] > 140)).mean())


def wrinkle_energy(faces: list) -> list:
    """Mean squared Laplacian in the upper face (forehead, brows, eye corners), taken only at pixels that
    are flat in the youngest face: there hair greying and skin darkening (uniform colour changes) add
    no edges, so what grows is the drawn wrinkle lines."""
    s = faces[0].shape[0]

    def lap(img):
        g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float64)
        return cv2.Laplacian(g, cv2.CV_64F)[int(0.25 * s) : int(0.55 * s), int(0.2 * s) : int(0.8 * s)]

    flat = cv2.erode((np.abs(lap(faces[0])) < 2).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert flat.mean() > 0.1  # the measurement covers a real part of the face
    return [float((lap(f)[flat] ** 2).mean()) for f in faces]


def chin_row(img: np.ndarray) -> int:
    """Lowest row of the centre column whose colour matches the cheek (sampled at that age's face)."""
    s = img.shape[0]
    cheek = img[int(0.6 * s), int(0.38 * s)].astype(np.float64)
    close = np.abs(img[:, s // 2].astype(np.float64) - cheek).max(axis=1) < 20
    return int(np.nonzero(close)[0].max())


def test_render_is_deterministic_and_well_formed():
    a = render_face(7, 42.5, 32)
    b = render_face(7, 42.5, 32)
    assert a.dtype == np.uint8 and a.shape == (32, 32, 3)
    assert np.array_equal(a, b)
    assert render_face(7, 42.5, 48).shape == (48, 48, 3)
    with pytest.raises(ValueError, match="size"):
        render_face(0, 30, 4)


def test_age_cues_grow_monotonically():
    for ident in range(4):
        faces = [render_face(ident, a, 64) for a in AGES]
        grey = [grey_fraction(f) for f in faces]
        # Non-decreasing up to 1% of the image: the lengthening jaw covers some long hair.
        assert all(y > x - 0.01 for x, y in zip(grey, grey[1:])), (ident, grey)
        assert grey[-1] > grey[0] + 0.05, (ident, grey)
        # Continuously: the pixels that are grey/white at 75 (hair, brows' edges, eye whites) move
        # towards that grey/white with age, whatever the base hair colour (black hair is unsaturated too).
        white = (cv2.cvtColor(faces[-1], cv2.COLOR_RGB2HSV)[..., 1] < 40) & (cv2.cvtColor(faces[-1], cv2.COLOR_RGB2HSV)[..., 2] > 140)
        dist = [float(np.abs(f[white].astype(np.float64) - faces[-1][white]).mean()) for f in faces[:-1]]
        assert all(x > y for x, y in zip(dist, dist[1:])) and dist[-1] > 0, (ident, dist)
        energy = wrinkle_energy(faces)
        assert all(x < y for x, y in zip(energy, energy[1:])), (ident, energy)
        # Sagging: the chin (lowest cheek-coloured pixel of the centre column) drops with age.
        chin = [chin_row(faces[k]) for k in (0, 3, 4)]
        assert chin[0] <= chin[1] <= chin[2] and chin[2] >= chin[0] + 2, (ident, chin)


def test_identities_differ():
    faces = [render_face(i, 30, 32).astype(np.int32) for i in range(5)]
    for i in range(5):
        for j in range(i + 1, 5):
            assert np.abs(faces[i] - faces[j]).mean() > 5


def test_domains_and_dataset_writer(tmp_path):
    assert [domain_of(a) for a in (10, 19.9, 20, 44, 69.9)] == [15, 15, 25, 45, 65]
    for bad in (9.9, 70):
        with pytest.raises(ValueError, match="outside the age domains"):
            domain_of(bad)
    ages = [15, 25, 33.5, 65]
    csv_path = make_face_dataset(tmp_path / "faces", n_identities=3, ages=ages, size=32, seed=1)
    assert csv_path == tmp_path / "faces" / "labels.csv"
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12
    assert sorted(p.name for p in (tmp_path / "faces").iterdir() if p.is_dir()) == ["age_15", "age_25", "age_35", "age_65"]
    for row in rows:
        age = float(row["age"])
        assert row["file"].startswith(domain_folder(domain_of(age)) + "/")
        img = cv2.cvtColor(cv2.imread(str(tmp_path / "faces" / row["file"])), cv2.COLOR_BGR2RGB)
        ident = int(row["file"].split("/id")[1][:5])
        assert np.array_equal(img, render_face(1 * 1_000_003 + ident, age, 32))  # PNG is lossless
    with pytest.raises(ValueError, match="outside"):
        make_face_dataset(tmp_path / "bad", 1, [75], size=32)
    with pytest.raises(ValueError, match="distinct"):
        make_face_dataset(tmp_path / "bad", 1, [20, 20], size=32)
    assert tuple(DOMAIN_CENTRES) == (15, 25, 35, 45, 55, 65)


def test_estimator_input_formats():
    img = render_face(3, 40, 32)[None]
    x = to_estimator_input(img)
    assert x.shape == (1, 3, 32, 32) and x.min() >= -1 and x.max() <= 1
    assert torch.equal(to_estimator_input(x), x)
    with pytest.raises(ValueError, match="N, H, W, 3"):
        to_estimator_input(img[0])
    with pytest.raises(ValueError, match="N, 3, H, W"):
        to_estimator_input(torch.zeros(1, 32, 32, 3))


@pytest.fixture(scope="module")
def trained():
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    a_tr = rng.uniform(10, 75, 200)
    x_tr = np.stack([render_face(i, a, 32) for i, a in enumerate(a_tr)])
    a_te = rng.uniform(10, 75, 60)
    x_te = np.stack([render_face(5000 + i, a, 32) for i, a in enumerate(a_te)])  # unseen identities
    torch.manual_seed(0)
    model = AgeRegressor(input_size=32, width=16)
    losses = model.fit(x_tr, a_tr, steps=250, seed=0)
    return model, losses, x_te, a_te, a_tr


def test_regressor_beats_mean_predictor(trained):
    model, losses, x_te, a_te, a_tr = trained
    assert np.mean(losses[-20:]) < 0.1 * np.mean(losses[:20])
    mae = np.abs(model.predict(x_te) - a_te).mean()
    baseline = np.abs(a_te - a_tr.mean()).mean()
    # Measured: MAE ~2.4 years against ~16.5 for predicting the training mean.
    assert mae < 0.35 * baseline, (mae, baseline)
    # Both input formats give the same ages.
    with torch.no_grad():
        a = model(x_te[:4])
        b = model(to_estimator_input(x_te[:4]))
    assert torch.allclose(a, b) and a.shape == (4,)


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
def test_save_load_round_trip_and_torchscript(trained, tmp_path):
    model, _, x_te, _, _ = trained
    path = model.save(tmp_path / "est" / "age.pt")
    loaded = load_age_estimator(path)
    assert isinstance(loaded, AgeRegressor)
    assert np.array_equal(loaded.predict(x_te), model.predict(x_te))
    # A user's TorchScript estimator (here: our network on the float path, scripted) obeys the same interface.
    class FloatPath(torch.nn.Module):
        def __init__(self, m: AgeRegressor):
            super().__init__()
            self.features, self.head = m.features, m.head
            self.register_buffer("mean", m.age_mean.clone())
            self.register_buffer("std", m.age_std.clone())

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.features(x).mean(dim=(2, 3))) * self.std + self.mean  # (N, 1)

    ts_path = tmp_path / "user.ts"
    torch.jit.script(FloatPath(model)).save(str(ts_path))
    user = load_age_estimator(ts_path)
    assert isinstance(user, ScriptedAgeEstimator)
    assert torch.allclose(user(x_te), torch.as_tensor(model.predict(x_te)).float(), atol=1e-4)


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_age_estimator(tmp_path / "nope.pt")
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(ValueError, match="neither"):
        load_age_estimator(junk)
    other = tmp_path / "other.pt"
    from generative.backbones.checkpoint import write_checkpoint

    write_checkpoint(other, "pioneer", {}, {})
    with pytest.raises(CheckpointError, match="not an age regressor"):
        load_age_estimator(other)

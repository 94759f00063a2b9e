"""``texture_strength`` of the synthetic faces: 1.0 is the original generator bit for bit,
the default is 2.0, more strength gives more fine detail at the training resolution, the
texture stays fixed per identity, a change regenerates the data, and a marker written
before the argument existed reads as 1.0 (so it is regenerated at the default)."""
import dataclasses
import hashlib
import json

import numpy as np
import pytest
from PIL import Image

from data_loader import synthetic as sf
from data_loader.synthetic import ensure_synthetic_celeba, write_synthetic_celeba
from misc import contact_sheet

# sha256 of ``image.tobytes()`` and of the float64 landmarks of ``synthetic_face(seed,
# identity, index)``, computed once with the generator of commit a118bee (before
# texture_strength existed; Pillow 13.0.0, numpy 2.4.6). Identity 2 has freckles, moles
# and long hair, 13 freckles, moles and stubble, 18 is bald: every texture path is drawn.
ORIGINAL_FACES = {
    (0, 2, 0): ("78f8e2628407887ac79f5e80d565430bd438aa714bb759482804139412bdc5d3",
                "552d43eec8cbfaddd52e5f83a0b90a033be744d80a3280955e1f75ab6d4456ea"),
    (0, 13, 1): ("f30d8cd4345c44153bd1bf3ef067af278a9d857fdb0461e7f29d24529039e3e9",
                 "07288a1e7a94d755f486266e87472a50289b3a4603022a70bb5f7c61533ace21"),
    (0, 18, 2): ("14ea651ba6ebbea4094fc65da00a41f1b178999b6c8eec34bbeef1df687339f8",
                 "633bd38251859337c73b3599517062b5a775a37b491e1f80998e86250b2407a8"),
}
CROP_TOP, IMWIDTH = 30, 64  # the CelebA face box (rows 30..207) and the default imwidth
SMALL = dict(num_train_identities=2, num_test_identities=2, images_per_identity=1,
             num_val_images=1, num_mafl_train=1, num_mafl_test=2, seed=0)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("key", sorted(ORIGINAL_FACES))
def test_strength_one_draws_the_original_faces_bit_for_bit(key):
    image_hash, landmark_hash = ORIGINAL_FACES[key]
    for strength in (1.0, 1):
        image, landmarks = sf.synthetic_face(*key, texture_strength=strength)
        assert sha256(image.tobytes()) == image_hash
        assert sha256(np.ascontiguousarray(landmarks, np.float64).tobytes()) == landmark_hash
    stronger, stronger_landmarks = sf.synthetic_face(*key, texture_strength=2.0)
    assert sha256(stronger.tobytes()) != image_hash
    # the default is 2.0: the same image as asking for 2.0, the landmarks never move
    default, default_landmarks = sf.synthetic_face(*key)
    assert np.array_equal(np.asarray(default), np.asarray(stronger))
    assert sha256(np.ascontiguousarray(default_landmarks, np.float64).tobytes()) == landmark_hash
    assert np.array_equal(default_landmarks, stronger_landmarks)


def network_view(image: Image.Image) -> np.ndarray:
    """(64, 64) grey levels of the face box as the loader resizes it (bilinear)."""
    square = image.crop((0, CROP_TOP, 178, CROP_TOP + 178))
    return np.asarray(square.resize((IMWIDTH, IMWIDTH), Image.BILINEAR), np.float64).mean(-1)


def high_pass(grey: np.ndarray) -> np.ndarray:
    """Each interior pixel minus the mean of its 3 x 3 neighbourhood; same shape, 0 rim."""
    out = np.zeros_like(grey)
    height, width = grey.shape
    for y in range(1, height - 1):
        for x in range(1, width - 1):
            out[y, x] = grey[y, x] - grey[y - 1:y + 2, x - 1:x + 2].mean()
    return out


def cheek_windows(values: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(2, 4, 4) windows of a 64 x 64 map on the cheeks: below each eye landmark (178-px
    pixels), 14..25 px lower and 6 px to either side, clear of glasses, nose and mouth."""
    scale = IMWIDTH / 178
    windows = []
    for eye_x, eye_y in landmarks[:2]:
        x0, y0 = int(round((eye_x - 6) * scale)), int(round((eye_y + 14 - CROP_TOP) * scale))
        windows.append(values[y0:y0 + 4, x0:x0 + 4])
    return np.stack(windows)


def test_fine_detail_at_64_px_grows_with_the_strength():
    """Mean squared high-pass value on the cheeks at imwidth 64, neutral pose, no noise:
    strictly increasing over s = 0, 1, 2, 4 for every identity, and more than doubled on
    average from 1 to 4 (measured: x3.2; the windows also hold some hair and glasses
    edges, which do not change with s)."""
    strengths = (0.0, 1.0, 2.0, 4.0)
    energies = []
    for identity_id in range(4):
        identity = sf.sample_identity(sf.identity_rng(0, identity_id))
        row = []
        for strength in strengths:
            image, landmarks = sf.FaceRenderer(identity, strength).render(sf.NEUTRAL)
            row.append((cheek_windows(high_pass(network_view(image)), landmarks) ** 2).mean())
        energies.append(row)
    energies = np.array(energies)  # (identities, strengths)
    assert np.all(np.diff(energies, axis=1) > 0), energies
    assert energies[:, 3].mean() > 2 * energies[:, 1].mean(), energies


def test_texture_is_fixed_per_identity_and_differs_between_identities():
    """Two images of one identity (other expression, same pose) share the cheek detail;
    two identities do not: cheek high-pass maps at 64 px, texture_strength 4."""
    other_expression = dataclasses.replace(sf.NEUTRAL, smile=1.0, mouth_open=3.0,
                                           eye_open=0.6, brow_lift=1.5)
    cheeks = {}
    for identity_id in (0, 1, 3):
        renderer = sf.FaceRenderer(sf.sample_identity(sf.identity_rng(0, identity_id)), 4.0)
        for label, variation in (("neutral", sf.NEUTRAL), ("smile", other_expression)):
            image, landmarks = renderer.render(variation)
            cheeks[identity_id, label] = cheek_windows(high_pass(network_view(image)), landmarks)
    for identity_id in (0, 1, 3):
        within = np.abs(cheeks[identity_id, "neutral"] - cheeks[identity_id, "smile"]).mean()
        for other in {0, 1, 3} - {identity_id}:
            across = np.abs(cheeks[identity_id, "smile"] - cheeks[other, "neutral"]).mean()
            assert within < 0.25 * across, (identity_id, other, within, across)


def read_marker(root):
    return json.loads((root / sf.MARKER_NAME).read_text())


def pixels(root, name="000001.jpg"):
    return np.asarray(Image.open(root / "Img" / "img_align_celeba_hq" / name))


def test_changing_the_strength_regenerates_the_data(tmp_path):
    root = tmp_path / "faces"
    assert ensure_synthetic_celeba(root, **SMALL, texture_strength=1.0) is True
    assert read_marker(root)["params"]["texture_strength"] == 1.0
    original = pixels(root)
    assert ensure_synthetic_celeba(root, **SMALL, texture_strength=1) is False  # 1 == 1.0
    assert ensure_synthetic_celeba(root, **SMALL) is True  # the default, 2.0
    assert read_marker(root)["params"] == dict(SMALL, texture_strength=2.0)
    assert not np.array_equal(pixels(root), original)
    assert ensure_synthetic_celeba(root, **SMALL, texture_strength=2) is False  # 2 == 2.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["faces"]


def test_a_marker_without_the_strength_reads_as_one_and_is_kept(tmp_path):
    """A copy written before texture_strength existed: its marker (the exact layout that
    version wrote) lacks the key; it holds strength-1 faces, so it is kept for 1.0 and
    regenerated for the default (2.0)."""
    root = tmp_path / "faces"
    write_synthetic_celeba(root, **SMALL, texture_strength=1.0)
    marker = {"format": "synthetic_faces", "format_version": 1, "params": SMALL,
              "counts": {"train": 2, "val": 1, "test": 2}}
    (root / sf.MARKER_NAME).write_text(json.dumps(marker, indent=1) + "\n")
    (root / "kept.txt").write_text("a regeneration would remove this")
    assert ensure_synthetic_celeba(root, **SMALL, texture_strength=1.0) is False
    assert (root / "kept.txt").is_file() and read_marker(root) == marker
    assert ensure_synthetic_celeba(root, **SMALL) is True
    assert not (root / "kept.txt").exists()
    assert read_marker(root)["params"]["texture_strength"] == 2.0


@pytest.mark.parametrize("value", [-0.5, float("nan"), float("inf"), True, "2", None])
def test_invalid_strengths_are_refused_in_one_line(tmp_path, value):
    with pytest.raises(ValueError) as err:
        write_synthetic_celeba(tmp_path / "x", **SMALL, texture_strength=value)
    message = str(err.value)
    assert "\n" not in message and "texture_strength must be a finite number >= 0" in message
    assert repr(value) in message
    assert not (tmp_path / "x").exists()
    with pytest.raises(ValueError, match="texture_strength"):
        sf.FaceRenderer(sf.sample_identity(sf.identity_rng(0, 0)), value)


def test_contact_sheet_script_draws_one_row_per_strength(tmp_path):
    output = tmp_path / "sheet.png"
    assert contact_sheet.main(["--identities", "0", "3", "--strengths", "1", "4",
                               "--output", str(output)]) == 0
    sheet = np.asarray(Image.open(output))
    assert sheet.shape == (2 * 218, 4 * 178, 3)  # 2 faces + 2 network views a row
    first_face = sf.synthetic_face(0, 0, 0, texture_strength=1.0)[0]
    assert np.array_equal(sheet[20:218, :178], np.asarray(first_face)[20:])  # below the label
    assert not np.array_equal(sheet[20:218, :178], sheet[218 + 20:, :178])
    view = sheet[CROP_TOP:CROP_TOP + 178, 2 * 178:3 * 178]  # 64 x 64, enlarged
    assert len(np.unique(view.reshape(-1, 3), axis=0)) <= 64 * 64
    with pytest.raises(SystemExit) as err:
        contact_sheet.main(["--strengths", "-1", "--output", str(tmp_path / "x.png")])
    assert err.value.code == 2 and not (tmp_path / "x.png").exists()

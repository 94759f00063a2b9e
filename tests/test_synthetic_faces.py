"""The procedural face dataset: on-disk format, determinism, landmark placement, identity
structure, the copy-baseline property and the ensure/regenerate logic."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from base.base_dataset import ImageReadError, MissingDataError
from data_loader import synthetic as sf
from data_loader.celeba import MAFLAligned
from data_loader.synthetic import ensure_synthetic_celeba, write_synthetic_celeba
from utils.config import load_config

TINY = dict(num_train_identities=6, num_test_identities=6, images_per_identity=3,
            num_val_images=4, num_mafl_train=5, num_mafl_test=12, seed=3)
NUM_TRAIN, NUM_VAL, NUM_TEST = 18, 4, 18
CROP_TOP = 30  # the CelebA crop: rows 30..207


def read_table(path: Path) -> list:
    return [line.split() for line in path.read_text().splitlines()]


def read_landmarks(root: Path):
    lines = (root / "Anno" / "list_landmarks_align_celeba.txt").read_text().splitlines()
    names = [line.split()[0] for line in lines[2:]]
    values = np.array([[int(v) for v in line.split()[1:]] for line in lines[2:]])
    return lines, names, values.reshape(-1, 5, 2)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "synthetic"
    write_synthetic_celeba(root, **TINY)
    return root


@pytest.fixture(scope="module")
def tiny_set(tiny_root):
    """(names, landmarks (N, 5, 2), splits, identities, images (N, H, W, 3) uint8)."""
    _, names, landmarks = read_landmarks(tiny_root)
    splits = dict(read_table(tiny_root / "Eval" / "list_eval_partition.txt"))
    identities = dict(read_table(tiny_root / "Anno" / "identity_CelebA.txt"))
    images = np.stack([np.asarray(Image.open(tiny_root / "Img" / "img_align_celeba_hq" / n))
                       for n in names])
    return (names, landmarks, np.array([int(splits[n]) for n in names]),
            np.array([int(identities[n]) for n in names]), images)


# ----------------------------------------------------------------------------- format

def test_landmark_file_format(tiny_root):
    lines, names, landmarks = read_landmarks(tiny_root)
    total = NUM_TRAIN + NUM_VAL + NUM_TEST
    assert lines[0] == str(total)
    assert lines[1] == ("lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y "
                        "leftmouth_x leftmouth_y rightmouth_x rightmouth_y")
    assert names == [f"{i:06d}.jpg" for i in range(1, total + 1)]
    assert all(len(line.split()) == 11 for line in lines[2:])
    assert landmarks.shape == (total, 5, 2)


def test_images_are_178x218_jpegs_in_both_folders(tiny_root):
    _, names, _ = read_landmarks(tiny_root)
    for folder in ("img_align_celeba_hq", "img_align_celeba"):
        files = sorted(p.name for p in (tiny_root / "Img" / folder).iterdir())
        assert files == names
    for name in names[:3] + names[-3:]:
        with Image.open(tiny_root / "Img" / "img_align_celeba_hq" / name) as image:
            assert image.format == "JPEG" and image.mode == "RGB" and image.size == (178, 218)
        hq = (tiny_root / "Img" / "img_align_celeba_hq" / name).read_bytes()
        assert (tiny_root / "Img" / "img_align_celeba" / name).read_bytes() == hq


def test_partition_blocks_and_identities(tiny_set):
    names, _, splits, identities, _ = tiny_set
    assert splits.tolist() == [0] * NUM_TRAIN + [1] * NUM_VAL + [2] * NUM_TEST
    train, val, test = (set(identities[splits == s]) for s in (0, 1, 2))
    assert len(train) == 6 and len(test) == 6
    assert not train & test and not train & val and not val & test
    for split in (0, 1, 2):  # consecutive images of a block never share an identity
        block = identities[splits == split]
        assert np.all(block[1:] != block[:-1])
    for identity in train | test:
        assert (identities == identity).sum() == 3


def test_mafl_lists(tiny_root, tiny_set):
    names, _, splits, identities, _ = tiny_set
    split_of = dict(zip(names, splits))
    mafl_train = (tiny_root / "MAFL" / "training.txt").read_text().split()
    mafl_test = (tiny_root / "MAFL" / "testing.txt").read_text().split()
    assert len(mafl_train) == TINY["num_mafl_train"] and len(mafl_test) == TINY["num_mafl_test"]
    assert {split_of[n] for n in mafl_train} == {0} and {split_of[n] for n in mafl_test} == {2}
    assert mafl_test == sorted(mafl_test) and mafl_train == sorted(mafl_train)
    identity_of = dict(zip(names, identities))
    test_ids = [identity_of[n] for n in mafl_test]
    assert all(a != b for a, b in zip(test_ids[1:], test_ids[:-1]))


def test_marker_is_written_with_the_parameters(tiny_root):
    marker = json.loads((tiny_root / sf.MARKER_NAME).read_text())
    assert marker["params"] == dict(TINY, texture_strength=2.0)  # the default
    assert marker["format_version"] == sf.FORMAT_VERSION
    assert not list(tiny_root.parent.glob("*" + sf.TEMP_INFIX + "*"))


# ------------------------------------------------------------------------ determinism

def test_same_seed_same_dataset_other_seed_differs(tiny_root, tmp_path):
    small = dict(TINY, num_train_identities=2, num_test_identities=2, images_per_identity=2,
                 num_val_images=1, num_mafl_train=2, num_mafl_test=2)
    roots = {}
    for label, seed in (("a", 3), ("b", 3), ("c", 4)):
        roots[label] = tmp_path / label
        write_synthetic_celeba(roots[label], **dict(small, seed=seed))
    anno = "Anno/list_landmarks_align_celeba.txt"
    assert (roots["a"] / anno).read_bytes() == (roots["b"] / anno).read_bytes()
    assert (roots["a"] / anno).read_bytes() != (roots["c"] / anno).read_bytes()

    def pixels(root, name):
        return np.asarray(Image.open(root / "Img" / "img_align_celeba_hq" / name))

    for name in ("000001.jpg", "000005.jpg", "000009.jpg"):
        assert np.array_equal(pixels(roots["a"], name), pixels(roots["b"], name))
        assert not np.array_equal(pixels(roots["a"], name), pixels(roots["c"], name))


def test_generation_does_not_touch_numpy_global_rng(tmp_path):
    np.random.seed(123)
    expected = np.random.random()
    np.random.seed(123)
    sf.synthetic_face(0, 0, 0)
    assert np.random.random() == expected


# -------------------------------------------------------------------------- landmarks

def test_landmarks_are_exactly_where_markers_are_drawn():
    """Debug rendering puts a DEBUG_COLOUR disc at each landmark before the pose warp: the
    discs' centroids in the output must land on the returned landmarks."""
    for identity, index in ((0, 0), (1, 4), (7, 2), (11, 9)):
        image, landmarks = sf.synthetic_face(5, identity, index, debug=True)
        distance = np.abs(np.asarray(image, int) - np.array(sf.DEBUG_COLOUR)).sum(-1)
        weight = np.clip(1 - distance / 150.0, 0, None)
        for x, y in landmarks:
            x0, y0 = int(x) - 5, int(y) - 5
            window = weight[y0:y0 + 11, x0:x0 + 11]
            rows, cols = np.mgrid[y0:y0 + 11, x0:x0 + 11]
            centroid = np.array([(window * cols).sum(), (window * rows).sum()]) / window.sum()
            assert np.abs(centroid - (x, y)).max() < 0.5, (identity, index, centroid, (x, y))


def test_landmarks_in_image_ordered_and_on_features(tiny_set):
    _, landmarks, _, _, images = tiny_set
    assert landmarks[..., 0].min() >= 0 and landmarks[..., 0].max() < 178
    assert landmarks[..., 1].min() >= CROP_TOP and landmarks[..., 1].max() < 208
    assert np.all(landmarks[:, 0, 0] < landmarks[:, 1, 0])  # left eye: smaller x
    assert np.all(landmarks[:, 3, 0] < landmarks[:, 4, 0])
    assert np.all(landmarks[:, 2, 1] > landmarks[:, :2, 1].max(1))  # nose below the eyes
    assert np.all(landmarks[:, 3:, 1].min(1) > landmarks[:, 2, 1])  # mouth below the nose
    luminance = images.astype(float).mean(-1)  # (N, H, W)

    def window(n, x, y, r):
        return luminance[n, y - r:y + r + 1, x - r:x + r + 1].mean()

    darker = []
    for n, points in enumerate(landmarks):
        # cheek: below the eye, level with the nose tip, away from nose and mouth
        for eye, sign in ((points[0], -1), (points[1], 1)):
            cheek = window(n, eye[0] + sign * 4, points[2, 1] - 4, 2)
            darker.append(window(n, eye[0], eye[1], 1) < 0.8 * cheek)
    assert np.mean(darker) >= 0.95  # pupil and iris at the eye landmarks


# --------------------------------------------------------------- identity structure

def test_landmark_configuration_varies_less_within_than_across_identities(tiny_set):
    _, landmarks, _, identities, _ = tiny_set
    shape = landmarks - landmarks.mean(1, keepdims=True)  # translation removed
    pair_distance = np.linalg.norm(shape[:, None] - shape[None], axis=-1).mean(-1)  # (N, N)
    same = identities[:, None] == identities[None]
    off_diagonal = ~np.eye(len(identities), dtype=bool)
    within = pair_distance[same & off_diagonal].mean()
    across = pair_distance[~same].mean()
    assert within < 0.8 * across, (within, across)


def colour_histogram(image: np.ndarray) -> np.ndarray:
    """Brightness-normalised colour (chromaticity) histogram of the CelebA crop."""
    crop = image[CROP_TOP:CROP_TOP + 178].reshape(-1, 3).astype(float) + 1
    chroma = crop[:, :2] / crop.sum(1, keepdims=True)
    hist, _, _ = np.histogram2d(chroma[:, 0], chroma[:, 1], bins=12, range=[[0, 1], [0, 1]])
    return hist.ravel() / hist.sum()


def test_images_of_one_identity_look_more_alike(tiny_set):
    _, _, _, identities, images = tiny_set
    hists = np.stack([colour_histogram(image) for image in images])
    distance = np.abs(hists[:, None] - hists[None]).sum(-1)
    same = identities[:, None] == identities[None]
    off_diagonal = ~np.eye(len(identities), dtype=bool)
    assert distance[same & off_diagonal].mean() < 0.5 * distance[~same].mean()


def test_copy_baseline_is_weak_but_faces_stay_aligned(tiny_set):
    """Copying the source's landmark pixels to the next test image is off by 4..15 px."""
    _, landmarks, splits, _, _ = tiny_set
    test = landmarks[splits == 2]
    error = np.linalg.norm(test[1:] - test[:-1], axis=-1).mean()
    assert 4.0 < error < 15.0, error
    celeba_mean = np.array([[69, 111], [108, 111], [89, 135], [72, 152], [106, 152]])
    assert np.abs(landmarks.mean(0) - celeba_mean).max() < 6


# ---------------------------------------------------------------- ensure / regenerate

SMALL = dict(num_train_identities=2, num_test_identities=2, images_per_identity=1,
             num_val_images=1, num_mafl_train=1, num_mafl_test=2, seed=0)


def test_ensure_generates_once_and_regenerates_when_incomplete(tmp_path):
    root = tmp_path / "faces"
    stale = tmp_path / f"faces{sf.TEMP_INFIX}999999999-0123abcd"  # left by a killed run
    (stale / "Img").mkdir(parents=True)
    assert ensure_synthetic_celeba(root, **SMALL) is True
    assert not stale.exists()
    assert ensure_synthetic_celeba(root, **SMALL) is False
    (root / sf.MARKER_NAME).unlink()  # as if interrupted before the marker
    assert ensure_synthetic_celeba(root, **SMALL) is True
    assert (root / sf.MARKER_NAME).is_file()
    assert ensure_synthetic_celeba(root, **dict(SMALL, seed=1)) is True  # other parameters
    assert json.loads((root / sf.MARKER_NAME).read_text())["params"]["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["faces"]  # no temporaries left


def test_ensure_replaces_an_empty_folder(tmp_path):
    root = tmp_path / "faces"
    root.mkdir()
    assert ensure_synthetic_celeba(root, **SMALL) is True
    assert (root / "Anno" / "list_landmarks_align_celeba.txt").is_file()


def test_foreign_folder_is_refused_with_a_one_line_error(tmp_path):
    root = tmp_path / "celeba"
    root.mkdir()
    (root / "precious.txt").write_text("not ours")
    with pytest.raises(RuntimeError) as err:
        ensure_synthetic_celeba(root, **SMALL)
    message = str(err.value)
    assert "\n" not in message and str(root) in message and "remove it" in message
    assert (root / "precious.txt").read_text() == "not ours"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["celeba"]


def test_invalid_parameters_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="num_test_identities must be >= 2"):
        write_synthetic_celeba(tmp_path / "x", **dict(SMALL, num_test_identities=1))
    with pytest.raises(ValueError, match="num_mafl_test=5 exceeds the 2 test images"):
        write_synthetic_celeba(tmp_path / "x", **dict(SMALL, num_mafl_test=5))
    assert not (tmp_path / "x").exists()


# ----------------------------------------------------------------------------- remedies

SYNTHETIC_REMEDY = ("the synthetic faces are generated, not downloaded: python train.py --config "
                    "configs/synthetic/smallnet-16d-dve.json writes them to data/synthetic_faces "
                    "before training (as does every configs/synthetic/*.json; delete a damaged "
                    "copy first)")


def test_the_named_config_writes_the_root_the_keypoint_configs_read():
    repo = Path(__file__).resolve().parents[1]
    config = json.loads((repo / "configs/synthetic/smallnet-16d-dve.json").read_text())
    assert config["dataset"]["type"] == "SyntheticFaces"
    assert config["dataset"]["args"]["root"] == "data/synthetic_faces"
    for path in sorted((repo / "configs/synthetic-keypoints").glob("*.json")):
        assert load_config(path)["dataset"]["args"]["root"] == "data/synthetic_faces"


def test_missing_or_damaged_synthetic_faces_say_how_to_make_them(tiny_root, tmp_path):
    with pytest.raises(MissingDataError) as missing:  # a new user: nothing generated yet
        MAFLAligned(tmp_path / "data" / "synthetic_faces", train=False)
    assert str(missing.value) == (f"{tmp_path}/data/synthetic_faces/Img/img_align_celeba_hq not "
                                  f"found; {SYNTHETIC_REMEDY}")
    copy = tmp_path / "generated"  # a generated copy, under another name
    shutil.copytree(tiny_root, copy)
    dataset = MAFLAligned(copy, train=False)
    dataset.image_paths[0].write_bytes(b"")
    with pytest.raises(ImageReadError) as damaged:
        dataset[0]
    assert str(damaged.value).endswith(f"(index 0) cannot be decoded (not an image format Pillow "
                                       f"reads); {SYNTHETIC_REMEDY}")
    assert MAFLAligned.missing_data_remedy("data/celeba") == \
        "fetch the dataset with: python misc/sync_datasets.py --dataset celeba"

"""AFLW_MTFL ("AFLW_M"): CSV and MTFL layouts, interleaving, 1-based points, splits, errors."""
import numpy as np
import pytest

from base.base_dataset import AnnotationError, MissingDataError
from data_loader.aflw_mtfl import AFLW_MTFL
from data_loader.registry import DATASETS
from dataset_fixtures import (assert_dots_on_keypoints, dot_image, save_image, write_mtfl_csv,
                              write_mtfl_test)

BASE_POINTS = np.array([(45, 52), (104, 50), (76, 80), (52, 108), (98, 110)])  # 0-based (x, y)


def write_mtfl(root):
    """Train: 3 rows of set 1 between rows of set 2 (not training); test: 2 MTFL rows.
    Returns {split: (names, 0-based points)}."""
    train_rows, train = [], ([], [])
    for k in range(5):
        name = f"crops/{k:04d}.jpg"
        points = BASE_POINTS + (k, -k)
        subset = 1 if k % 2 == 0 else 2
        train_rows.append((name, subset, points + 1))  # files are 1-based
        if subset == 1:
            save_image(dot_image(150, 150, points, radius=6), root / "aflw_cropped" / name)
            train[0].append(name)
            train[1].append(points)
    write_mtfl_csv(root, train_rows)
    test_rows, test = [], ([], [])
    for k in range(2):
        name = f"AFLW/{k:04d}-image{k}.jpg"
        points = BASE_POINTS + (-k, 2 * k)
        save_image(dot_image(150, 150, points, radius=6), root / "MTFL" / name)
        test_rows.append((name, points + 1))
        test[0].append(name)
        test[1].append(points)
    write_mtfl_test(root, test_rows)
    return {"train": (train[0], np.array(train[1])), "test": (test[0], np.array(test[1]))}


def test_registered_with_the_original_name_and_defaults():
    assert DATASETS.get("AFLW_MTFL") is AFLW_MTFL
    assert AFLW_MTFL.eye_indices == (0, 1)
    assert AFLW_MTFL.fetch_hint == "python misc/sync_datasets.py --dataset aflw-mtfl"


@pytest.mark.parametrize("imwidth,crop", [(70, 0), (100, 15), (136, 20)])
@pytest.mark.parametrize("train", [True, False])
def test_dots_sit_on_the_keypoints(tmp_path, imwidth, crop, train):
    names, points = write_mtfl(tmp_path)["train" if train else "test"]
    dataset = AFLW_MTFL(tmp_path, train=train, imwidth=imwidth, crop=crop, use_keypoints=True)
    assert dataset.names == names
    for index in range(len(dataset)):
        # hand computation: the file holds k + 1; (k_file - 1) * imwidth / 150
        np.testing.assert_allclose(dataset[index]["keypts"].numpy(),
                                   points[index] * imwidth / 150, atol=1e-4)
    assert_dots_on_keypoints(dataset, crop)


def test_defaults_follow_the_spec(tmp_path):
    write_mtfl(tmp_path)
    dataset = AFLW_MTFL(tmp_path)
    assert (dataset.imwidth, dataset.crop, dataset.do_augmentations, dataset.use_keypoints) == \
        (70, 0, True, False)
    assert dataset[0]["data"].shape == (3, 70, 70) and "keypts" not in dataset[0]


def test_official_split_sizes(tmp_path):
    rows = [(f"c/{i}.jpg", 1 if i % 5 else 2, np.ones((5, 2))) for i in range(12653)]
    write_mtfl_csv(tmp_path, rows)  # 10,122 rows of set 1, 2,531 of set 2
    write_mtfl_test(tmp_path, [(f"AFLW/{i}.jpg", np.ones((5, 2))) for i in range(2995)])
    train = AFLW_MTFL(tmp_path, train=True)
    assert len(train) == 10122 and train.names[:2] == ["c/1.jpg", "c/2.jpg"]
    test = AFLW_MTFL(tmp_path, train=False)
    assert len(test) == 2995
    assert test.image_paths[7] == tmp_path / "MTFL" / "AFLW" / "7.jpg"  # Windows path read
    mini_val = AFLW_MTFL(tmp_path, train=False, use_minival=True)
    assert len(AFLW_MTFL(tmp_path, train=True, use_minival=True)) == 9110
    assert len(mini_val) == 1012 and mini_val.names[-1] == train.names[-1]


def test_missing_root_names_the_file_and_the_fetch_command(tmp_path):
    with pytest.raises(MissingDataError,
                       match=r"MTFL/testing.txt not found; fetch the dataset with: "
                             r"python misc/sync_datasets.py --dataset aflw-mtfl"):
        AFLW_MTFL(tmp_path, train=False)


def test_wrong_column_counts_name_file_and_line(tmp_path):
    write_mtfl(tmp_path)
    csv_path = tmp_path / "aflw_cropped" / "facedata_cropped.csv"
    lines = csv_path.read_text().splitlines()
    lines[3] = lines[3].rsplit(",", 1)[0]
    csv_path.write_text("\n".join(lines) + "\n")
    with pytest.raises(AnnotationError, match=r"facedata_cropped.csv:4: expected 16 columns like "
                                              r"the header, found 15"):
        AFLW_MTFL(tmp_path, train=True)
    test_path = tmp_path / "MTFL" / "testing.txt"
    test_path.write_text(test_path.read_text() + "AFLW\\x.jpg 1 2 3 4 5 6 7 8 9\n")
    with pytest.raises(AnnotationError,
                       match=r"testing.txt:3: expected at least 11 columns, found 10"):
        AFLW_MTFL(tmp_path, train=False)

"""AFLW recropped ("AFLW_R"): layout, (y, x) storage, per-image scaling, splits, errors."""
import numpy as np
import pytest

from base.base_dataset import AnnotationError, ImageReadError, MissingDataError
from data_loader.aflw import AFLW
from data_loader.registry import DATASETS
from dataset_fixtures import assert_dots_on_keypoints, dot_image, save_image, write_aflw_index

SIZES_WH = {"train": [(160, 120), (140, 150), (130, 130)], "test": [(150, 110), (120, 140)]}
FRACTIONS = np.array([(0.3, 0.35), (0.7, 0.33), (0.52, 0.55), (0.36, 0.75), (0.64, 0.77)])


def write_aflw(root):
    """Images under output/<split>/ with 5 dots each; returns {split: (names, points, sizes)}."""
    written = {}
    for split, sizes in SIZES_WH.items():
        names, points = [], []
        for k, (width, height) in enumerate(sizes):
            name = f"{split}/face{k}.jpg"
            xy = np.round(FRACTIONS * (width, height) + k)
            save_image(dot_image(width, height, xy, radius=5), root / "output" / name)
            names.append(name)
            points.append(xy)
        sizes_hw = np.array([(h, w) for w, h in sizes])
        write_aflw_index(root, split, names, np.array(points), sizes_hw)
        written[split] = names, np.array(points), sizes_hw
    return written


def test_registered_with_the_original_name_and_eyes():
    assert DATASETS.get("AFLW") is AFLW
    assert AFLW.eye_indices == (0, 1)
    assert AFLW.fetch_hint == "python misc/sync_datasets.py --dataset aflw-recrop"


@pytest.mark.parametrize("imwidth,crop", [(100, 15), (136, 20)])
@pytest.mark.parametrize("train", [True, False])
def test_dots_sit_on_the_keypoints(tmp_path, imwidth, crop, train):
    written = write_aflw(tmp_path)
    names, points, sizes_hw = written["train" if train else "test"]
    dataset = AFLW(tmp_path, train=train, imwidth=imwidth, crop=crop, use_keypoints=True)
    assert dataset.names == names and len(dataset) == len(names)
    for index in range(len(dataset)):
        item = dataset[index]
        assert item["data"].shape == (3, imwidth, imwidth)
        height, width = sizes_hw[index]  # hand computation: scale by imwidth / (w, h)
        expected = points[index] * [imwidth / width, imwidth / height]
        np.testing.assert_allclose(item["keypts"].numpy(), expected, atol=1e-4)
    assert_dots_on_keypoints(dataset, crop)


def test_official_split_sizes_and_minival(tmp_path):
    rng = np.random.default_rng(0)
    for split, count in (("train", 10122), ("test", 2991)):
        names = [f"{split}/{i:05d}.jpg" for i in range(count)]
        write_aflw_index(tmp_path, split, names, rng.uniform(0, 99, (count, 5, 2)),
                         np.full((count, 2), 100.0))
    assert len(AFLW(tmp_path, train=True)) == 10122
    test = AFLW(tmp_path, train=False)
    assert len(test) == 2991 and test.names[0] == "test/00000.jpg"
    mini_train = AFLW(tmp_path, train=True, use_minival=True)
    mini_val = AFLW(tmp_path, train=False, use_minival=True)
    assert (len(mini_train), len(mini_val)) == (9110, 1012)  # the last 10% of train
    assert mini_val.names[0] == "train/09110.jpg" and mini_val.names[-1] == "train/10121.jpg"
    assert mini_val.image_paths[0] == tmp_path / "output" / "train/09110.jpg"


def test_missing_root_names_the_file_and_the_fetch_command(tmp_path):
    with pytest.raises(MissingDataError) as err:
        AFLW(tmp_path / "nowhere")
    assert str(err.value) == (f"{tmp_path / 'nowhere' / 'aflw_train_images.txt'} not found; "
                              f"fetch the dataset with: "
                              f"python misc/sync_datasets.py --dataset aflw-recrop")


def test_keypoint_count_mismatch_names_both_files(tmp_path):
    write_aflw(tmp_path)
    (tmp_path / "aflw_test_images.txt").write_text("a.jpg\nb.jpg\nc.jpg\n")
    with pytest.raises(AnnotationError, match=r"aflw_test_keypoints.mat: 'gt' is \(2, 5, 2\) and "
                                              r"'hw' \(2, 2\), expected \(3, 5, 2\) and \(3, 2\) "
                                              r"for the 3 images listed in .*aflw_test_images.txt"):
        AFLW(tmp_path, train=False)


def test_image_list_with_two_columns_names_the_line(tmp_path):
    write_aflw(tmp_path)
    (tmp_path / "aflw_test_images.txt").write_text("a.jpg\nb.jpg 3\n")
    with pytest.raises(AnnotationError,
                       match=r"aflw_test_images.txt:2: expected 1 columns, found 2"):
        AFLW(tmp_path, train=False)


def test_truncated_image_names_file_and_index(tmp_path):
    write_aflw(tmp_path)
    path = tmp_path / "output" / "test" / "face1.jpg"
    path.write_bytes(path.read_bytes()[:200])
    dataset = AFLW(tmp_path, train=False)
    dataset[0]
    with pytest.raises(ImageReadError, match=r"face1.jpg \(index 1\) cannot be decoded \(.*\); "
                                             r"re-fetch the dataset with: python misc/sync_"
                                             r"datasets.py --dataset aflw-recrop --refresh$"):
        dataset[1]

"""CelebA/MAFL splits and geometry on a tiny dataset written in the exact layout."""
import numpy as np
import pytest
from PIL import Image

from base.base_dataset import AnnotationError, ImageReadError, MissingDataError
from data_loader.celeba import CelebAPrunedAligned_MAFLVal, MAFLAligned
from dataset_fixtures import assert_dots_on_keypoints, dot_image, save_image, write_lines

SPLITS = [0, 0, 0, 0, 0, 0, 1, 1, 2, 2, 2, 2]  # 12 images in file-name order
MAFL_TRAIN = ["000002.jpg", "000005.jpg"]
MAFL_TEST = ["000012.jpg", "000010.jpg"]  # deliberately not in partition order


def write_layout(root, dot=(100, 140)):
    names = [f"{i + 1:06d}.jpg" for i in range(len(SPLITS))]
    for folder in ("img_align_celeba", "img_align_celeba_hq"):
        (root / "Img" / folder).mkdir(parents=True)
    rows = []
    for index, name in enumerate(names):
        array = np.full((218, 178, 3), 40, np.uint8)
        x, y = dot[0] + index, dot[1] - index
        array[y - 2:y + 3, x - 2:x + 3] = (255, 0, 0)
        for folder in ("img_align_celeba", "img_align_celeba_hq"):
            Image.fromarray(array).save(root / "Img" / folder / name, quality=100)
        rows.append(f"{name} " + " ".join(f"{x} {y}" for _ in range(5)))
    (root / "Anno").mkdir()
    (root / "Anno" / "list_landmarks_align_celeba.txt").write_text(
        f"{len(names)}\nlefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x "
        f"leftmouth_y rightmouth_x rightmouth_y\n" + "\n".join(rows) + "\n")
    (root / "Eval").mkdir()
    (root / "Eval" / "list_eval_partition.txt").write_text(
        "".join(f"{n} {s}\n" for n, s in zip(names, SPLITS)))
    (root / "MAFL").mkdir()
    (root / "MAFL" / "training.txt").write_text("\n".join(MAFL_TRAIN) + "\n")
    (root / "MAFL" / "testing.txt").write_text("\n".join(MAFL_TEST) + "\n")
    return names


def test_splits_follow_the_partition_order(tmp_path):
    write_layout(tmp_path)
    train = CelebAPrunedAligned_MAFLVal(tmp_path, train=True)
    assert train.names == ["000001.jpg", "000003.jpg", "000004.jpg", "000006.jpg"]
    val = CelebAPrunedAligned_MAFLVal(tmp_path, train=False, val_size=1)
    assert val.names == ["000009.jpg"]
    assert CelebAPrunedAligned_MAFLVal(tmp_path, train=False, val_split="mafl").names == \
        ["000010.jpg", "000012.jpg"]
    assert MAFLAligned(tmp_path, train=True).names == ["000002.jpg", "000005.jpg"]
    assert MAFLAligned(tmp_path, train=False).names == ["000010.jpg", "000012.jpg"]


@pytest.mark.parametrize("imwidth", [100, 136, 64])
def test_keypoints_sit_on_the_dot_after_crop_and_resize(tmp_path, imwidth):
    write_layout(tmp_path)
    dataset = MAFLAligned(tmp_path, train=False, imwidth=imwidth, use_keypoints=True)
    for index in range(len(dataset)):
        item = dataset[index]
        image = item["data"].numpy().astype(float)  # (3, H, W)
        redness = image[0] - image[1]
        y, x = np.unravel_index(redness.argmax(), redness.shape)
        weights = np.clip(redness - redness.max() / 2, 0, None)
        ys, xs = np.mgrid[:imwidth, :imwidth]
        centroid = np.array([(weights * xs).sum(), (weights * ys).sum()]) / weights.sum()
        # hand computation: y -= 30, then * imwidth / 178 (pixel-centre offset < 1 px)
        name_index = int(dataset.names[index][:6]) - 1
        expected = np.array([100 + name_index, 140 - name_index - 30]) * imwidth / 178
        assert np.allclose(item["keypts"][0].numpy(), expected, atol=1e-4)
        assert np.abs(centroid - expected).max() < 1.0
        assert item["data"].shape == (3, imwidth, imwidth)


def test_missing_files_name_the_file_and_the_fetch_command(tmp_path):
    write_layout(tmp_path)
    (tmp_path / "MAFL" / "testing.txt").unlink()
    with pytest.raises(MissingDataError, match=r"MAFL/testing.txt not found.*sync_datasets.py --dataset celeba"):
        MAFLAligned(tmp_path)


def test_unreadable_image_names_file_and_index(tmp_path):
    write_layout(tmp_path)
    dataset = MAFLAligned(tmp_path, train=False)
    dataset.image_paths[1].write_bytes(b"not a jpeg")
    with pytest.raises(ImageReadError, match=r"000012.jpg \(index 1\) cannot be decoded \(not "
                                             r"an image format Pillow reads\); re-fetch the "
                                             r"dataset with: python misc/sync_datasets.py "
                                             r"--dataset celeba --refresh$"):
        dataset[1]


CELEBA_POINTS = np.array([(68, 111), (110, 112), (89, 134), (72, 152), (106, 153)])  # (x, y)


def write_dotted_layout(root, count=3):
    """``count`` 178x218 images with 5 coloured dots at the annotated landmarks, all MAFL test."""
    names = [f"{i + 1:06d}.jpg" for i in range(count)]
    rows = []
    for k, name in enumerate(names):
        points = CELEBA_POINTS + (k, -2 * k)
        for folder in ("img_align_celeba", "img_align_celeba_hq"):
            save_image(dot_image(178, 218, points, radius=5), root / "Img" / folder / name)
        rows.append(f"{name} " + " ".join(f"{x} {y}" for x, y in points))
    write_lines(root / "Anno" / "list_landmarks_align_celeba.txt",
                [str(count), "lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x "
                 "leftmouth_y rightmouth_x rightmouth_y", *rows])
    write_lines(root / "Eval" / "list_eval_partition.txt", [f"{n} 2" for n in names])
    write_lines(root / "MAFL" / "training.txt", [])
    write_lines(root / "MAFL" / "testing.txt", names)


@pytest.mark.parametrize("imwidth,crop", [(100, 15), (136, 20)])
def test_dots_sit_on_the_keypoints_after_the_crop_step(tmp_path, imwidth, crop):
    write_dotted_layout(tmp_path)
    dataset = MAFLAligned(tmp_path, train=False, imwidth=imwidth, crop=crop, use_keypoints=True)
    assert len(dataset) == 3
    assert_dots_on_keypoints(dataset, crop)


def test_official_split_sizes(tmp_path):
    """202,599 images: splits 162,770 / 19,867 / 19,962; MAFL 19,000 (18,000 of them in split
    0) and 1,000 (in split 2)."""
    counts = (162770, 19867, 19962)
    splits = np.repeat([0, 1, 2], counts)
    names = [f"{i + 1:06d}.jpg" for i in range(len(splits))]
    rng = np.random.default_rng(0)
    split0, split1, split2 = (np.flatnonzero(splits == s) for s in range(3))
    mafl_train = [names[i] for i in np.concatenate([rng.choice(split0, 18000, replace=False),
                                                    rng.choice(split1, 1000, replace=False)])]
    mafl_test = [names[i] for i in rng.choice(split2, 1000, replace=False)]
    (tmp_path / "Img" / "img_align_celeba_hq").mkdir(parents=True)
    write_lines(tmp_path / "Anno" / "list_landmarks_align_celeba.txt",
                [str(len(names)), "lefteye_x ... rightmouth_y"] +
                [f"{n} 1 2 3 4 5 6 7 8 9 10" for n in names])
    write_lines(tmp_path / "Eval" / "list_eval_partition.txt",
                [f"{n} {s}" for n, s in zip(names, splits)])
    write_lines(tmp_path / "MAFL" / "training.txt", mafl_train)  # random order on purpose
    write_lines(tmp_path / "MAFL" / "testing.txt", mafl_test)
    mafl = set(mafl_train) | set(mafl_test)
    train = CelebAPrunedAligned_MAFLVal(tmp_path, train=True)
    assert len(train) == 162770 - 18000
    assert train.names == [names[i] for i in split0 if names[i] not in mafl]
    val = CelebAPrunedAligned_MAFLVal(tmp_path, train=False)
    assert val.names == [names[i] for i in split2 if names[i] not in mafl][:2000]
    assert CelebAPrunedAligned_MAFLVal(tmp_path, train=False, val_split="mafl").names == \
        sorted(mafl_test)
    mafl_train_set = MAFLAligned(tmp_path, train=True)
    assert len(mafl_train_set) == 19000 and mafl_train_set.names == sorted(mafl_train)
    np.testing.assert_array_equal(mafl_train_set.keypoints[0], [[1, 2], [3, 4], [5, 6], [7, 8],
                                                                [9, 10]])


def test_wrong_column_count_names_file_and_line(tmp_path):
    write_layout(tmp_path)
    anno = tmp_path / "Anno" / "list_landmarks_align_celeba.txt"
    lines = anno.read_text().splitlines()
    lines[4] = lines[4] + " 7"
    anno.write_text("\n".join(lines) + "\n")
    with pytest.raises(AnnotationError, match=r"list_landmarks_align_celeba.txt:5: expected 11 "
                                              r"columns, found 12"):
        MAFLAligned(tmp_path)


def test_mafl_name_missing_from_the_partition_is_an_error(tmp_path):
    write_layout(tmp_path)
    (tmp_path / "MAFL" / "training.txt").write_text("000002.jpg\n999999.jpg\n")
    with pytest.raises(AnnotationError, match=r"MAFL/training.txt:2: image 999999.jpg is not "
                                              r"listed in .*list_eval_partition.txt"):
        MAFLAligned(tmp_path)

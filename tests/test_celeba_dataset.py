"""CelebA/MAFL splits and geometry on a tiny dataset written in the exact layout."""
import numpy as np
import pytest
from PIL import Image

from base.base_dataset import MissingDataError
from data_loader.celeba import CelebAPrunedAligned_MAFLVal, MAFLAligned

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
    with pytest.raises(OSError, match=r"000012.jpg \(index 1\) is unreadable"):
        dataset[1]

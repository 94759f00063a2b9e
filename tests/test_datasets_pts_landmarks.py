"""PtsLandmarks: images with iBUG .pts beside them, any point count, boxes, splits, errors."""
import numpy as np
import pytest

from base.base_dataset import AnnotationError, MissingDataError
from data_loader.pts_landmarks import PtsLandmarks
from data_loader.registry import DATASETS
from dataset_fixtures import assert_dots_on_keypoints, dot_image, save_image, write_lines, write_pts

# relative path -> (width, height, 0-based points): the points of the first three stay
# inside the cropped frame when the whole image is used; the last face sits on the border
INTERIOR = {
    "p1/a.jpg": (160, 120,
                 [(50, 45), (110, 47), (80, 62), (60, 82), (100, 80), (70, 32), (95, 34)]),
    "p1/b.png": (130, 170,
                 [(40, 70), (92, 66), (66, 95), (45, 120), (88, 124), (60, 50), (75, 52)]),
    "p2/c.jpg": (140, 140,
                 [(35, 45), (100, 47), (65, 70), (40, 95), (95, 96), (50, 38), (80, 40)]),
}
FACES = {**INTERIOR,
         "p3/d.jpg": (120, 110,
                      [(10, 30), (60, 30), (35, 55), (14, 85), (58, 88), (20, 12), (48, 10)])}


def write_faces(root, faces=FACES):
    for name, (width, height, points) in faces.items():
        save_image(dot_image(width, height, np.array(points), radius=4), root / name)
        write_pts((root / name).with_suffix(".pts"), np.array(points, float) + 1)  # 1-based


def hand_box(points, margin):
    """The square of side (1 + 2 margin) * longer extent around the points' box centre."""
    points = np.array(points, float)
    low, high = points.min(0), points.max(0)
    side = int(np.ceil((1 + 2 * margin) * (high - low).max()))
    left, top = np.floor((low + high) / 2 - side / 2)
    return left, top, side


def test_registered():
    assert DATASETS.get("PtsLandmarks") is PtsLandmarks


@pytest.mark.parametrize("imwidth,crop", [(100, 15), (136, 20)])
@pytest.mark.parametrize("box_margin", [None, 0.5])  # extreme dots stay inside the crop
def test_dots_sit_on_the_keypoints(tmp_path, imwidth, crop, box_margin):
    faces = FACES if box_margin is not None else INTERIOR
    write_faces(tmp_path, faces)
    dataset = PtsLandmarks(tmp_path, train=True, imwidth=imwidth, crop=crop, use_keypoints=True,
                           box_margin=box_margin, test_fraction=0, eye_indices=[0, 1])
    assert dataset.names == sorted(faces) and dataset.eye_indices == (0, 1)
    for index, name in enumerate(dataset.names):
        width, height, points = FACES[name]
        if box_margin is None:
            expected = np.array(points) * [imwidth / width, imwidth / height]
        else:
            left, top, side = hand_box(points, box_margin)
            expected = (np.array(points) - (left, top)) * imwidth / side
        np.testing.assert_allclose(dataset[index]["keypts"].numpy(), expected, atol=1e-4)
    assert_dots_on_keypoints(dataset, crop)


def test_box_by_hand_and_zero_padding(tmp_path):
    write_faces(tmp_path)
    dataset = PtsLandmarks(tmp_path, test_fraction=0, box_margin=0.25, imwidth=100)
    # p3/d.jpg: x 10..60, y 10..88 -> extent 78, side ceil(1.5 * 78) = 117, centre (35, 49)
    assert dataset.source_box(3, (120, 110)) == (-24, -10, 93, 107)
    image = dataset[3]["data"]
    assert image[:, :, :int(24 * 100 / 117)].max() == 0  # left of the source image: zeros


def test_splits_by_fraction_lists_and_minival(tmp_path):
    write_faces(tmp_path)
    assert PtsLandmarks(tmp_path, train=True, test_fraction=0.25).names == sorted(FACES)[:3]
    assert PtsLandmarks(tmp_path, train=False, test_fraction=0.25).names == ["p3/d.jpg"]
    write_lines(tmp_path / "train.txt", ["p2/c.jpg", "p1/a.jpg"])
    write_lines(tmp_path / "test.txt", ["p1/b.png"])
    lists = {"train_list": "train.txt", "test_list": "test.txt"}
    assert PtsLandmarks(tmp_path, train=True, **lists).names == ["p2/c.jpg", "p1/a.jpg"]
    assert PtsLandmarks(tmp_path, train=False, **lists).names == ["p1/b.png"]
    write_lines(tmp_path / "train.txt", [f"p{k}.jpg" for k in range(20)])
    write_faces(tmp_path, {f"p{k}.jpg": FACES["p1/a.jpg"] for k in range(20)})
    val = PtsLandmarks(tmp_path, train=False, use_minival=True, **lists)
    assert val.names == ["p18.jpg", "p19.jpg"]
    assert len(PtsLandmarks(tmp_path, train=True, use_minival=True, **lists)) == 18


def test_errors_name_the_file(tmp_path):
    write_faces(tmp_path)
    with pytest.raises(MissingDataError, match=r"landmark folder .*nowhere not found"):
        PtsLandmarks(tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"give both dataset.args.train_list and "
                                         r"dataset.args.test_list, or neither"):
        PtsLandmarks(tmp_path, train_list="train.txt")
    with pytest.raises(ValueError, match=r"eye_indices must be two different point indices in "
                                         r"\[0, 7\), got \[0, 7\]"):  # 7 points per file
        PtsLandmarks(tmp_path, eye_indices=[0, 7])
    with pytest.raises(ValueError, match=r"set dataset.args.eye_indices to the two points"):
        PtsLandmarks(tmp_path).eye_indices
    write_pts(tmp_path / "p2" / "c.pts", np.ones((6, 2)))
    with pytest.raises(AnnotationError, match=r"c.pts: 6 points, but .*a.pts has 7"):
        PtsLandmarks(tmp_path, test_fraction=0)
    (tmp_path / "p2" / "c.pts").unlink()
    with pytest.raises(MissingDataError, match=r"p2/c.pts not found: every image needs a .pts "
                                               r"file beside it"):
        PtsLandmarks(tmp_path, test_fraction=0)

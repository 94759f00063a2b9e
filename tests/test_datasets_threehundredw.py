"""300-W: bounding-box .mat files, .pts files, the two-resize crop, splits, errors."""
import math

import numpy as np
import pytest
from scipy.io import loadmat, savemat

from base.base_dataset import AnnotationError, MissingDataError
from data_loader.registry import DATASETS
from data_loader.threehundredw import ThreeHundredW
from dataset_fixtures import (assert_dots_on_keypoints, dot_image, save_image, write_300w_boxes,
                              write_pts)

IMAGE_SIZE = (200, 210)  # width, height
# one face per subset: (subset, folder, image name, box [xmin ymin xmax ymax])
FACES = {
    # afw: f = 52 / 104 and the window leaves the image; lfpw: f = 0.65
    "train": [("afw", "afw", "111_1.jpg", (40, 50, 143, 160)),
              ("helen_trainset", "helen/trainset", "22_1.jpg", (60, 44, 163, 150)),
              ("lfpw_trainset", "lfpw/trainset", "image_0003.png", (70, 80, 149, 160))],
    "test": [("helen_testset", "helen/testset", "33_2.jpg", (50, 60, 153, 171)),
             ("lfpw_testset", "lfpw/testset", "image_0001.png", (64, 52, 143, 131)),
             ("ibug", "ibug", "image_004_1.jpg", (45, 70, 148, 179))],
}


def grid_points(box):
    """68 integer 0-based (x, y) on a 9 x 8 grid over the box, slightly wider than it."""
    xmin, ymin, xmax, ymax = box
    xs = np.round(xmin + (xmax - xmin) * np.linspace(-0.05, 1.05, 9))
    ys = np.round(ymin + (ymax - ymin) * np.linspace(0, 1, 8))
    return np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)[:68]


def write_300w(root, layout="cell"):
    """One dotted face per subset, .pts 1-based; iBUG boxes also list two names that do not
    start with "image" (no files: they must be left out)."""
    for faces in FACES.values():
        for subset, folder, name, box in faces:
            points = grid_points(box)
            save_image(dot_image(*IMAGE_SIZE, points, radius=4), root / folder / name)
            write_pts((root / folder / name).with_suffix(".pts"), points + 1)
            entries = [(name, box)]
            if subset == "ibug":
                entries = [("flipped_004_1.jpg", box), (name, box), ("x_image.jpg", box)]
            write_300w_boxes(root, subset, entries, layout)


def expected_keypoints(points0, box, imwidth):
    """SPEC section 5 by hand: 1-based k, f = 52 / bw, window origin, then * imwidth / 100."""
    xmin, ymin, xmax, ymax = box
    bw, bh = xmax - xmin + 1, ymax - ymin + 1
    f = 52 / bw
    x0 = math.floor(f * (xmin + (bw + 1) / 2)) - 50
    y0 = math.floor(f * (ymin + (bh + 1) / 2)) - 52
    return (f * (points0 + 1) - (x0, y0) - 1) * imwidth / 100


def test_registered_with_the_original_name_and_outer_eye_corners():
    assert DATASETS.get("ThreeHundredW") is ThreeHundredW
    assert ThreeHundredW.eye_indices == (36, 45)
    assert ThreeHundredW.fetch_hint == "python misc/sync_datasets.py --dataset 300w"


def test_window_origin_by_hand():
    # box (40, 50, 143, 160): bw 104, f 0.5, centre (92.5, 106) -> origin (46 - 50, 53 - 52)
    np.testing.assert_allclose(expected_keypoints(np.array([[9.0, 19.0]]), FACES["train"][0][3],
                                                  100), [[0.5 * 10 + 4 - 1, 0.5 * 20 - 1 - 1]])


@pytest.mark.parametrize("imwidth,crop", [(100, 15), (136, 20)])
@pytest.mark.parametrize("split", ["train", "test"])
def test_dots_sit_on_the_keypoints(tmp_path, imwidth, crop, split):
    write_300w(tmp_path)
    dataset = ThreeHundredW(tmp_path, train=split == "train", imwidth=imwidth, crop=crop,
                            use_keypoints=True)
    faces = FACES[split]
    assert dataset.names == [f"{folder}/{name}" for _, folder, name, _ in faces]
    for index, (_, _, _, box) in enumerate(faces):
        item = dataset[index]
        assert item["data"].shape == (3, imwidth, imwidth)
        np.testing.assert_allclose(item["keypts"].numpy(),
                                   expected_keypoints(grid_points(box), box, imwidth), atol=1e-4)
    assert_dots_on_keypoints(dataset, crop)


def test_window_outside_the_image_is_zero(tmp_path):
    write_300w(tmp_path)
    image = ThreeHundredW(tmp_path, train=True, imwidth=100)[0]["data"]
    # image width 200 -> 100 after f = 0.5; window columns [-4, 96): 4 padded on the left
    assert image[:, :, :4].max() == 0 and image.shape == (3, 100, 100)


def test_official_split_sizes(tmp_path):
    sizes = {"afw": 337, "helen_trainset": 2000, "lfpw_trainset": 811,
             "helen_testset": 330, "lfpw_testset": 224, "ibug": 135}
    folders = {subset: folder for faces in FACES.values() for subset, folder, _, _ in faces}
    write_pts(tmp_path / "one.pts", np.ones((68, 2)))
    pts_text = (tmp_path / "one.pts").read_bytes()
    for subset, count in sizes.items():
        names = [f"image_{i:04d}.jpg" for i in range(count)]
        if subset == "ibug":
            names += [f"flipped_{i}.jpg" for i in range(7)]  # left out
        (tmp_path / folders[subset]).mkdir(parents=True)
        for name in names[:count]:
            (tmp_path / folders[subset] / name).with_suffix(".pts").write_bytes(pts_text)
        write_300w_boxes(tmp_path, subset, [(name, (1, 1, 50, 50)) for name in names])
    train = ThreeHundredW(tmp_path, train=True)
    test = ThreeHundredW(tmp_path, train=False)
    assert (len(train), len(test)) == (3148, 689)
    assert train.names[337] == "helen/trainset/image_0000.jpg"
    assert test.names[-1] == "ibug/image_0134.jpg"


def test_missing_files_name_the_file_and_the_fetch_command(tmp_path):
    with pytest.raises(MissingDataError, match=r"Bounding Boxes/bounding_boxes_afw.mat not found; "
                                               r"fetch the dataset with: python misc/sync_datasets"
                                               r".py --dataset 300w"):
        ThreeHundredW(tmp_path)
    write_300w(tmp_path)
    (tmp_path / "ibug" / "image_004_1.pts").unlink()
    with pytest.raises(MissingDataError, match=r"ibug/image_004_1.pts not found"):
        ThreeHundredW(tmp_path, train=False)


def test_bad_pts_files_name_file_and_line(tmp_path):
    write_300w(tmp_path)
    pts = tmp_path / "afw" / "111_1.pts"
    lines = pts.read_text().splitlines()
    pts.write_text("\n".join(lines[:6] + ["12.0 13.0 14.0"] + lines[7:]) + "\n")
    with pytest.raises(AnnotationError,
                       match=r"111_1.pts:7: expected 2 columns \(x y\) for point 4 of 68, found 3"):
        ThreeHundredW(tmp_path)
    write_pts(pts, np.ones((67, 2)))
    with pytest.raises(AnnotationError, match=r"111_1.pts: 67 points, expected 68"):
        ThreeHundredW(tmp_path)


def test_fixture_writes_the_release_cell_layout(tmp_path):
    write_300w(tmp_path)
    boxes = loadmat(tmp_path / "Bounding Boxes" / "bounding_boxes_ibug.mat")["bounding_boxes"]
    assert boxes.shape == (1, 3) and boxes.dtype == object  # a 1 x N cell array
    # the original's indexing of the release files
    assert boxes[0, 1]["imgName"][0, 0][0] == "image_004_1.jpg"
    np.testing.assert_array_equal(boxes[0, 1]["bb_ground_truth"][0, 0], [[45, 70, 148, 179]])


@pytest.mark.parametrize("layout", ["cell", "struct"])
def test_both_bounding_box_layouts_read_alike(tmp_path, layout):
    write_300w(tmp_path, layout)
    for split in ("train", "test"):
        dataset = ThreeHundredW(tmp_path, train=split == "train", use_keypoints=True)
        faces = FACES[split]
        assert dataset.names == [f"{folder}/{name}" for _, folder, name, _ in faces]
        np.testing.assert_array_equal(dataset.boxes, [box for _, _, _, box in faces])


def test_bounding_boxes_in_another_layout_name_the_file(tmp_path):
    write_300w(tmp_path)
    path = tmp_path / "Bounding Boxes" / "bounding_boxes_afw.mat"
    cells = np.empty((1, 2), dtype=object)
    cells[0, 0], cells[0, 1] = np.zeros((1, 1), dtype=[("imgName", object), ("bb_ground_truth",
                                                                            object)]), "text"
    savemat(path, {"bounding_boxes": cells})
    with pytest.raises(AnnotationError, match=r"bounding_boxes_afw.mat: expected 'bounding_boxes', "
                                              r"a cell array of structs .*; entry 2 is not one"):
        ThreeHundredW(tmp_path)
    savemat(path, {"bounding_boxes": np.ones((1, 4))})
    with pytest.raises(AnnotationError, match=r"bounding_boxes_afw.mat: expected 'bounding_boxes'"):
        ThreeHundredW(tmp_path)

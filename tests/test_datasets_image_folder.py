"""ImageFolder: recursive discovery, order, split, resizing and errors."""
import numpy as np
import pytest
from PIL import Image

from base.base_dataset import ImageReadError, MissingDataError
from data_loader.image_folder import ImageFolder
from data_loader.registry import DATASETS
from dataset_fixtures import dot_image, find_dots, save_image

# relative path -> (width, height); mixed formats, depths and letter case
IMAGES = {"b/person2/x.png": (90, 60), "a/one.jpg": (120, 150), "a/Two.JPG": (64, 64),
          "c/deep/er/three.bmp": (100, 80), "top.gif": (70, 90), "a/zz.webp": (80, 80)}
NOT_IMAGES = ("notes.txt", "a/one.pts", "c/meta.json")


def write_folder(root):
    for k, (name, (width, height)) in enumerate(IMAGES.items()):
        dot = np.array([[width // 3 + k, height // 2]])
        array = dot_image(width, height, dot, radius=4)
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix in (".jpg", ".JPG", ".png"):
            save_image(array, path)
        else:  # lossless formats
            options = {"lossless": True} if path.suffix == ".webp" else {}
            Image.fromarray(array).save(path, **options)
    for name in NOT_IMAGES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("not an image")


def test_registered_without_keypoints():
    assert DATASETS.get("ImageFolder") is ImageFolder
    assert ImageFolder.has_keypoints is False


def test_every_image_in_sorted_order_and_the_tail_is_validation(tmp_path):
    write_folder(tmp_path)
    order = sorted(IMAGES)  # by relative path
    train = ImageFolder(tmp_path, train=True, val_fraction=0.34)  # round(0.34 * 6) = 2
    val = ImageFolder(tmp_path, train=False, val_fraction=0.34)
    assert train.names == order[:4] and val.names == order[4:]
    assert ImageFolder(tmp_path, train=False, val_fraction=0.01).names == order[-1:]  # at least one
    assert ImageFolder(tmp_path, train=False, val_fraction=0).names == []


@pytest.mark.parametrize("imwidth", [100, 64])
def test_images_are_resized_whole(tmp_path, imwidth):
    write_folder(tmp_path)
    dataset = ImageFolder(tmp_path, train=True, imwidth=imwidth, crop=10, val_fraction=0)
    for index, name in enumerate(dataset.names):
        item = dataset[index]
        assert item["data"].shape == (3, imwidth, imwidth) and item["index"] == index
        assert "keypts" not in item
        width, height = IMAGES[name]
        k = list(IMAGES).index(name)
        expected = np.array([width // 3 + k, height // 2]) * [imwidth / width, imwidth / height]
        assert np.abs(find_dots(item["data"], 1)[0] - expected).max() < 1.0


def test_missing_or_empty_folder_and_unreadable_image(tmp_path):
    with pytest.raises(MissingDataError, match=r"image folder .*nowhere not found; set "
                                               r"dataset.args.root"):
        ImageFolder(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(MissingDataError, match=r"no images under .*empty"):
        ImageFolder(tmp_path / "empty")
    write_folder(tmp_path / "faces")
    dataset = ImageFolder(tmp_path / "faces", val_fraction=0)
    (tmp_path / "faces" / "a" / "one.jpg").write_bytes(b"\xff\xd8 broken")
    with pytest.raises(ImageReadError, match=r"a/one.jpg \(index 1\) cannot be decoded \(.*\); "
                                             r"replace or remove that file$"):
        dataset[1]


def test_embedding_training_on_a_folder_skips_matching_and_saves(tmp_path):
    import json

    import train
    from utils.checkpoint import load_checkpoint

    write_folder(tmp_path / "faces")
    config = json.loads(open("configs/own-data/image-folder-smallnet-16d-dve.json").read())
    config["dataset"]["args"].update(root=str(tmp_path / "faces"), imwidth=32, crop=4,
                                     val_fraction=0.35)
    config["batch_size"] = 2
    config["visualizations"] = []
    config["trainer"].update(epochs=1, save_dir=str(tmp_path / "saved"),
                             log_dir=str(tmp_path / "saved"), tensorboardX=False)
    path = tmp_path / "image-folder.json"
    path.write_text(json.dumps(config))
    assert train.main(["--config", str(path), "--device", "cpu", "--disable_workers"]) == 0
    (run,) = (tmp_path / "saved" / "models").glob("*/*")
    state = load_checkpoint(run / "checkpoint-epoch1.pth")
    assert state["epoch"] == 1 and not (run / "matching.json").exists()

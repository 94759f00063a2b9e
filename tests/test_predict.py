"""predict.py on images of any size, mode and orientation: landmarks against the known
positions of synthetic faces, matches against the matching evaluation on the same warped
pair, colour maps, the frame mapping by hand, and the one-line errors."""
import csv
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

import predict
import train
from conftest import TINY_DATA, only_run_folder, write_tiny_config
from data_loader.keypoint_pipeline import KeypointPipeline
from data_loader.synthetic import synthetic_face
from data_loader.synthetic_dataset import SyntheticFaces
from data_loader.warper import Warper
from model import SmallNet
from trainer.builders import build_model
from utils.checkpoint import load_weights_into
from trainer.inference import (FaceRegions, Geometry, face_loader, normalized_to_original,
                               predict_landmarks, region_to_original)
from trainer.matching import MATCHING_WARPER_ARGS, REFERENCE_WIDTH, evaluate_matching

IMWIDTH, CROP, CHANNELS = 32, 4, 8  # write_tiny_config's geometry and embedding
# The regressor's data: 60 training faces of 10 identities; its test split (MAFL test) is
# the first 6 images of identities 10, 11, 12 (image indices 0 and 1), seed 1.
REGRESSOR_DATA = dict(num_train_identities=10, num_test_identities=3, images_per_identity=6,
                      num_val_images=0, num_mafl_train=0, num_mafl_test=6, seed=1)
TEST_FACES = ((10, 0), (11, 0), (12, 0))  # (identity, image index): its first 3 test images
CELEBA_SQUARE = (0, 30, 178, 208)  # the region the CelebA-layout datasets cut (SPEC 5)


def regressor_config(root: Path, embedding_run: Path) -> Path:
    config = {
        "n_gpu": 1, "batch_size": 4, "finetune_from": str(embedding_run),
        "cache_descriptors": True, "warp_val": False,
        "arch": {"type": "SmallNet", "args": {"num_output_channels": CHANNELS}},
        "dataset": {"type": "SyntheticFaces",
                    "args": {"root": str(root / "data" / "regressor"), "imwidth": IMWIDTH,
                             "crop": CROP, "use_keypoints": True, "do_augmentations": False,
                             **REGRESSOR_DATA}},
        "keypoint_regressor": {"type": "IntermediateKeypointPredictor",
                               "args": {"num_annotated_points": 5, "num_intermediate_points": 6,
                                        "softargmax_mul": 100.0}},
        "optimizer": {"type": "Adam", "args": {"lr": 1e-2, "weight_decay": 5e-4, "amsgrad": True}},
        "loss": "regression_loss", "loss_args": {"alpha": 10.0},
        "metrics": ["inter_ocular_error"], "visualizations": [],
        "trainer": {"epochs": 30, "save_dir": str(root / "saved"), "save_period": 30,
                    "verbosity": 1, "monitor": "off", "tensorboardX": False,
                    "log_dir": str(root / "saved")},
    }
    path = root / "configs" / "tiny-keypoints" / "regressor.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny embedding (train.py, 2 epochs) and a regressor on it (30 epochs), with the
    regressor's own test %IOD as test_keypoints.py reports it (keypoints.json)."""
    root = tmp_path_factory.mktemp("predict")
    embedding_config = write_tiny_config(root, epochs=2)
    assert train.main(["--config", str(embedding_config), "--device", "cpu",
                       "--disable_workers"]) == 0
    embedding_run = only_run_folder(root)
    assert train.main(["--config", str(regressor_config(root, embedding_run)), "--device",
                       "cpu", "--disable_workers"]) == 0
    (regressor_run,) = (root / "saved" / "models" / "tiny-keypoints-regressor").iterdir()
    report = json.loads((regressor_run / "keypoints.json").read_text())
    return SimpleNamespace(root=root, embedding=embedding_run / "checkpoint-epoch2.pth",
                           regressor=regressor_run / "checkpoint-epoch30.pth",
                           test_iod=report["inter_ocular_error"],
                           embedding_data=root / "data" / "synthetic",
                           regressor_data=root / "data" / "regressor")


def read_rows(path: Path):
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


def iod_percent(pred: np.ndarray, known: np.ndarray) -> float:
    """100 * mean point distance / distance of the two eyes (points 0 and 1), SPEC 3."""
    return float(100 * np.linalg.norm(pred - known, axis=1).mean()
                 / np.linalg.norm(known[0] - known[1]))


def test_frame_mapping_by_hand():
    geometry = Geometry(imwidth=64, crop=8)  # the network sees 48 x 48
    boxes = torch.tensor([[10.0, 20.0, 110.0, 220.0]])  # 100 wide, 200 high
    normalized = torch.tensor([[[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0]]])
    # -1 -> input pixel 0 -> 8 in the 64 square -> 8 * 100 / 64 + 10 = 22.5 (y: 8 * 200/64 + 20)
    # +1 -> 47 -> 55 -> 55 * 1.5625 + 10 = 95.9375, 55 * 3.125 + 20 = 191.875
    #  0 -> 23.5 -> 31.5 -> 59.21875, 118.4375
    expected = torch.tensor([[[22.5, 45.0], [95.9375, 191.875], [59.21875, 118.4375]]],
                            dtype=torch.float64)
    torch.testing.assert_close(normalized_to_original(normalized, boxes, geometry), expected,
                               rtol=0, atol=1e-12)
    pixels = torch.tensor([[[0.0, 0.0], [12.0, 40.0]]])
    expected = torch.tensor([[[22.5, 45.0], [(12 + 8) * 100 / 64 + 10, (40 + 8) * 200 / 64 + 20]]],
                            dtype=torch.float64)
    torch.testing.assert_close(region_to_original(pixels, boxes, geometry), expected,
                               rtol=0, atol=1e-12)


def test_default_region_is_the_whole_upright_image(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (30, 50, 3), dtype=np.uint8)  # 50 x 30
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(pixels).transpose(Image.Transpose.ROTATE_90).save(tmp_path / "turned.png",
                                                                       exif=exif)
    Image.fromarray(pixels).save(tmp_path / "plain.png")
    regions = FaceRegions([(tmp_path / "plain.png", None), (tmp_path / "turned.png", None),
                           (tmp_path / "plain.png", (5, -4, 25, 36))], IMWIDTH, CROP)
    resized = Image.fromarray(pixels).resize((IMWIDTH, IMWIDTH), Image.BILINEAR)
    for index in (0, 1):
        item = regions[index]
        assert item["box"].tolist() == [0, 0, 50, 30]  # the upright frame
        assert np.array_equal(item["data"].permute(1, 2, 0).numpy(), np.asarray(resized))
    padded = np.zeros((40, 20, 3), np.uint8)  # rows -4..35, columns 5..24: zeros outside
    padded[4:34] = pixels[:, 5:25]
    expected = Image.fromarray(padded).resize((IMWIDTH, IMWIDTH), Image.BILINEAR)
    assert np.array_equal(regions[2]["data"].permute(1, 2, 0).numpy(), np.asarray(expected))


def test_inputs_and_landmarks_equal_the_training_pipeline(trained):
    """The dataset's own item, through the validation pipeline without a warp, and the
    regressor on it, mapped back by SPEC section 5 (y - 30, * imwidth / 178) inverted."""
    dataset = SyntheticFaces(root=trained.regressor_data, train=False, imwidth=IMWIDTH, crop=CROP,
                             use_keypoints=True, do_augmentations=False, **REGRESSOR_DATA)
    count = 4
    items = [dataset[i] for i in range(count)]
    batch = {"data": torch.stack([i["data"] for i in items]),
             "keypts": torch.stack([i["keypts"] for i in items]), "index": torch.arange(count)}
    inputs = KeypointPipeline(None, crop=CROP, eye_indices=(0, 1))(batch, torch.device("cpu"))
    config = torch.load(trained.regressor, weights_only=True)["config"]
    model = build_model(config, "regressor.json")
    load_weights_into(model, trained.regressor, "cpu")
    model.eval()
    with torch.no_grad():
        pred, _ = model(inputs["data"])  # (4, 5, 2) normalized
    side = IMWIDTH - 2 * CROP
    expected = ((pred.double() + 1) / 2 * (side - 1) + CROP) * 178 / IMWIDTH \
        + torch.tensor([0.0, 30.0], dtype=torch.float64)
    regions = FaceRegions([(p, CELEBA_SQUARE) for p in dataset.image_paths[:count]], IMWIDTH, CROP)
    assert torch.equal(regions[1]["data"], items[1]["data"])
    loader = face_loader(regions, count, torch.device("cpu"))
    results = list(predict_landmarks(model, loader, Geometry(IMWIDTH, CROP), torch.device("cpu")))
    landmarks = torch.cat([points for _, _, points in results])
    torch.testing.assert_close(landmarks, expected, rtol=0, atol=1e-9)


def write_test_faces(folder: Path):
    """Three held-out faces as a user would have them, with their true landmarks in the
    upright frame: EXIF-rotated JPEG, greyscale PNG, an enlarged square crop."""
    faces = [synthetic_face(REGRESSOR_DATA["seed"], identity, index)
             for identity, index in TEST_FACES]
    exif_image, exif_known = faces[0]
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view": stored turned the other way
    exif_image.transpose(Image.Transpose.ROTATE_90).save(folder / "exif.jpg", quality=95,
                                                         exif=exif)
    grey_image, grey_known = faces[1]
    grey_image.convert("L").save(folder / "grey.png")
    square_image, square_known = faces[2]
    side = 311  # the square rows 30..207, enlarged 178 -> 311 (x * 311 / 178, SPEC 5's map)
    square_image.crop(CELEBA_SQUARE).resize((side, side), Image.BICUBIC).save(folder / "large.png")
    known = {"exif.jpg": exif_known, "grey.png": grey_known,
             "large.png": (square_known - np.array([0, 30])) * side / 178}
    (folder / "boxes.csv").write_text("image,x0,y0,x1,y1\n" + "".join(
        f"{name},{','.join(map(str, CELEBA_SQUARE))}\n" for name in ("exif.jpg", "grey.png")))
    return known, [f[1] for f in faces]


def test_landmarks_on_three_user_images_are_within_the_test_error(trained, tmp_path):
    known, originals = write_test_faces(tmp_path)
    held_out = SyntheticFaces(root=trained.regressor_data, train=False, imwidth=IMWIDTH,
                              crop=CROP, use_keypoints=True, **REGRESSOR_DATA)
    assert np.array_equal(held_out.keypoints[:3], np.rint(np.stack(originals)))  # test faces
    with Image.open(tmp_path / "exif.jpg") as stored:  # the same pixels, stored upright
        assert stored.size == (218, 178)
        ImageOps.exif_transpose(stored).save(tmp_path / "upright.png")
    with open(tmp_path / "boxes.csv", "a") as boxes:
        boxes.write(f"upright.png,{','.join(map(str, CELEBA_SQUARE))}\n")
    out = tmp_path / "out"
    images = [str(tmp_path / name) for name in (*known, "upright.png")]
    assert predict.main(["landmarks", "--resume", str(trained.regressor), "--device", "cpu",
                         "--boxes", str(tmp_path / "boxes.csv"), "--output_dir", str(out),
                         *images]) == 0
    rows = read_rows(out / "landmarks.csv")
    turned, upright = ([(r["x"], r["y"]) for r in rows if Path(r["image"]).name == name]
                       for name in ("exif.jpg", "upright.png"))
    assert turned == upright  # read by its EXIF orientation
    errors = {}
    for name, truth in known.items():
        mine = [r for r in rows if Path(r["image"]).name == name]
        pred = np.array([[float(r["x"]), float(r["y"])] for r in mine])
        assert [int(r["point"]) for r in mine] == list(range(5))
        errors[name] = iod_percent(pred, truth)
    summary = json.loads((out / "landmarks.json").read_text())
    sizes = {Path(i["image"]).name: (i["width"], i["height"]) for i in summary["images"]}
    assert sizes == {"exif.jpg": (178, 218), "grey.png": (178, 218), "large.png": (311, 311),
                     "upright.png": (178, 218)}
    for name, size in sizes.items():  # overlays drawn on the upright image
        assert Image.open(out / f"{Path(name).stem}_landmarks.png").size == size
    # Three faces against six: the mean of 3 per-image errors, from the same distribution
    # as the test split's, within 1.5 x its mean; a mistake of frame (no EXIF turn, no
    # crop or box offset) moves every point by 10-100 % of the inter-ocular distance.
    assert np.mean(list(errors.values())) <= 1.5 * trained.test_iod, (errors, trained.test_iod)


def two_image_split(trained):
    """The first two held-out images of the embedding's data, as the matching evaluation
    reads them (a dataset of two images: one pair (A, B))."""
    dataset = SyntheticFaces(root=trained.embedding_data, train=False, imwidth=IMWIDTH,
                             crop=CROP, use_keypoints=True, do_augmentations=False, **TINY_DATA)

    class TwoImages(torch.utils.data.Dataset):
        imwidth = dataset.imwidth

        def __len__(self):
            return 2

        def __getitem__(self, index):
            return dataset[index]

    return TwoImages()


def save_padded(image: torch.Tensor, path: Path) -> None:
    """A (3, 24, 24) warped image (0..255) inside a black 32 x 32 canvas: predict.py's
    whole-image region resized 32 -> 32 (unchanged) less the crop of 4 gives it back."""
    canvas = np.zeros((IMWIDTH, IMWIDTH, 3), np.uint8)
    canvas[CROP:IMWIDTH - CROP, CROP:IMWIDTH - CROP] = image.permute(1, 2, 0).numpy()
    Image.fromarray(canvas).save(path)


def test_match_agrees_with_the_matching_evaluation_on_the_same_pair(trained, tmp_path):
    pairs = two_image_split(trained)
    network = SmallNet(num_output_channels=CHANNELS)
    load_weights_into(network, trained.embedding, "cpu")
    reported = evaluate_matching(network, pairs, torch.device("cpu"), CROP)
    items = [pairs[0], pairs[1]]  # the same warps: seed 0, then one batch of (A, B)
    torch.manual_seed(0)
    pair = Warper(**MATCHING_WARPER_ARGS)(torch.stack([i["data"] for i in items]),
                                          keypts=torch.stack([i["keypts"] for i in items]),
                                          crop=CROP)
    save_padded(pair.first[0], tmp_path / "a_first.png")
    save_padded(pair.second[0], tmp_path / "a_second.png")
    save_padded(pair.second[1], tmp_path / "b_second.png")
    source = pair.keypts_first[0] + CROP  # pixels of the saved 32 x 32 image
    points = ";".join(f"{float(x)!r},{float(y)!r}" for x, y in source.tolist())
    out = tmp_path / "out"
    assert predict.main(["match", "--resume", str(trained.embedding), "--device", "cpu",
                         "--source", str(tmp_path / "a_first.png"), "--points", points,
                         "--output_dir", str(out), str(tmp_path / "a_second.png"),
                         str(tmp_path / "b_second.png")]) == 0
    rows = read_rows(out / "matches.csv")
    scale = REFERENCE_WIDTH / (IMWIDTH - 2 * CROP)  # the 70-pixel frame of SPEC section 6
    for name, truth, key in (("a_second.png", pair.keypts_second[0], "same_identity"),
                             ("b_second.png", pair.keypts_second[1], "different_identity")):
        mine = [r for r in rows if Path(r["target"]).name == name]
        matched = torch.tensor([[float(r["x"]), float(r["y"])] for r in mine]) - CROP
        error = ((matched - truth).norm(dim=-1) * scale).mean().item()
        # the same descriptors and arg-max on the same pixels: equal up to float rounding
        assert error == pytest.approx(reported[key], abs=1e-4), (name, error, reported)
    for name in ("a_first_to_a_second_matches.png", "a_first_to_b_second_matches.png"):
        assert Image.open(out / name).size == (2 * IMWIDTH, IMWIDTH)


def test_embed_draws_the_sphere_colour_map_also_from_a_regressor(trained, tmp_path):
    face = synthetic_face(1, 0, 0)[0]
    face.save(tmp_path / "face.png")
    square = face.crop(CELEBA_SQUARE).resize((IMWIDTH, IMWIDTH), Image.BILINEAR)
    outputs = {}
    for kind in ("embedding", "regressor"):
        out = tmp_path / kind
        assert predict.main(["embed", "--resume", str(getattr(trained, kind)), "--device", "cpu",
                             "--box", ",".join(map(str, CELEBA_SQUARE)), "--output_dir",
                             str(out), str(tmp_path / "face.png")]) == 0
        outputs[kind] = np.asarray(Image.open(out / "face_embedding.png"))
    assert np.array_equal(outputs["embedding"], outputs["regressor"])  # the same frozen part
    side, factor = IMWIDTH - 2 * CROP, -(-256 // (IMWIDTH - 2 * CROP))
    assert outputs["embedding"].shape == (side * factor, 2 * side * factor, 3)
    network = SmallNet(num_output_channels=CHANNELS)
    load_weights_into(network, trained.embedding, "cpu")
    network.eval()
    pixels = torch.from_numpy(np.array(square)).permute(2, 0, 1).float()[:, CROP:-CROP, CROP:-CROP]
    mean = torch.tensor([0.5084, 0.4224, 0.3769]).view(3, 1, 1)  # SPEC section 4
    std = torch.tensor([0.2599, 0.2371, 0.2323]).view(3, 1, 1)
    with torch.no_grad():
        feats = network(((pixels / 255 - mean) / std)[None])[0][0, :3]  # (3, 12, 12)
    colours = (feats / feats.norm(dim=0, keepdim=True) + 1) / 2
    expected = (colours.repeat_interleave(side // feats.shape[-1], 1)
                .repeat_interleave(side // feats.shape[-1], 2) * 255).round()
    drawn = torch.from_numpy(outputs["embedding"][::factor, side * factor::factor].copy())
    assert (drawn.permute(2, 0, 1).float() - expected).abs().max() <= 1


def logged_errors(caplog):
    return [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]


def test_unreadable_image_is_one_line_naming_it(trained, tmp_path, caplog):
    good = tmp_path / "good.png"
    synthetic_face(1, 0, 0)[0].save(good)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"this is not a JPEG")
    status = predict.main(["landmarks", "--resume", str(trained.regressor), "--device", "cpu",
                           "--output_dir", str(tmp_path / "out"), str(good), str(bad)])
    assert status == 2
    (message,) = logged_errors(caplog)
    assert str(bad) in message and "cannot be decoded" in message and "\n" not in message


def test_embedding_given_to_landmarks_says_to_use_match_or_a_regressor(trained, tmp_path,
                                                                        caplog):
    image = tmp_path / "face.png"
    synthetic_face(1, 0, 0)[0].save(image)
    status = predict.main(["landmarks", "--resume", str(trained.embedding), "--device", "cpu",
                           "--output_dir", str(tmp_path / "out"), str(image)])
    assert status == 2
    (message,) = logged_errors(caplog)
    assert "is an embedding checkpoint" in message and "predict.py match" in message
    assert "regressor checkpoint" in message and "\n" not in message
    assert not (tmp_path / "out").exists()


def test_bad_boxes_row_and_source_point_outside_are_one_line(trained, tmp_path, caplog):
    image = tmp_path / "face.png"
    Image.new("RGB", (40, 40)).save(image)
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("image,x0,y0,x1,y1\nface.png,1,2,30\n")
    assert predict.main(["landmarks", "--resume", str(trained.regressor), "--boxes", str(boxes),
                         "--output_dir", str(tmp_path / "out"), str(image)]) == 2
    # 40 px resized to 32, less 4 on each side: input pixels -0.5..23.5 are original
    # (-0.5 + 4) * 40 / 32 = 4.375 to (23.5 + 4) * 40 / 32 = 34.375
    assert predict.main(["match", "--resume", str(trained.embedding), "--device", "cpu",
                         "--source", str(image), "--points", "20,20;4.3,20", "--output_dir",
                         str(tmp_path / "out"), str(image)]) == 2
    first, second = logged_errors(caplog)
    assert f"{boxes}:2: expected 5 fields image,x0,y0,x1,y1, found 4" in first
    assert "point 2 (4.3, 20)" in second and "x 4.4..34.4" in second
    assert "\n" not in first + second

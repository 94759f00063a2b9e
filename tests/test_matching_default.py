"""``test_matching.py`` without ``--eval_data`` evaluates the MAFL test set (MAFLAligned,
test split) whatever the config's dataset, with the config's root, imwidth and crop, as
the original script did; ``--eval_data`` picks another dataset."""
import json
import logging

import torch

import test_matching
from data_loader.celeba import MAFLAligned
from data_loader.warper import Warper
from trainer.matching import MATCHING_WARPER_ARGS

BASE_ARGS = ["--device", "cpu"]


def with_dataset(path, name, dataset_type, **args):
    config = json.loads(path.read_text())
    config["dataset"]["type"] = dataset_type
    config["dataset"]["args"] = {k: v for k, v in config["dataset"]["args"].items()
                                 if k in ("root", "imwidth", "crop")} | args
    out = path.with_name(f"{name}.json")
    out.write_text(json.dumps(config))
    return out


def untrained_matching(config, out, *extra):
    """The seeded untrained network's matching result (no --resume: fast, deterministic)."""
    assert test_matching.main(["--config", str(config), *BASE_ARGS, "--output_dir", str(out),
                               *extra]) == 0
    return json.loads((out / "matching.json").read_text())


def test_the_default_is_the_mafl_test_set_whatever_the_config_dataset(tmp_path, tiny_config,
                                                                      caplog):
    caplog.set_level(logging.INFO)
    synthetic = tiny_config(tmp_path, epochs=1)  # SyntheticFaces: writes a CelebA layout
    by_default = untrained_matching(synthetic, tmp_path / "default")
    # An ImageFolder config on the same root: its own test split has no keypoints; the
    # default must read the MAFL test list of that root instead.
    folder = with_dataset(synthetic, "folder", "ImageFolder", val_fraction=0.5)
    from_folder = untrained_matching(folder, tmp_path / "folder")
    explicit = with_dataset(synthetic, "mafl", "MAFLAligned")
    from_mafl = untrained_matching(explicit, tmp_path / "mafl", "--eval_data", "MAFLAligned")
    assert by_default["num_image_pairs"] == 3  # the 6 MAFL test images of TINY_DATA
    for key in ("same_identity", "different_identity"):
        assert by_default[key] == from_folder[key] == from_mafl[key]
    assert from_folder["dataset"] == "MAFLAligned"
    messages = [r.getMessage() for r in caplog.records
                if r.getMessage().startswith("matching evaluation on")]
    assert len(messages) == 3
    assert "MAFL test split" in messages[0] and "default of test_matching.py" in messages[0]
    assert messages[1].startswith("matching evaluation on MAFLAligned, test split, root")
    assert "dataset.args val_fraction of ImageFolder do not apply" in messages[1]


def test_a_root_without_mafl_lists_says_to_pass_eval_data(tmp_path, tiny_config, caplog, capsys):
    (tmp_path / "faces").mkdir()
    config = with_dataset(tiny_config(tmp_path, epochs=1), "folder", "ImageFolder",
                          root=str(tmp_path / "faces"))
    assert test_matching.main(["--config", str(config), *BASE_ARGS]) == 2
    (message,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert str(tmp_path / "faces") in message and "not found" in message
    # the remedy that fits own data comes first, before the MAFL fetch hint
    assert message.startswith("error: MAFLAligned is evaluated (")
    assert "pass --eval_data ImageFolder to evaluate the config's own dataset; " in message
    assert message.index("--eval_data") < message.index("sync_datasets")
    assert "\n" not in message and "Traceback" not in capsys.readouterr().err


def test_an_untrained_evaluation_goes_under_the_save_dir_per_experiment(tmp_path, tiny_config,
                                                                        monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may land in the working directory's saved/
    config = tiny_config(tmp_path / "run")
    assert test_matching.main(["--config", str(config), "--device", "cpu"]) == 0
    written = tmp_path / "run" / "saved" / "untrained" / "tiny-smallnet" / "matching.json"
    assert json.loads(written.read_text())["checkpoint"] is None
    assert not (tmp_path / "saved").exists()


def test_the_contrastive_protocol_option_seeds_1_and_scales_by_69_over_frame_minus_1(
        tmp_path, tiny_config):
    """``--protocol contrastive``: the copy-coordinates baseline of the MAFL test pairs,
    warped by hand with seed 1 and scaled by (70 - 1) / (24 - 1) (SPEC-contrastive
    section 5 in the tiny 24-px frame)."""
    config = tiny_config(tmp_path, epochs=1)
    result = untrained_matching(config, tmp_path / "contrastive", "--protocol", "contrastive")
    assert result["protocol"] == "contrastive"
    args = json.loads(config.read_text())["dataset"]["args"]
    dataset = MAFLAligned(root=args["root"], train=False, imwidth=32, crop=4,
                          use_keypoints=True, do_augmentations=False)
    items = [dataset[i] for i in range(len(dataset))]  # 6 images: one loader batch
    torch.manual_seed(1)
    pair = Warper(**MATCHING_WARPER_ARGS)(torch.stack([i["data"] for i in items]).float(),
                                          keypts=torch.stack([i["keypts"] for i in items]),
                                          crop=4)
    source = pair.keypts_first[0::2]  # images A = 0, 2, 4; B = 1, 3, 5
    for key, target in (("same_identity", pair.keypts_second[0::2]),
                        ("different_identity", pair.keypts_second[1::2])):
        expected = ((source - target).norm(dim=-1) * 69 / 23).mean().item()
        assert abs(result["copy_baseline"][key] - expected) < 1e-5, key

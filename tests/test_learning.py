"""A short training run on the synthetic faces must learn: its matching errors beat the
untrained network's, and its different-identity error beats the copy-coordinates baseline
(predicting each target keypoint at the source keypoint's pixel), on the same seeded pairs.

A match is always a feature cell, so comparing with the grid limit says nothing about
learning; these two references do.
"""
import json

import test_matching
import train

SETTINGS = dict(imwidth=48, crop=6, num_train_identities=32, images_per_identity=4,
                num_test_identities=4, num_mafl_test=16)


def test_short_training_beats_the_untrained_network_and_the_copy_baseline(tmp_path, tiny_config,
                                                                           run_folder):
    config_path = tiny_config(tmp_path, epochs=8)
    config = json.loads(config_path.read_text())
    config["dataset"]["args"].update(SETTINGS)
    config["batch_size"] = 16
    config["lr_scheduler"]["args"]["milestones"] = [8]
    config["visualizations"] = []
    config_path.write_text(json.dumps(config))
    assert train.main(["--config", str(config_path), "--device", "cpu", "--disable_workers"]) == 0
    trained = json.loads((run_folder(tmp_path) / "matching.json").read_text())
    untrained_dir = tmp_path / "untrained"
    assert test_matching.main(["--config", str(config_path), "--device", "cpu",
                               "--output_dir", str(untrained_dir)]) == 0
    untrained = json.loads((untrained_dir / "matching.json").read_text())
    assert trained["num_image_pairs"] == untrained["num_image_pairs"] == 8
    assert trained["copy_baseline"] == untrained["copy_baseline"]  # the same pairs
    for key in ("same_identity", "different_identity"):
        assert trained[key] < untrained[key] - 5, (key, trained[key], untrained[key])
    copy_different = trained["copy_baseline"]["different_identity"]
    assert trained["different_identity"] < copy_different - 1, (trained, copy_different)

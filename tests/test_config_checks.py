"""Config mistakes end in one line naming the file, key and fix (exit 2), in --dry-run and
in the real run alike, before anything is created; ignored keys are logged once; a
config ``seed`` is the run's seed unless ``--seeds`` is given."""
import json
import logging

import pytest
import torch

import train

BASE_ARGS = ["--device", "cpu", "--disable_workers"]


def edit_config(path, **changes):
    """Rewrite the JSON config at ``path`` with dotted-key ``changes`` (None deletes)."""
    config = json.loads(path.read_text())
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = config
        for key in parents:
            node = node[key]
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    path.write_text(json.dumps(config))
    return path


def error_lines(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def assert_one_line_error(caplog, capsys, *fragments):
    (message,) = error_lines(caplog)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err


# (key path with "__" for dots, value, fragments the one error line must hold)
MISTAKES = [
    ("trainer__monitor", "min", ['trainer.monitor is "min"', '"min val_loss"']),
    ("trainer__monitor", "min val_los", ["trainer.monitor names 'val_los'", "val_loss"]),
    ("trainer__epochs", "3", ['trainer.epochs is "3"', "positive integer"]),
    ("trainer__epochs", 0, ["trainer.epochs is 0"]),
    ("trainer__save_period", 0, ["trainer.save_period is 0"]),
    ("trainer__early_stop", -1, ["trainer.early_stop is -1"]),
    ("trainer__verbosity", 5, ["trainer.verbosity is 5", "0, 1 or 2"]),
    ("trainer__tensorboardX", "yes", ['trainer.tensorboardX is "yes"', "true or false"]),
    ("trainer__log_step", 10, ["unknown key 'trainer.log_step'"]),
    ("batch_size", 0, ["batch_size is 0"]),
    ("batch_size", 2.5, ["batch_size is 2.5"]),
    ("n_gpu", -1, ["n_gpu is -1"]),
    ("seed", "7", ['seed is "7"']),
    ("matching", {}, ["unknown config key 'matching'"]),
    ("optimizer__args__lr", "0.01", ['optimizer.args.lr is "0.01"', "positive number"]),
    ("optimizer__args__lr", -1, ["optimizer.args.lr is -1"]),
    ("optimizer__args__betas", [0.9], ["optimizer.args.betas is [0.9]"]),
    ("optimizer__args__momentum", 0.9, ["optimizer.args.momentum is not an argument of Adam"]),
    ("lr_scheduler__args__milestones", 5, ["lr_scheduler.args.milestones is 5"]),
    ("lr_scheduler__args__milestones", [1.5], ["lr_scheduler.args.milestones is [1.5]"]),
    ("lr_scheduler__args__gamma", "x", ['lr_scheduler.args.gamma is "x"']),
    ("lr_scheduler__arg", {}, ["unknown key 'lr_scheduler.arg'"]),
    ("dataset__args__crop", 16, ["dataset.args.imwidth 32 must exceed twice dataset.args.crop 16"]),
    ("dataset__args__val_split", "test", ['dataset.args.val_split is "test"']),
    ("dataset__args__texture_strength", -1, ["dataset.args.texture_strength is -1",
                                              "a finite number >= 0"]),
    ("dataset__args__texture_strength", "2", ['dataset.args.texture_strength is "2"']),
    ("warper__args__rotsd", -1, ["warper Warper: rotsd must be a non-negative number"]),
    ("loss_args__pow", "half", ['loss_args.pow is "half"']),
    ("arch__args__num_output_channels", "8", ['arch.args.num_output_channels is "8"']),
]


@pytest.mark.parametrize("key,value,fragments", MISTAKES, ids=lambda v: str(v)[:30])
@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "run"])
def test_config_mistakes_end_in_one_line_before_anything_is_created(
        tmp_path, tiny_config, caplog, capsys, key, value, fragments, dry_run):
    config = edit_config(tiny_config(tmp_path, epochs=1), **{key: value})
    args = ["--config", str(config), *BASE_ARGS] + (["--dry-run"] if dry_run else [])
    assert train.main(args) == 2
    assert_one_line_error(caplog, capsys, "smallnet.json: ", *fragments)
    assert not (tmp_path / "saved").exists()
    assert not (tmp_path / "data").exists()  # stopped before reading (generating) data


def test_batch_larger_than_the_training_set_is_refused_before_the_run_folder(
        tmp_path, tiny_config, caplog, capsys):
    config = edit_config(tiny_config(tmp_path, epochs=1), batch_size=11)  # 10 training images
    assert train.main(["--config", str(config), *BASE_ARGS]) == 2
    assert_one_line_error(caplog, capsys, "batch_size 11 exceeds the 10 training images")
    assert not (tmp_path / "saved").exists()


def test_ignored_keys_of_the_original_are_logged_once(tmp_path, tiny_config, caplog):
    caplog.set_level(logging.INFO)
    config = edit_config(tiny_config(tmp_path, epochs=1), vis=0, fold_corr=0, profile=0,
                         disable_workers=0)
    assert train.main(["--config", str(config), *BASE_ARGS, "--seeds", "0,1"]) == 0
    lines = [r.getMessage() for r in caplog.records if "ignoring config keys" in r.getMessage()]
    assert len(lines) == 1
    for key, flag in [("fold_corr", "-f/--folded_correlation"), ("profile", "-p/--profile"),
                      ("vis", "--vis"), ("disable_workers", "--disable_workers")]:
        assert f"{key} (the command line decides ({flag})" in lines[0]


def final_weights(tmp_path):
    (run,) = (tmp_path / "saved" / "models" / "tiny-smallnet").iterdir()
    state = torch.load(run / "checkpoint-epoch1.pth", weights_only=True)
    return state, json.loads((run / "config.json").read_text())


@pytest.mark.parametrize("config_seed,cli,expected_seed", [(7, [], 7), (7, ["--seeds", "3"], 3)])
def test_config_seed_is_the_default_and_the_command_line_wins(
        tmp_path, tiny_config, caplog, config_seed, cli, expected_seed):
    caplog.set_level(logging.INFO)
    with_key = edit_config(tiny_config(tmp_path / "key", epochs=1), seed=config_seed)
    assert train.main(["--config", str(with_key), *BASE_ARGS, *cli]) == 0
    from_key, recorded = final_weights(tmp_path / "key")
    plain = tiny_config(tmp_path / "cli", epochs=1)
    assert train.main(["--config", str(plain), *BASE_ARGS, "--seeds", str(expected_seed)]) == 0
    from_cli, _ = final_weights(tmp_path / "cli")
    for name, value in from_cli["state_dict"].items():
        assert torch.equal(value, from_key["state_dict"][name]), name
    assert recorded["seed"] == expected_seed and from_key["config"]["seed"] == expected_seed
    source = "from --seeds" if cli else "from the config's seed key"
    assert any(f"{expected_seed}" in r.getMessage() and source in r.getMessage()
               for r in caplog.records)


def test_a_different_config_seed_gives_different_initial_weights(tmp_path, tiny_config):
    seeded = edit_config(tiny_config(tmp_path / "seven", epochs=1), seed=7)
    assert train.main(["--config", str(seeded), *BASE_ARGS]) == 0
    default = tiny_config(tmp_path / "default", epochs=1)
    assert train.main(["--config", str(default), *BASE_ARGS]) == 0
    seven, _ = final_weights(tmp_path / "seven")
    zero, recorded = final_weights(tmp_path / "default")
    assert not torch.equal(seven["state_dict"]["conv1.0.weight"],
                           zero["state_dict"]["conv1.0.weight"])
    assert recorded["seed"] == 0

"""The registries are explicit tables, complete once their own module is imported; a
dotted name is a plug-in imported from its module; the keypoint trainer calls each kind
of visualization the way its registry says."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

import train
from base.run_settings import RunContext, TrainingSchedule
from data_loader.registry import DATASETS, WARPERS
from model.registry import KEYPOINT_REGRESSORS, LOSSES, METRICS, NETWORKS
from tests.plugin_example import TinyNet
from tests.run_helpers import BASE_ARGS, one_error, rewrite
from trainer.builders import (find_visualization, resolve_keypoint_visualizations,
                              resolve_visualizations)
from trainer.keypoint_trainer import KeypointTrainer
from base.optim import OPTIMIZERS, SCHEDULERS
from utils.keypoint_visualization import KEYPOINT_VISUALIZATIONS
from utils.registry import ConfigError, Registry, named
from utils.visualization import EMBEDDING_VISUALIZATIONS

ROOT = Path(__file__).resolve().parents[1]

# The names of every registry before the tables were made explicit (written down from
# the decorator-filled registries, with the one visualization registry split in two).
NAMES = {
    ("data_loader.registry", "DATASETS"): [
        "AFLW", "AFLW_MTFL", "CelebAPrunedAligned_MAFLVal", "ImageFolder", "MAFLAligned",
        "PtsLandmarks", "SyntheticFaces", "ThreeHundredW"],
    ("data_loader.registry", "WARPERS"): ["Warper", "WarperSingle"],
    ("model.registry", "NETWORKS"): ["ContrastProjector", "ContrastResNet", "HourglassNet",
                                      "SmallNet"],
    ("model.registry", "LOSSES"): ["dense_correlation_loss", "dense_correlation_loss_dve",
                                   "dense_correlation_loss_single", "regression_loss"],
    ("model.registry", "METRICS"): ["inter_ocular_error"],
    ("model.registry", "KEYPOINT_REGRESSORS"): ["IntermediateKeypointPredictor"],
    ("base.optim", "OPTIMIZERS"): ["Adam", "AdamW", "SGD"],
    ("base.optim", "SCHEDULERS"): ["CosineAnnealingLR", "ExponentialLR", "MultiStepLR",
                                      "StepLR"],
    ("utils.visualization", "EMBEDDING_VISUALIZATIONS"): [
        "sphere_colormap", "sphere_norm_scatter3d", "sphere_rand_proj_colormap",
        "sphere_scatter3d"],
    ("utils.keypoint_visualization", "KEYPOINT_VISUALIZATIONS"): ["keypoints_intermediate"],
}
REGISTRIES = {"DATASETS": DATASETS, "WARPERS": WARPERS, "NETWORKS": NETWORKS, "LOSSES": LOSSES,
              "METRICS": METRICS, "KEYPOINT_REGRESSORS": KEYPOINT_REGRESSORS,
              "OPTIMIZERS": OPTIMIZERS, "SCHEDULERS": SCHEDULERS,
              "EMBEDDING_VISUALIZATIONS": EMBEDDING_VISUALIZATIONS,
              "KEYPOINT_VISUALIZATIONS": KEYPOINT_VISUALIZATIONS}
ALL_VISUALIZATIONS = "keypoints_intermediate, " + ", ".join(
    NAMES[("utils.visualization", "EMBEDDING_VISUALIZATIONS")])


@pytest.mark.parametrize("module,registry", sorted(NAMES), ids=lambda item: item)
def test_each_registry_holds_exactly_the_names_of_before(module, registry):
    assert list(REGISTRIES[registry]) == NAMES[module, registry]
    assert len(REGISTRIES[registry]) == len(NAMES[module, registry])


@pytest.mark.parametrize("module", sorted({module for module, _ in NAMES}))
def test_a_registry_module_alone_in_a_fresh_interpreter_is_complete(module):
    """Nothing but the registry's own module is imported: no package import registers."""
    names = sorted(registry for owner, registry in NAMES if owner == module)
    script = ("import importlib, json, sys; module = importlib.import_module(sys.argv[1]); "
              "print(json.dumps({name: list(getattr(module, name)) for name in sys.argv[2:]}))")
    done = subprocess.run([sys.executable, "-c", script, module, *names], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == {name: NAMES[module, name] for name in names}


def test_a_table_is_fixed_at_construction():
    entries = {"SmallNet": len, "Alpha": abs}
    registry = Registry("arch", "(x)", entries)
    entries["Beta"] = min  # the caller's dict changes; the registry does not
    assert list(registry) == ["Alpha", "SmallNet"] and "Beta" not in registry
    assert registry.get("Alpha") is abs
    assert not hasattr(registry, "register")
    with pytest.raises(ConfigError) as err:
        registry.get("SmallNett")
    assert str(err.value) == "unknown arch 'SmallNett'; valid names: Alpha, SmallNet"


def test_two_entries_of_one_name_are_refused():
    def regression_loss():
        return 0

    assert named(len, abs) == {"len": len, "abs": abs}
    with pytest.raises(ValueError, match="two registry entries are named 'regression_loss'"):
        named(LOSSES.get("regression_loss"), regression_loss)


def test_a_dotted_name_is_imported_from_its_module():
    assert NETWORKS.get("tests.plugin_example.TinyNet") is TinyNet
    assert "tests.plugin_example.TinyNet" not in NETWORKS  # the table itself is unchanged


@pytest.mark.parametrize("name,why", [
    ("tests.no_such_module.Net",
     "cannot import tests.no_such_module (No module named 'tests.no_such_module')"),
    ("tests.plugin_example.Net", "module tests.plugin_example has no attribute Net"),
    ("tests.plugin_example.__doc__", "tests.plugin_example.__doc__ is a str, not a class or "
                                     "function"),
    (".plugin_example.TinyNet",
     "'.plugin_example.TinyNet' is not a module path of the form package.module.Name"),
])
def test_a_dotted_name_that_does_not_import_says_why_in_one_line(name, why):
    with pytest.raises(ConfigError) as err:
        NETWORKS.get(name)
    assert str(err.value) == f"unknown arch '{name}': {why}; valid names: ContrastProjector, ContrastResNet, HourglassNet, SmallNet"


def test_a_network_outside_the_core_passes_the_dry_run(tiny_config, tmp_path):
    """As a user runs it: ``python train.py`` from the repository root."""
    path = rewrite(tiny_config(tmp_path), lambda c: c["arch"].update(
        type="tests.plugin_example.TinyNet", args={"num_output_channels": 5}))
    done = subprocess.run([sys.executable, "train.py", "--config", str(path), "--dry-run",
                           *BASE_ARGS], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    parameters = 3 * 5 * 3 * 3 + 5  # one 3x3 convolution, 3 -> 5 channels, with bias
    assert f"tests.plugin_example.TinyNet with {parameters} trainable parameters" in done.stdout


def test_a_missing_plugin_fails_the_dry_run_in_one_line(tiny_config, tmp_path, caplog, capsys):
    path = rewrite(tiny_config(tmp_path), lambda c: c["arch"].update(
        type="tests.plugin_example.SmallNet"))
    assert train.main(["--config", str(path), "--dry-run", *BASE_ARGS]) == 2
    assert one_error(caplog, capsys) == (
        f"error: {path}: arch.type: unknown arch 'tests.plugin_example.SmallNet': module "
        f"tests.plugin_example has no attribute SmallNet; valid names: ContrastProjector, ContrastResNet, HourglassNet, SmallNet")


def test_a_visualization_name_is_looked_up_in_both_registries():
    assert find_visualization("sphere_colormap") == (
        EMBEDDING_VISUALIZATIONS.get("sphere_colormap"), False)
    assert find_visualization("keypoints_intermediate") == (
        KEYPOINT_VISUALIZATIONS.get("keypoints_intermediate"), True)
    assert find_visualization("tests.plugin_example.TinyNet") == (TinyNet, False)
    for name, why in [("sphere", ""), ("tests.plugin_example.draw",
                                       ": module tests.plugin_example has no attribute draw")]:
        with pytest.raises(ConfigError) as err:
            find_visualization(name)
        assert str(err.value) == (f"unknown visualization '{name}'{why}; "
                                  f"valid names: {ALL_VISUALIZATIONS}")


def test_an_embedding_run_refuses_a_landmark_visualization(tiny_config, tmp_path, caplog,
                                                             capsys):
    path = rewrite(tiny_config(tmp_path),
                   lambda c: c.update(visualizations=["sphere_colormap", "keypoints_intermediate"]))
    assert train.main(["--config", str(path), "--dry-run", *BASE_ARGS]) == 2
    assert one_error(caplog, capsys) == (
        f"error: {path}: visualizations: 'keypoints_intermediate' draws a landmark regressor's "
        f"predictions, which an embedding run (no keypoint_regressor) has not; remove it or use "
        f"one of: sphere_colormap, sphere_norm_scatter3d, sphere_rand_proj_colormap, "
        f"sphere_scatter3d")


class Recorder:
    """Two visualizations, one of each kind, that record what they were called with."""

    def __init__(self):
        self.calls = []

    def embedding(self, writer, images, outputs, tag, step):
        self.calls.append(("embedding", writer, images, outputs, tag, step))

    def landmarks(self, writer, images, outputs, tag, step, keypoints):
        self.calls.append(("landmarks", writer, images, outputs, tag, step, keypoints))


def test_the_keypoint_trainer_calls_each_kind_as_its_registry_says(tmp_path):
    recorder = Recorder()
    embedding = Registry("visualization", "", {"draw_embedding": recorder.embedding})
    keypoint = Registry("keypoint_visualization", "", {"draw_landmarks": recorder.landmarks})
    config = {"visualizations": ["draw_landmarks", "draw_embedding"],
              "keypoint_regressor": {"type": "IntermediateKeypointPredictor", "args": {}}}
    visualizations = resolve_visualizations(config, "x.json", embedding, keypoint)
    keypoint_visualizations = resolve_keypoint_visualizations(config, "x.json", embedding,
                                                              keypoint)
    assert (visualizations, keypoint_visualizations) == ([recorder.embedding],
                                                         [recorder.landmarks])
    writer = object()
    model = nn.Sequential(nn.Conv2d(3, 2, 1), nn.Conv2d(2, 2, 1))
    trainer = KeypointTrainer(
        model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), lr_scheduler=None,
        loss_fn=None, schedule=TrainingSchedule(epochs=1),
        run=RunContext(device=torch.device("cpu"), seed=0, config={}, config_path="x.json",
                       model_dir=tmp_path, writer=writer),
        metrics={}, train_loader=None, valid_loader=None, train_pipeline=None,
        valid_pipeline=None, visualizations=visualizations,
        keypoint_visualizations=keypoint_visualizations)
    images, feats = torch.randn(3, 3, 8, 8), torch.randn(3, 2, 4, 4)
    pred, intermediate, target = torch.rand(3, 5, 2), torch.rand(3, 5, 6, 2), torch.rand(3, 5, 2)
    trainer.visualize(images, (pred, intermediate), feats, target, 7)
    (landmarks,), (embedded,) = ([call for call in recorder.calls if call[0] == kind]
                                 for kind in ("landmarks", "embedding"))
    assert landmarks[1] is writer and landmarks[4:6] == ("valid", 7)
    assert torch.equal(landmarks[2], images) and torch.equal(landmarks[6], target)
    assert torch.equal(landmarks[3][0], pred) and torch.equal(landmarks[3][1], intermediate)
    assert embedded[1] is writer and embedded[4:] == ("valid", 7)
    assert torch.equal(embedded[2], images) and len(embedded[3]) == 1
    assert torch.equal(embedded[3][0], feats)


def test_a_plugin_metric_is_logged_and_monitored_under_its_configured_name(tmp_path,
                                                                          tiny_config):
    """The metric of a dotted name is logged as ``val_<the name as written>``, the key
    ``trainer.monitor`` names, so model_best.pth follows it."""
    name = "tests.plugin_example.mean_prediction_norm"

    def regressor(config):
        config["dataset"]["args"].update(use_keypoints=True, do_augmentations=False)
        config.update(keypoint_regressor={"type": "IntermediateKeypointPredictor", "args": {
            "num_annotated_points": 5, "num_intermediate_points": 6}},
            loss="regression_loss", loss_args={}, metrics=[name], visualizations=[])
        config["trainer"]["monitor"] = f"min val_{name}"
        del config["warper"], config["lr_scheduler"]

    config = rewrite(tiny_config(tmp_path, epochs=2, tensorboard=True), regressor)
    assert train.main(["--config", str(config), *BASE_ARGS]) == 0
    (run,) = (tmp_path / "saved" / "models" / "tiny-smallnet").iterdir()
    assert (run / "model_best.pth").is_file()
    best = torch.load(run / "model_best.pth", weights_only=True)
    (logs,) = (tmp_path / "saved" / "log" / "tiny-smallnet").iterdir()
    events = EventAccumulator(str(logs))
    events.Reload()
    values = [e.value for e in events.Scalars(f"epoch/val_{name}")]
    assert len(values) == 2 and best["monitor_best"] == pytest.approx(min(values))

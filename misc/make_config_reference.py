"""Write docs/config-reference.md from the registries, the constructor signatures and the
key tables of the config checks, so that the reference cannot drift from the code.

Usage: python -m misc.make_config_reference [--output docs/config-reference.md] [--check]

Sources: every registry, each an explicit table of its module (``model.registry``,
``data_loader.registry``, ``base.optim``, ``utils.visualization``,
``utils.keypoint_visualization``); each name's constructor signature (``inspect.signature``)
and the first paragraph of its docstring; the keys of ``utils.config`` (``KNOWN_KEYS``,
``KNOWN_TRAINER_KEYS``, ``REQUIRED_KEYS``, ``IGNORED_KEYS``) and the value checks of
``utils.config_values.SETTINGS`` and ``base.optim.ARGUMENT_CHECKS``. What a key means
is written here, in :data:`KEY_MEANINGS`; a key the config accepts without an entry there
stops the script, so a new key cannot go undocumented. ``tests/test_docs.py`` fails when
the file differs from what this script writes.
"""
import argparse
import inspect
import json
import logging
import sys
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

from data_loader.registry import DATASETS, WARPERS
from model.registry import KEYPOINT_REGRESSORS, LOSSES, METRICS, NETWORKS
from trainer.method import METHODS
from base.optim import ARGUMENT_CHECKS, OPTIMIZERS, SCHEDULERS
from utils.config import IGNORED_KEYS, KNOWN_KEYS, KNOWN_TRAINER_KEYS, REQUIRED_KEYS
from utils.config_values import SETTINGS
from utils.keypoint_visualization import KEYPOINT_VISUALIZATIONS
from utils.registry import Registry
from utils.visualization import EMBEDDING_VISUALIZATIONS

_logger = logging.getLogger(__name__)
OUTPUT = Path(__file__).resolve().parent.parent / "docs" / "config-reference.md"

# (registry, heading, how many leading positional parameters the code supplies, parameter
# names the code supplies): the arguments a config does not set are left out.
REGISTRIES: Tuple[Tuple[Registry, str, int, Tuple[str, ...]], ...] = (
    (NETWORKS, "Networks", 0, ()),
    (DATASETS, "Datasets", 0, ("train",)),
    (WARPERS, "Warpers", 0, ()),
    (LOSSES, "Losses", 2, ()),
    (METRICS, "Metrics", 2, ()),
    (KEYPOINT_REGRESSORS, "Landmark regressors", 1, ()),
    (METHODS, "Methods", 1, ()),
    (OPTIMIZERS, "Optimizers", 1, ()),
    (SCHEDULERS, "Learning-rate schedulers", 1, ()),
    (EMBEDDING_VISUALIZATIONS, "Embedding visualizations", 5, ()),
    (KEYPOINT_VISUALIZATIONS, "Landmark visualizations", 5, ("keypoints",)),
)

# Where each registry's names go in a config, and what the code adds when it calls them.
REGISTRY_NOTES = {
    "arch": "`arch: {\"type\": NAME, \"args\": {...}}`. The descriptor dimension is "
            "`num_output_channels`; a regressor config takes it from here too.",
    "dataset": "`dataset: {\"type\": NAME, \"args\": {...}}`; the code adds `train` (true for "
               "the training split). [datasets.md](datasets.md) describes each type, its files "
               "and its fetch command; [own-data.md](own-data.md) the two types for your own "
               "images.",
    "warper": "`warper: {\"type\": NAME, \"args\": {...}}`; the arguments are the standard "
              "deviations of the random warp (defaults as in the original). `Warper` makes the "
              "image pairs of embedding training; `WarperSingle` is the optional augmentation "
              "of regressor training.",
    "loss": "`loss: NAME` with its arguments in `loss_args: {...}`; the code passes the "
            "network outputs and the batch's warp data first.",
    "metric": "`metrics: [NAME, ...]` (none for embeddings); each is called on the outputs "
              "and the batch.",
    "keypoint_regressor": "`keypoint_regressor: {\"type\": NAME, \"args\": {...}}`; the code "
                          "passes `descriptor_dimension` (`arch.args.num_output_channels`). "
                          "See [landmark-regression.md](landmark-regression.md).",
    "method": "`method: {\"type\": NAME, \"args\": {...}}` (embedding runs; default "
              "`WarpedPairs`, the original's); the code passes the `MethodContext` (datasets, "
              "warper, loss). [adding-a-method.md](adding-a-method.md) shows a new one.",
    "optimizer": "`optimizer: {\"type\": NAME, \"args\": {...}}`; the code passes the parameter "
                 "groups (conv biases in their own group when `bias_lr` is set).",
    "lr_scheduler": "`lr_scheduler: {\"type\": NAME, \"args\": {...}}`; the code passes the "
                    "optimizer and steps it as the original did, `step(epoch - 1)` after each "
                    "1-based epoch ([faithfulness.md](faithfulness.md)).",
    "visualization": "`visualizations: [NAME, ...]`: TensorBoard images of the embedding "
                     "written at validation (with `trainer.tensorboardX`), in embedding and "
                     "regressor runs (there of the frozen embedding), as is a plug-in "
                     "(`package.module.name`); none takes arguments from the config.",
    "keypoint_visualization": "`visualizations: [NAME, ...]`, in the same list as the "
                              "embedding visualizations: TensorBoard figures of a regressor "
                              "run's predictions at validation (with `trainer.tensorboardX`); "
                              "an embedding run refuses them.",
}

# What each accepted key means (hand-written; the accepted values come from the checks).
KEY_MEANINGS = {
    "name": "the experiment folder under `models/` and `log/` (default: `<config folder>-"
            "<config stem>`, e.g. `synthetic-smallnet-16d-dve`); this project's addition",
    "n_gpu": "more than 1, one process: DataParallel over that many CUDA devices (under "
             "torchrun, one device per process and this is not used)",
    "batch_size": "image pairs per batch for an embedding; images per batch for a regressor "
                  "(its validation uses 32); under torchrun the global batch, divided over "
                  "the processes",
    "amp": "mixed precision of the forward pass: \"bf16\", \"fp16\" (with a gradient "
           "scaler) or false; losses stay float32 (docs/scaling.md)",
    "channels_last": "the networks and their input batches in channels-last memory format",
    "compile": "run the embedding network through torch.compile (embedding runs)",
    "sync_batchnorm": "under torchrun on CUDA: batch-norm statistics over all processes",
    "cache_images": "read the dataset from a decoded uint8 image cache, built once "
                    "(misc/build_cache.py builds it ahead)",
    "cache_dir": "where the image caches live (default saved/image_cache)",
    "bias_lr": "learning rate of the conv biases, in their own parameter group",
    "arch": "the network, `{type, args}` (registry below)",
    "dataset": "the dataset, `{type, args}` (registry below)",
    "warper": "the random warp, `{type, args}` (registry below); optional for regressors",
    "optimizer": "`{type, args}` (registry below)",
    "loss": "the loss name (registry below)",
    "loss_args": "the loss's arguments: `pow` (0.5), `normalize_vectors` (true: unit "
                 "descriptors x 20), `fold_corr` (accepted, same values); `alpha` for "
                 "`regression_loss`",
    "metrics": "metric names (none for embeddings)",
    "visualizations": "TensorBoard image names (registry below)",
    "lr_scheduler": "`{type, args}` (registry below); optional",
    "trainer": "the block of `trainer` keys below",
    "finetune_from": "initialise the network (for a regressor: the frozen embedding) from a "
                     "checkpoint file, a folder of runs (the newest run, by its timestamped "
                     "folder name, and in it the highest `checkpoint-epoch<N>.pth`), or a glob "
                     "(`saved/models/x/*/checkpoint-epoch100.pth`, same rule among the matches)",
    "keypoint_regressor": "makes the run a landmark-regressor run, `{type, args}` (registry "
                          "below)",
    "keypoint_regressor_upsample": "upsample the features x2 (bilinear) before the regressor",
    "cache_descriptors": "compute the frozen embedding of train and validation once (eval "
                         "mode, batches of 100) and train on the cached features, on the CPU; "
                         "the memory needed is logged once the first batch gives the feature "
                         "shape, and the run stops before allocating the cache, naming this "
                         "key, if it exceeds 80% of the available RAM",
    "warp_val": "warp validation images too (default true; the shipped configs set false); "
                "validation warps are seeded at 0 every pass",
    "restrict_annos": "train the regressor on N images drawn from the run's seed (logged by "
                      "index and name), tiled floor(len / N) times",
    "seed": "the run's seed when `--seeds` is not given (default 0); this project's addition",
    "method": "the embedding method, `{type, args}` (registry below; default `WarpedPairs`: "
              "warped pairs and the configured `loss`, as the original); this project's "
              "addition",
}
TRAINER_KEY_MEANINGS = {
    "epochs": "number of epochs",
    "save_dir": "root of `models/` (default `saved/`)",
    "log_dir": "root of `log/` (default: `save_dir`)",
    "save_period": "a checkpoint every `save_period` epochs and at the last",
    "verbosity": "log level of the run: 0 warnings only, 1 and 2 information",
    "monitor": "`off`, or a mode and a key the run logs, e.g. `min val_loss`: `model_best.pth` "
               "is saved whenever it improves (whatever `save_period` is)",
    "early_stop": "with `monitor` on, stop after this many epochs without improvement (the "
                  "original never stopped early)",
    "tensorboardX": "write TensorBoard events (losses, learning rate, visualizations)",
    "lr_step": "when the scheduler steps: \"after_epoch\" (DVE's original: after each epoch "
               "from the second on) or \"epoch_start\" (before each epoch, the contrastive "
               "method's code)",
    "num_workers": "data-loader processes (default min(4, cores - 1)); this project's addition",
}

INTRODUCTION = """\
The original DVE schema (pytorch-template style): a JSON object of the keys below, where
`arch`, `dataset`, `warper`, `optimizer`, `lr_scheduler` and `keypoint_regressor` are
`{"type": NAME, "args": {...}}` blocks whose `type` resolves through a registry and whose
`args` are checked against the constructor's signature before anything is built. Any key
can be overridden from the command line with `--set KEY.PATH=VALUE`
([command-line.md](command-line.md)), and `python train.py --config CONFIG --dry-run` runs every
check of this page without reading data.

A key that no original config uses and this project does not define is an error, at the
top level, in `trainer` and inside the blocks (`trainer.log_step`, `trainer.tensorboard`
and `matching` included), as is an argument a constructor does not take:
`configs/x.json: arch.args.num_channels is not an argument of SmallNet; it takes: ...`. A
wrong name fails in one line that lists the valid ones
(`configs/x.json: arch.type: unknown arch 'SmallNett'; valid names: SmallNet`).
A `type`, `loss`, `metrics` or `visualizations` name that is not listed below but has a dot,
`package.module.Name`, is a plug-in: the module is imported as Python imports it (the scripts
run from the repository root find it there) and its `Name` used, so a new network or loss can
live in its own module (`"arch": {"type": "my_method.nets.TinyNet", "args": {...}}`), and a
module that cannot be imported or lacks `Name` fails in one line saying which.
"""


def default_text(value) -> str:
    """A default as it would be written in a JSON config (``True`` -> ``true``)."""
    try:
        return json.dumps(value)
    except TypeError:
        return repr(value)


def config_arguments(constructor: Callable, skip_positional: int,
                     supplied: Sequence[str]) -> List[str]:
    """``name=default`` (or ``name`` where required) of each argument a config can set:
    the signature without ``self``, the first ``skip_positional`` parameters, ``supplied``
    names and ``*args``/``**kwargs``."""
    params = [p for p in inspect.signature(constructor).parameters.values() if p.name != "self"]
    texts = []
    for param in params[skip_positional:]:
        if param.name in supplied or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        texts.append(f"`{param.name}`" if param.default is param.empty
                     else f"`{param.name}={default_text(param.default)}`")
    return texts


def summary(obj: Callable) -> str:
    """The first paragraph of ``obj``'s docstring, on one line (table cells hold no "|")."""
    doc = inspect.getdoc(obj) or ""
    paragraph = doc.split("\n\n")[0]
    return " ".join(paragraph.split()).replace("|", "\\|")


def registry_section(registry: Registry, heading: str, skip_positional: int,
                     supplied: Sequence[str]) -> List[str]:
    """A heading, where the names go, and one table row per registered name."""
    lines = [f"## {heading} (`{registry.role}`)", "", REGISTRY_NOTES[registry.role], "",
             f"Each is called with {registry.called_with}.", "",
             "| name | arguments a config sets (default) | what it is |", "|---|---|---|"]
    for name in registry:
        constructor = registry.get(name)
        arguments = ", ".join(config_arguments(constructor, skip_positional, supplied)) or "-"
        lines.append(f"| `{name}` | {arguments} | {summary(constructor)} |")
    return lines + [""]


def key_table(keys, meanings: Dict[str, str], prefix: str) -> List[str]:
    """One row per key: what it means and the values it accepts (from the checks)."""
    missing = sorted(set(keys) - set(meanings))
    if missing:
        raise KeyError(f"no meaning written for the config keys {missing}; add them to "
                       f"misc/make_config_reference.py")
    lines = ["| key | meaning | accepted values |", "|---|---|---|"]
    for key in sorted(keys):
        check = SETTINGS.get(prefix + key)
        required = " (required)" if not prefix and key in REQUIRED_KEYS else ""
        expected = check[1] if check else "-"
        lines.append(f"| `{prefix}{key}`{required} | {meanings[key]} | {expected} |")
    return lines + [""]


def value_checks() -> List[str]:
    """The argument values checked before building (``dataset.args.*``, ``optimizer.args.*``...)."""
    checks = {key: check for key, check in SETTINGS.items() if ".args." in key}
    checks.update(ARGUMENT_CHECKS)
    lines = ["| key | accepted values |", "|---|---|"]
    lines += [f"| `{key}` | {checks[key][1]} |" for key in sorted(checks)]
    return lines + [""]


def render() -> str:
    """The whole of docs/config-reference.md."""
    lines = ["# Config reference", "",
             "<!-- Generated by `python -m misc.make_config_reference` from the registries, "
             "the constructor signatures and the key tables of the config checks; do not edit "
             "by hand: tests/test_docs.py fails when this file is out of date. -->", "",
             INTRODUCTION,
             "## Top-level keys", ""]
    lines += key_table(KNOWN_KEYS, KEY_MEANINGS, "")
    lines += ["## `trainer` keys", ""]
    lines += key_table(KNOWN_TRAINER_KEYS, TRAINER_KEY_MEANINGS, "trainer.")
    lines += ["## Checked argument values", "",
              "Checked, with the file, key and value named, before anything is built; an "
              "absent key takes the constructor's default.", ""]
    lines += value_checks()
    lines += ["## Keys accepted without effect", "",
              "Keys of the original configs that change nothing here: accepted, and logged "
              "once per run as ignored, with the reason.", "",
              "| key | why |", "|---|---|"]
    lines += [f"| `{key}` | {why} |" for key, why in sorted(IGNORED_KEYS.items())] + [""]
    for registry, heading, skip_positional, supplied in REGISTRIES:
        lines += registry_section(registry, heading, skip_positional, supplied)
    return "\n".join(lines).rstrip("\n") + "\n"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=OUTPUT,
                        help="where to write (default docs/config-reference.md)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if the file differs from what would be written")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    text = render()
    if args.check:
        current = args.output.read_text() if args.output.is_file() else None
        if current != text:
            _logger.error("%s is out of date; run python -m misc.make_config_reference",
                          args.output)
            return 1
        _logger.info("%s is up to date", args.output)
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    _logger.info("wrote %s", args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Writing checkpoints the way the original DVE code saved its released models (a pickled
``parse_config.ConfigParser`` config whose class is importable only while saving), for
the tests of the safe loader, the model zoo and the CLI."""
import argparse
import collections
import pathlib
import sys
import types

import numpy as np
import torch

SMALL_HOURGLASS = dict(planes_conv1=16, planes_block=16, planes_hg=16)


class ConfigParser:
    """Stands for the original ``parse_config.ConfigParser``: paths, a namespace, an
    ordered dict, as the released checkpoints pickle it."""

    def __init__(self):
        self._config = collections.OrderedDict(arch={"type": "SmallNet"}, n_gpu=1)
        self.resume = pathlib.PosixPath("data/models/run/checkpoint-epoch100.pth")
        self.cfg_fname = pathlib.PosixPath("configs/celeba/smallnet-64d-dve.json")
        self.args = argparse.Namespace(config="x.json", device="0", resume=None)
        self.log_levels = {0: 30, 1: 20, 2: 10}


def save_released(path, state_dict, arch="SmallNet", epoch=100, legacy=True, prefix="module."):
    """``torch.save`` a checkpoint the way the original code did, with its config a pickled
    ``parse_config.ConfigParser`` whose module exists only while saving."""
    module = types.ModuleType("parse_config")
    ConfigParser.__module__ = "parse_config"
    module.ConfigParser = ConfigParser
    sys.modules["parse_config"] = module
    try:
        state = {"arch": arch, "epoch": epoch, "optimizer": {"state": {}, "param_groups": []},
                 "monitor_best": np.float64(0.25), "config": ConfigParser(),
                 "state_dict": collections.OrderedDict(
                     (prefix + k, v) for k, v in state_dict.items())}
        torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    finally:
        del sys.modules["parse_config"]
        ConfigParser.__module__ = __name__
    return path

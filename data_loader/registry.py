"""Registries of the data role: datasets and warpers."""
from utils.registry import Registry

DATASETS = Registry("dataset", "the config's dataset.args plus train=bool; returns a "
                    "torch Dataset of dicts with 'data' (3, H, W) uint8 and 'index'")
WARPERS = Registry("warper", "the config's warper.args as keyword arguments")

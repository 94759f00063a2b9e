"""Registries of the data role, explicit tables: datasets and warpers."""
from data_loader.aflw import AFLW
from data_loader.aflw_mtfl import AFLW_MTFL
from data_loader.celeba import CelebAPrunedAligned_MAFLVal, MAFLAligned
from data_loader.image_folder import ImageFolder
from data_loader.pts_landmarks import PtsLandmarks
from data_loader.synthetic_dataset import SyntheticFaces
from data_loader.threehundredw import ThreeHundredW
from data_loader.warper import Warper, WarperSingle
from utils.registry import Registry, named

DATASETS = Registry("dataset", "the config's dataset.args plus train=bool; returns a "
                    "torch Dataset of dicts with 'data' (3, H, W) uint8 and 'index'",
                    named(AFLW, AFLW_MTFL, CelebAPrunedAligned_MAFLVal, ImageFolder, MAFLAligned,
                          PtsLandmarks, SyntheticFaces, ThreeHundredW))
WARPERS = Registry("warper", "the config's warper.args as keyword arguments",
                   named(Warper, WarperSingle))

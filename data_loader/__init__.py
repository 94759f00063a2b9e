"""Datasets, warpers and the on-device batch pipeline; importing this registers them."""
from data_loader import celeba, synthetic_dataset, warper  # noqa: F401  (registration)
from data_loader import aflw, aflw_mtfl, image_folder, pts_landmarks, threehundredw  # noqa: F401
from data_loader.registry import DATASETS, WARPERS

__all__ = ["DATASETS", "WARPERS"]

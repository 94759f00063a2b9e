"""Datasets, warpers and the on-device batch pipeline; their registries are the tables
of ``data_loader.registry``."""

"""Registries of the model role: networks, losses and metrics."""
from utils.registry import Registry

NETWORKS = Registry("arch", "the config's arch.args as keyword arguments; returns an nn.Module "
                    "whose forward(images (B, 3, H, W)) returns a list of feature maps")
LOSSES = Registry("loss", "(outputs, meta, **loss_args); returns a scalar tensor")
METRICS = Registry("metric", "(outputs, meta); returns a float")
KEYPOINT_REGRESSORS = Registry("keypoint_regressor", "(descriptor_dimension, **keypoint_regressor.args)")

"""Networks, losses and metrics; importing this package registers them."""
from model import keypoint_metrics, loss  # noqa: F401  (registers the losses and metrics)
from model.hourglass import HourglassNet
from model.keypoint_predictor import IntermediateKeypointPredictor
from model.registry import KEYPOINT_REGRESSORS, LOSSES, METRICS, NETWORKS
from model.smallnet import SmallNet

__all__ = ["HourglassNet", "IntermediateKeypointPredictor", "KEYPOINT_REGRESSORS", "LOSSES",
           "METRICS", "NETWORKS", "SmallNet"]

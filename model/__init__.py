"""Networks, losses and metrics; their registries are the tables of ``model.registry``."""
from model.hourglass import HourglassNet
from model.keypoint_predictor import IntermediateKeypointPredictor
from model.registry import KEYPOINT_REGRESSORS, LOSSES, METRICS, NETWORKS
from model.smallnet import SmallNet

__all__ = ["HourglassNet", "IntermediateKeypointPredictor", "KEYPOINT_REGRESSORS", "LOSSES",
           "METRICS", "NETWORKS", "SmallNet"]

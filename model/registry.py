"""Registries of the model role, explicit tables: networks, losses, metrics and landmark
regressors."""
from model.hourglass import HourglassNet
from model.hypercolumn import ContrastResNet
from model.keypoint_metrics import inter_ocular_error, regression_loss
from model.keypoint_predictor import IntermediateKeypointPredictor
from model.loss import dense_correlation_loss, dense_correlation_loss_dve
from model.projector import ContrastProjector, dense_correlation_loss_single
from model.smallnet import SmallNet
from utils.registry import Registry, named

NETWORKS = Registry("arch", "the config's arch.args as keyword arguments; returns an nn.Module "
                    "whose forward(images (B, 3, H, W)) returns a list of feature maps",
                    named(ContrastProjector, ContrastResNet, HourglassNet, SmallNet))
LOSSES = Registry("loss", "(outputs, meta, **loss_args); returns a scalar tensor",
                  named(dense_correlation_loss, dense_correlation_loss_dve,
                        dense_correlation_loss_single, regression_loss))
METRICS = Registry("metric", "(outputs, meta); returns a float", named(inter_ocular_error))
KEYPOINT_REGRESSORS = Registry("keypoint_regressor",
                               "(descriptor_dimension, **keypoint_regressor.args)",
                               named(IntermediateKeypointPredictor))

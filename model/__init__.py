"""Networks, losses and metrics; importing this package registers them."""
from model import loss  # noqa: F401  (registers the losses)
from model.registry import LOSSES, METRICS, NETWORKS
from model.smallnet import SmallNet

__all__ = ["LOSSES", "METRICS", "NETWORKS", "SmallNet"]

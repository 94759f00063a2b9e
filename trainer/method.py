"""A landmark-learning method as a unit that plugs into the shared embedding trainer.

A method says how a loader batch becomes network inputs (its views), what the loss of
the network's outputs is, what it does after each optimizer step, and what training
state of its own it keeps (checkpointed with the run and restored by ``--resume``). The
trainer owns everything else: the network, the optimizer and schedule, the epoch loop,
logging, checkpoints, the matching evaluation at the end.

A config picks a method with ``"method": {"type": NAME, "args": {...}}``; without it the
method is :class:`WarpedPairs`, which is how the original's configs (DVE and the plain
equivariance loss, chosen by ``loss``) run. ``docs/adding-a-method.md`` shows a new one.
"""
from data_loader.contrastive_views import ContrastiveViews
from data_loader.device_pipeline import build_pair_pipeline
from data_loader.warper import crop_images
from utils.image_normalization import normalize_images
from trainer.method_interface import EmbeddingMethod, MethodContext
from trainer.moco import MoCo
from utils.registry import Registry, named


class WarpedPairs(EmbeddingMethod):
    """Pairs of one image related by a random warp: the views are the interleaved warped
    pairs with their correspondence grid in ``meta``, and the loss is the config's
    ``loss``, ``dense_correlation_loss_dve`` (DVE) or ``dense_correlation_loss`` (the plain
    equivariance loss of Thewlis et al. 2017). Training batches get the photometric
    augmentation of datasets with ``do_augmentations``.

    Source: SPEC sections 2-4 (warps, pairs, losses)."""

    def __init__(self, context: MethodContext):
        super().__init__(context)
        self.train_pipeline, self.valid_pipeline = (
            build_pair_pipeline(context.warper, context.crop, context.do_augmentations, train)
            for train in (True, False))

    def views(self, batch, device, generator, train):
        pipeline = self.train_pipeline if train else self.valid_pipeline
        return pipeline(batch, device, generator)


class AugmentedViews(EmbeddingMethod):
    """One augmented view of every image, no warp, and the config's ``loss`` on it: the
    projector training of Cheng, Su and Maji (stage 2), whose loss
    (``dense_correlation_loss_single``) compares an image's descriptors with each other.
    Training views go through the contrastive chain (JPEG noise, random resized crop,
    colour jitter, PCA lighting, normalization, then the ``crop``, as the original code
    did although its paper says no augmentation is used); validation views are the
    normalized images with the ``crop`` only.

    Source: SPEC-contrastive sections 2 and 3."""

    def __init__(self, context: MethodContext):
        super().__init__(context)
        self.augment = ContrastiveViews(context.crop)

    def views(self, batch, device, generator, train):
        images = batch["data"].to(device, non_blocking=True).float()  # (B, 3, H, W) 0..255
        if train:
            data = self.augment.augment(images, generator)
        else:
            data = crop_images(normalize_images(images / 255.0), self.context.crop)
        return {"data": data, "meta": {"index": batch["index"]}}


METHODS = Registry("method", "(context: MethodContext, **method.args); returns an "
                   "EmbeddingMethod", named(WarpedPairs, MoCo, AugmentedViews))
DEFAULT_METHOD = "WarpedPairs"

"""``SyntheticFaces``: the embedded default dataset, read through the CelebA code path."""
import logging

from data_loader.celeba import CelebAPrunedAligned_MAFLVal
from data_loader.synthetic import DEFAULT_TEXTURE_STRENGTH, ensure_synthetic_celeba

_logger = logging.getLogger(__name__)


class SyntheticFaces(CelebAPrunedAligned_MAFLVal):
    """Procedurally drawn faces written once to ``root`` in the CelebA layout (178x218
    JPEGs, landmark, partition, identity and MAFL files), then read exactly like
    ``CelebAPrunedAligned_MAFLVal`` (and readable by ``MAFLAligned`` with the same root).

    Args:
        num_train_identities, num_test_identities, images_per_identity, num_val_images,
        num_mafl_train, num_mafl_test, seed: the generated dataset (regenerated when they
            change); train = the split-0 images that are not in MAFL training.
        texture_strength: scales each identity's fine texture (a finite number >= 0; also
            regenerates the data when changed): skin-noise amplitude x s plus a
            mid-frequency component, freckle radius x s**(2/3) and darkness, extra
            freckles and moles above 1, hair strand width x sqrt(s); default 2.0 (chosen by
            measurement, docs/synthetic-faces.md), 1.0 the original texture, 0 none
            (``data_loader.synthetic.texture`` has the table). A copy written before this
            argument existed counts as 1.0, so it is regenerated at the default.
        (other arguments: see ``CelebAPrunedAligned_MAFLVal``; val_split defaults to
        "mafl", the held-out identities used by the matching evaluation.)
    """

    def __init__(self, root="data/synthetic_faces", train=True, imwidth=64, crop=10,
                 use_keypoints=False, do_augmentations=True, use_hq_ims=True,
                 val_split="mafl", val_size=2000, num_train_identities=300,
                 num_test_identities=60, images_per_identity=10, num_val_images=100,
                 num_mafl_train=1000, num_mafl_test=300, seed=0,
                 texture_strength=DEFAULT_TEXTURE_STRENGTH):
        ensure_synthetic_celeba(
            root, num_train_identities=num_train_identities,
            num_test_identities=num_test_identities, images_per_identity=images_per_identity,
            num_val_images=num_val_images, num_mafl_train=num_mafl_train,
            num_mafl_test=num_mafl_test, seed=seed, texture_strength=texture_strength)
        super().__init__(root, train, imwidth, crop, use_keypoints, do_augmentations,
                         use_hq_ims, val_split, val_size)

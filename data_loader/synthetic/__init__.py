"""Procedurally drawn faces in the CelebA on-disk layout: the out-of-the-box dataset.

Every face is drawn with Pillow and numpy, deterministically from a seed, and its five
CelebA landmarks (eye centres, nose tip, mouth corners) are known exactly because they
are the points the features are drawn at. Identities differ in geometry (face shape,
eye spacing, nose length, mouth width, ...) and in fine appearance (skin noise,
freckles and moles at fixed face-relative places, hair colour, style and strands,
glasses, background; the fine texture scaled by ``texture_strength``); each image of an
identity adds a pose (rotation, translation, scale, a little fake yaw), an expression,
lighting and blur or noise.

``write_synthetic_celeba(root)`` writes the layout of SPEC section 5 (images, landmarks,
partition, MAFL lists and ``Anno/identity_CelebA.txt``); ``ensure_synthetic_celeba``
writes it only when ``root`` does not already hold a complete copy made with the same
parameters. ``SyntheticFaces`` (the configs/synthetic/*.json runs) calls it, so those
runs write ``data/synthetic_faces``; ``synthetic_data_remedy`` says so to a reader of
that folder that finds it missing (configs/synthetic-keypoints/*.json).

Public pieces: ``sample_identity`` / ``sample_variation`` (plain-data ``FaceIdentity``
and ``FaceVariation``), ``FaceRenderer(identity).render(variation)``, ``synthetic_face``
(one image as written to disk), ``contact_sheet`` (tiles, with landmarks if given).

Modules: ``identity`` (what is sampled, and the seeding), ``canvas`` (drawing coordinates
and primitives), ``layers`` (an identity's fixed background and hair), ``texture`` (skin
noise, freckles and moles, and how ``texture_strength`` scales the fine texture),
``renderer`` (``FaceRenderer``: the face features and one image), ``camera`` (pose warp
and photometric degradation), ``writer`` (the CelebA layout on disk). docs/synthetic-faces.md
describes the generator.
"""
from data_loader.synthetic.canvas import DEBUG_COLOUR, IMAGE_SIZE
from data_loader.synthetic.identity import (NEUTRAL, FaceIdentity, FaceVariation, identity_rng,
                                            image_rng, sample_identity, sample_variation)
from data_loader.synthetic.renderer import FaceRenderer, contact_sheet, synthetic_face
from data_loader.synthetic.texture import DEFAULT_TEXTURE_STRENGTH
from data_loader.synthetic.writer import (DEFAULT_ROOT, EMBEDDING_CONFIG, FORMAT_VERSION,
                                          LANDMARK_HEADER, MARKER_NAME, OWNER_NAME, TEMP_INFIX,
                                          ensure_synthetic_celeba, is_synthetic_root,
                                          synthetic_data_remedy, write_synthetic_celeba)

__all__ = [
    "write_synthetic_celeba", "ensure_synthetic_celeba", "sample_identity", "sample_variation",
    "FaceRenderer", "synthetic_face", "contact_sheet",
    "FaceIdentity", "FaceVariation", "NEUTRAL", "identity_rng", "image_rng",
    "IMAGE_SIZE", "DEBUG_COLOUR", "FORMAT_VERSION", "MARKER_NAME", "OWNER_NAME", "TEMP_INFIX",
    "LANDMARK_HEADER", "DEFAULT_ROOT", "EMBEDDING_CONFIG", "is_synthetic_root",
    "synthetic_data_remedy", "DEFAULT_TEXTURE_STRENGTH",
]

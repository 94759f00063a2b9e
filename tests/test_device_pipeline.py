"""The on-device pair pipeline: interleaving, crop, normalization, augmentation switch."""
import torch
import torch.nn.functional as F

from data_loader.device_pipeline import PairPipeline, build_pair_pipeline, interleave
from utils.image_normalization import IMAGE_MEAN, IMAGE_STD
from data_loader.warper import Warper

ZERO_WARP = dict(warpsd_all=0, warpsd_subset=0, transsd=0, scalesd=0, rotsd=0)


def test_interleave_orders_pairs():
    first, second = torch.tensor([[1], [3]]), torch.tensor([[2], [4]])
    assert interleave(first, second).flatten().tolist() == [1, 2, 3, 4]


def test_identity_warp_gives_cropped_normalized_images_and_shifted_keypoints():
    images = torch.randint(0, 256, (3, 3, 20, 20), dtype=torch.uint8)
    keypts = torch.tensor([[[5.0, 7.0]], [[10.0, 12.0]], [[4.0, 4.0]]])
    out = PairPipeline(Warper(**ZERO_WARP), crop=3)(
        {"data": images, "keypts": keypts, "index": torch.arange(3)}, torch.device("cpu"))
    mean = torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD).view(1, 3, 1, 1)
    # The original's identity warp, by hand: a float32 linspace grid, bilinear sampling
    # in float (I2 from the float I1), crop, then one truncation to uint8 (SPEC section 2).
    ramp = torch.linspace(-1, 1, 20)
    identity = torch.stack(torch.meshgrid(ramp, ramp, indexing="xy"), dim=-1).expand(3, 20, 20, 2)
    once = F.grid_sample(images.float(), identity, align_corners=True)
    twice = F.grid_sample(once, identity, align_corners=True)
    levels = {name: image[:, :, 3:17, 3:17].to(torch.uint8).float()
              for name, image in (("first", twice), ("second", once))}
    assert out["data"].shape == (6, 3, 14, 14)
    for offset, name in enumerate(("first", "second")):
        expected = (levels[name] / 255 - mean) / std
        assert torch.allclose(out["data"][offset::2], expected, atol=1e-5)
    # an identity warp loses at most one level to the float sampling and the truncation
    assert set((images[:, :, 3:17, 3:17].float() - levels["first"]).unique().tolist()) <= {0.0, 1.0}
    assert torch.allclose(out["meta"]["keypts"][0::2], keypts - 3, atol=1e-4)
    assert out["meta"]["grid"].shape == (3, 14, 14, 2)


def test_photometric_augmentation_only_for_training_and_when_asked():
    assert build_pair_pipeline(Warper(), 2, do_augmentations=True, train=True).augment is not None
    assert build_pair_pipeline(Warper(), 2, do_augmentations=True, train=False).augment is None
    assert build_pair_pipeline(Warper(), 2, do_augmentations=False, train=True).augment is None
    assert build_pair_pipeline(Warper(), 2, do_augmentations=False, train=True).crop == 2

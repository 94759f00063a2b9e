"""One function prepares a pair batch for training and for matching: its ``meta`` carries
the frame the pixels refer to and the crop, so later steps need no dataset attributes."""
import torch

from data_loader.device_pipeline import PairPipeline
from utils.image_normalization import denormalize_images, normalize_images
from data_loader.warper import Warper


def test_the_pair_batch_says_its_frame_and_crop_and_interleaves_keypoints():
    generator = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (3, 3, 40, 36), generator=generator, dtype=torch.uint8)
    keypts = torch.tensor([[[10.0, 12.0], [20.0, 25.0]]]).repeat(3, 1, 1)
    batch = {"data": images, "keypts": keypts, "index": torch.arange(3)}
    out = PairPipeline(Warper(), crop=5)(batch, torch.device("cpu"),
                                         torch.Generator().manual_seed(0))
    assert out["data"].shape == (6, 3, 30, 26)
    assert out["meta"]["frame"] == (30, 26) and out["meta"]["crop"] == 5
    again = Warper()(images.float(), keypts=keypts, crop=5,
                     generator=torch.Generator().manual_seed(0))
    assert torch.equal(out["meta"]["keypts"][0::2], again.keypts_first)
    assert torch.equal(out["meta"]["keypts"][1::2], again.keypts_second)
    assert torch.equal(out["data"][0::2], normalize_images(again.first / 255.0))


def test_denormalize_inverts_normalize():
    images01 = torch.rand(2, 3, 5, 4, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(denormalize_images(normalize_images(images01)), images01, atol=1e-6)
    assert not torch.allclose(normalize_images(images01), images01, atol=1e-2)

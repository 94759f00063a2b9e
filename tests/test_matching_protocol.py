"""The matching protocol's pieces against hand computations."""
import torch
from torch import nn

from data_loader.warper import Warper
from trainer.matching import (CONTRASTIVE_PROTOCOL, MATCHING_WARPER_ARGS, evaluate_matching,
                              grid_limit_prediction, keypoint_cells, match_keypoints)


def test_cells_round_half_to_even_and_clamp():
    keypts = torch.tensor([[[3.0, 5.0], [1.0, 7.0], [-3.0, 40.0]]])  # (1, 3, 2)
    cells = keypoint_cells(keypts, stride=2.0, height=10, width=10)
    # 1.5 -> 2, 2.5 -> 2, 0.5 -> 0, 3.5 -> 4, -1.5 -> clamp 0, 20 -> clamp 9
    assert cells.tolist() == [[2 * 10 + 2, 4 * 10 + 0, 9 * 10 + 0]]


def test_grid_limit_is_the_nearest_cell_pixel():
    keypts = torch.tensor([[[3.2, 4.9], [0.4, 9.1]]])
    predicted = grid_limit_prediction(keypts, stride=2.0, height=8, width=8)
    assert predicted.tolist() == [[[4.0, 4.0], [0.0, 10.0]]]


def test_match_finds_shifted_descriptors():
    generator = torch.Generator().manual_seed(0)
    src = nn.functional.normalize(torch.randn(2, 64, 9, 11, generator=generator), dim=1)
    dst = torch.roll(src, shifts=(2, -3), dims=(2, 3))  # content moves 2 down, 3 left
    keypts = torch.tensor([[[8.0, 6.0], [10.0, 2.0]], [[12.0, 12.0], [6.0, 8.0]]])  # stride 2
    predicted = match_keypoints(src, keypts, dst, stride=2.0)
    cells = keypts / 2
    expected = torch.stack([(cells[..., 0] - 3) % 11, (cells[..., 1] + 2) % 9], -1) * 2
    assert torch.equal(predicted, expected)


class PixelNet(nn.Module):
    """Descriptors = the normalized input pixels at stride 2 (a fixed, untrainable map)."""

    def forward(self, images):
        return [images[:, :, ::2, ::2]]


def _dataset(images, keypts):
    class Tiny(torch.utils.data.Dataset):
        imwidth = images.shape[-1]

        def __len__(self):
            return len(images)

        def __getitem__(self, index):
            return {"data": images[index], "keypts": keypts[index], "index": index}

    return Tiny()


def test_references_equal_an_independent_recomputation():
    generator = torch.Generator().manual_seed(1)
    images = (torch.rand(5, 3, 40, 40, generator=generator) * 255).to(torch.uint8)
    keypts = 8 + 24 * torch.rand(5, 4, 2, generator=generator)
    result = evaluate_matching(PixelNet(), _dataset(images, keypts), torch.device("cpu"),
                               crop=4, images_per_batch=4)
    assert result["num_image_pairs"] == 2  # the odd last image is dropped
    torch.manual_seed(0)  # the protocol's seed; two loader batches: 4 images, then none left
    pair = Warper(**MATCHING_WARPER_ARGS)(images[:4].float(), keypts=keypts[:4], crop=4)
    scale = 70 / (40 - 8)
    src = pair.keypts_first[0::2]
    copy_same = ((src - pair.keypts_second[0::2]).norm(dim=-1) * scale).mean()
    copy_diff = ((src - pair.keypts_second[1::2]).norm(dim=-1) * scale).mean()
    assert abs(result["copy_baseline"]["same_identity"] - copy_same.item()) < 1e-5
    assert abs(result["copy_baseline"]["different_identity"] - copy_diff.item()) < 1e-5
    snapped = torch.clamp(torch.round(pair.keypts_second / 2), 0, 15) * 2
    grid_err = ((snapped - pair.keypts_second).norm(dim=-1) * scale)
    assert abs(result["grid_limit"]["same_identity"] - grid_err[0::2].mean().item()) < 1e-5
    # the matched errors, by a per-keypoint loop over the PixelNet descriptors
    mean = torch.tensor([0.5084, 0.4224, 0.3769]).view(3, 1, 1)
    std = torch.tensor([0.2599, 0.2371, 0.2323]).view(3, 1, 1)

    def descriptors(image):  # (3, 32, 32) levels -> (3, 16, 16), PixelNet by hand
        return ((image / 255 - mean) / std)[:, ::2, ::2]

    for key, offset in (("same_identity", 0), ("different_identity", 1)):
        errors = []
        for source_image in (0, 2):  # image A of each (A, B) pair; its target A or B
            target = source_image + offset
            for k in range(4):
                x, y = pair.keypts_first[source_image, k].tolist()
                cx = min(max(int(round(x / 2)), 0), 15)  # Python's round: half to even too
                cy = min(max(int(round(y / 2)), 0), 15)
                source = descriptors(pair.first[source_image])[:, cy, cx]
                scores = (descriptors(pair.second[target]) * source[:, None, None]).sum(0)
                best = int(scores.flatten().argmax())
                matched = torch.tensor([best % 16 * 2.0, best // 16 * 2.0])
                errors.append((matched - pair.keypts_second[target, k]).norm().item() * scale)
        assert abs(result[key] - sum(errors) / len(errors)) < 1e-4, key


def test_the_protocol_leaves_the_global_generator_alone():
    generator = torch.Generator().manual_seed(2)
    images = (torch.rand(4, 3, 40, 40, generator=generator) * 255).to(torch.uint8)
    keypts = 8 + 24 * torch.rand(4, 3, 2, generator=generator)
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = evaluate_matching(PixelNet(), _dataset(images, keypts), torch.device("cpu"), crop=4)
    assert torch.equal(torch.rand(3), expected_next)  # the caller's stream is untouched
    second = evaluate_matching(PixelNet(), _dataset(images, keypts), torch.device("cpu"), crop=4)
    assert first == second  # seeded: the same warps every time


class FullResolutionPixelNet(nn.Module):
    """Descriptors = the normalized input pixels at stride 1 (the contrastive method
    matches at full image resolution)."""

    def forward(self, images):
        return [images]


def test_the_contrastive_protocol_seeds_1_and_scales_by_69_over_95():
    """SPEC-contrastive section 5 by hand on 136-px images cropped by 20 (a 96-px frame):
    warps of seed 1, the nearest pixel round((n + 1) / 2 * 95) of a normalized n, errors
    between (n + 1) / 2 * 69 of prediction and truth."""
    generator = torch.Generator().manual_seed(3)
    images = (torch.rand(4, 3, 136, 136, generator=generator) * 255).to(torch.uint8)
    keypts = 40 + 56 * torch.rand(4, 5, 2, generator=generator)
    result = evaluate_matching(FullResolutionPixelNet(), _dataset(images, keypts),
                               torch.device("cpu"), crop=20, protocol=CONTRASTIVE_PROTOCOL)
    assert result["protocol"] == "contrastive" and result["num_image_pairs"] == 2
    torch.manual_seed(1)
    pair = Warper(**MATCHING_WARPER_ARGS)(images.float(), keypts=keypts, crop=20)
    mean = torch.tensor([0.5084, 0.4224, 0.3769]).view(3, 1, 1)
    std = torch.tensor([0.2599, 0.2371, 0.2323]).view(3, 1, 1)

    def normalized(pixels):  # pixels of the 96-px frame -> [-1, 1], W - 1 = 95
        return 2 * pixels / 95 - 1

    def to_70px(n):  # the original's compute_pixel_err mapping
        return (n + 1) / 2 * 69

    for key, offset in (("same_identity", 0), ("different_identity", 1)):
        errors, copies = [], []
        for source_image in (0, 2):
            target = source_image + offset
            truth = normalized(pair.keypts_second[target])
            source_descriptors = (pair.first[source_image] / 255 - mean) / std
            target_descriptors = (pair.second[target] / 255 - mean) / std
            for k in range(5):
                n = normalized(pair.keypts_first[source_image, k])
                cx, cy = (min(max(round(((v + 1) / 2 * 95).item()), 0), 95) for v in n)
                scores = (target_descriptors
                          * source_descriptors[:, cy, cx][:, None, None]).sum(0)
                best = int(scores.flatten().argmax())
                predicted = normalized(torch.tensor([best % 96, best // 96], dtype=torch.float))
                errors.append((to_70px(predicted) - to_70px(truth[k])).norm().item())
                copies.append((to_70px(n) - to_70px(truth[k])).norm().item())
        assert abs(result[key] - sum(errors) / len(errors)) < 1e-4, key
        assert abs(result["copy_baseline"][key] - sum(copies) / len(copies)) < 1e-4, key

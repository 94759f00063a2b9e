"""The normalization of network inputs (SPEC section 4: the original's ``Normalize``
after ``ToTensor``): per-channel mean and standard deviation of the [0, 1] RGB images."""
import torch

IMAGE_MEAN = (0.5084, 0.4224, 0.3769)
IMAGE_STD = (0.2599, 0.2371, 0.2323)


def _channel_vector(values, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(1, 3, 1, 1)


def normalize_images(images01: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) in [0, 1] -> normalized with IMAGE_MEAN / IMAGE_STD."""
    mean, std = _channel_vector(IMAGE_MEAN, images01), _channel_vector(IMAGE_STD, images01)
    return (images01 - mean) / std


def denormalize_images(images: torch.Tensor) -> torch.Tensor:
    """Inverse of ``normalize_images`` (for visualization); no clamping."""
    return images * _channel_vector(IMAGE_STD, images) + _channel_vector(IMAGE_MEAN, images)

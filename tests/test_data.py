"""Facts about pfgm_lite/data.py: every toy is a finite (n, 2) float32 cloud of scale ~1, reproducible by seed."""
from __future__ import annotations

import pytest
import torch

from pfgm_lite.data import (
    TOY_DATASETS,
    checkerboard,
    eight_gaussian_modes,
    eight_gaussians,
    ring,
    sample_toy,
    spiral,
    toy_names,
    two_moons,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_each_name_draws_from_its_own_sampler():
    expected = {"8gaussians": eight_gaussians, "checkerboard": checkerboard, "moons": two_moons, "ring": ring,
                "spiral": spiral}
    assert toy_names() == sorted(expected)      # the documented names, sorted for the error message
    for name, sampler in expected.items():   # the same draws as the sampler itself: a swapped entry would differ
        assert torch.equal(sample_toy(name, 300, gen(7)), sampler(300, gen(7)).float()), name


@pytest.mark.parametrize("name", sorted(TOY_DATASETS))
def test_toy_shape_dtype_scale(name):
    x = sample_toy(name, 2000, gen(1))
    assert x.shape == (2000, 2) and x.dtype == torch.float32
    assert torch.isfinite(x).all()
    norms = x.norm(dim=1)
    assert 0.3 < norms.mean().item() < 3.0 and norms.max().item() < 4.0  # "typical scale ~1"
    assert x.std(dim=0).min().item() > 0.2  # a spread-out 2D cloud, not a line or a point


@pytest.mark.parametrize("name", sorted(TOY_DATASETS))
def test_seeds_reproduce(name):
    a, b, c = sample_toy(name, 100, gen(7)), sample_toy(name, 100, gen(7)), sample_toy(name, 100, gen(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_shapes_are_what_they_say():
    ring = sample_toy("ring", 5000, gen(2))
    assert abs(ring.norm(dim=1).mean().item() - 1.5) < 0.01
    board = sample_toy("checkerboard", 5000, gen(3))
    # dark squares only: floor(x) + floor(y) is even on [-2, 2]^2
    assert ((torch.floor(board[:, 0]) + torch.floor(board[:, 1])) % 2 == 0).all()
    assert board.abs().max() <= 2
    # eight Gaussians: every point within 5 std of one of its modes, all modes used
    x = eight_gaussians(4000, gen(4))
    d, idx = torch.cdist(x, eight_gaussian_modes()).min(dim=1)
    assert d.max() < 0.5 and idx.unique().numel() == 8
    # float32 cos, sin and norm: a few roundings of 6e-8, inside assert_close's float32 rtol of 1.3e-6
    torch.testing.assert_close(eight_gaussian_modes().norm(dim=1), torch.full((8,), 2.0))
    moons = sample_toy("moons", 5000, gen(5))
    assert moons.mean(0).abs().max() < 0.05  # centred at the origin


def test_unknown_name_lists_the_names():
    with pytest.raises(ValueError, match=r"unknown toy dataset 'swissroll'; choose one of \['8gaussians', "
                                         r"'checkerboard', 'moons', 'ring', 'spiral'\]"):
        sample_toy("swissroll", 10)
    with pytest.raises(ValueError, match="n must be >= 1, got 0"):
        sample_toy("moons", 0)

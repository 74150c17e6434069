"""Facts about pfgm_lite/methods.py: a PFGM rebuilds from its config, `emphasis` moves training points into the
band without changing the target, and bad options are refused clearly."""
from __future__ import annotations

import math

import pytest
import torch

from pfgm_lite.methods import PFGM, method_from_config
from pfgm_lite.perturb import band_exponents, hyperparameter_rule

HP = hyperparameter_rule(16, 3.0)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("make", [lambda: PFGM(HP, (16,)), lambda: PFGM.paper(HP, (1, 4, 4)),
                                  lambda: PFGM(HP, (1, 4, 4), emphasis=0.5, clip="none")])
def test_config_round_trip(make):
    method = make()
    rebuilt = method_from_config(method.to_config())
    assert rebuilt.to_config() == method.to_config()
    assert type(rebuilt) is PFGM and rebuilt.emphasis == method.emphasis


def test_emphasis_moves_training_points_into_the_band():
    y = torch.randn(20_000, 16, generator=gen(1)) * 0.75
    m_low, m_high = band_exponents(HP)
    noise_low, noise_high = (HP.sigma * (1 + HP.tau) ** m for m in (m_low, m_high))

    def share_in_band(method):
        x, _ = method.perturb(y, generator=gen(0))
        noise = (x - y).norm(dim=1) / math.sqrt(16)       # noise per dimension, ~ sigma (1 + tau)^m
        return ((noise > noise_low) & (noise < noise_high)).float().mean().item()

    plain, emphasized = share_in_band(PFGM(HP, (16,))), share_in_band(PFGM(HP, (16,), emphasis=0.5))
    band_share = (m_high - m_low) / HP.M
    assert abs(plain - band_share) < 0.05
    assert abs(emphasized - (0.5 + 0.5 * band_share)) < 0.05
    # the regression target at a given point does not depend on how the point was drawn
    x, z = torch.randn(5, 16), torch.rand(5) + 0.1
    torch.testing.assert_close(PFGM(HP, (16,), emphasis=0.5).target(x, z, y[:256]), PFGM(HP, (16,)).target(x, z, y[:256]))


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match=r"emphasis must be in \[0, 1\] \(a fraction of the training points\), got 2"):
        PFGM(HP, (16,), emphasis=2.0)
    with pytest.raises(ValueError, match="emphasis must be finite and >= 0, got -0.1"):
        PFGM(HP, (16,), emphasis=-0.1)
    with pytest.raises(TypeError, match="emphasis must be a number, got str"):
        PFGM(HP, (16,), emphasis="half")
    with pytest.raises(ValueError, match=r"hyper-parameters were made for N = 16 but data_shape \(1, 5, 5\) has N = 25"):
        PFGM(HP, (1, 5, 5))
    with pytest.raises(ValueError, match="z_velocity must be 'exact' or 'network', got 'both'"):
        PFGM(HP, (16,), z_velocity="both")
    with pytest.raises(ValueError, match="unknown method 'ddpm' in config; known: 'pfgm'"):
        method_from_config(dict(name="ddpm"))

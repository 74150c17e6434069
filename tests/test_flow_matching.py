"""Facts about pfgm_lite/methods/flow_matching.py, checked against the closed forms of a Gaussian data set
y ~ N(mu, s^2 I): with x_t = (1 - t) y + t n, n ~ N(0, I), x_t is Gaussian with variance V = (1 - t)^2 s^2 + t^2, and
the marginal velocity is v(x, t) = E[n - y | x] = (t - (1 - t) s^2) / V (x - (1 - t) mu) - mu."""
from __future__ import annotations

import math

import pytest
import torch

from pfgm_lite import nets, sampling, train
from pfgm_lite.checkpoint import load_model
from pfgm_lite.methods import Batch, FlowMatching, method_from_config

F64 = torch.float64
MU, S = torch.tensor([1.0, -2.0], dtype=F64), 0.5


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def gaussian(n: int, seed: int) -> torch.Tensor:
    return MU + S * torch.randn(n, 2, generator=gen(seed), dtype=F64)


def closed_form_velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    t = t[:, None]
    var = (1 - t) ** 2 * S**2 + t**2
    return (t - (1 - t) * S**2) / var * (x - (1 - t) * MU) - MU


def test_the_regression_target_has_the_closed_form_velocity_as_its_mean():
    # the network learns E[target | x, t]; in a thin slice of t around 0.5 that mean is linear in x with the closed
    # form's slope (t - (1 - t) s^2) / V = 1.2 and intercept: a least-squares fit of 10^4 samples finds it
    method = FlowMatching((2,))
    y = gaussian(1_000_000, 1)
    x, t = method.perturb(y, gen(2))
    target = method.target(x, t, Batch(large=y, y=y))
    near = (t - 0.5).abs() < 0.005
    features = torch.cat([x[near], torch.ones(int(near.sum()), 1, dtype=F64)], dim=1)
    coef = torch.linalg.lstsq(features, target[near]).solution                  # (3, 2): slopes, then intercepts
    slope = (0.5 - 0.5 * S**2) / (0.25 * S**2 + 0.25)
    torch.testing.assert_close(coef[:2], slope * torch.eye(2, dtype=F64), rtol=0, atol=0.04)   # SE ~ 0.01
    torch.testing.assert_close(coef[2], -slope * 0.5 * MU - MU, rtol=0, atol=0.08)
    # the target of the other sign convention (y - n) has slope -1.2: the fit tells them apart
    assert (coef[:2] + slope * torch.eye(2, dtype=F64)).abs().max() > 1.0
    assert near.sum() > 5000 and t.min() >= 1e-4 and t.max() <= 1.0


def test_the_exact_predictor_of_many_points_is_the_closed_form():
    method = FlowMatching((2,))
    data = gaussian(20_000, 3)
    for t_value in (0.9, 0.5, 0.2):
        t = torch.full((200,), t_value, dtype=F64)
        # points where the flow goes at time t: x_t of fresh data points
        x = (1 - t_value) * gaussian(200, 4) + t_value * torch.randn(200, 2, generator=gen(5), dtype=F64)
        got, expected = method.exact_predictor(data)(x, t), closed_form_velocity(x, t)
        # the empirical posterior mean of 20 000 points errs by ~ (posterior std) / sqrt(points inside it) / t, more
        # in the tails where few points are close: measured RMS 0.006 to 0.03 against velocities of size ~3
        rms = ((got - expected) ** 2).sum(1).mean().sqrt().item()
        assert rms < 0.01 / t_value, (t_value, rms)
        # a velocity that is off by the point itself (x_0 - x_1 read as x_1 - x_0 in x) is far outside that bound
        assert ((got - (expected - x)) ** 2).sum(1).mean().sqrt() > 10 * 0.01 / t_value


def test_the_sampler_carries_the_noise_onto_the_data_along_the_closed_form_flow():
    method = FlowMatching((2,))
    x0, t0 = method.sample_prior(4000, gen(5))
    assert torch.equal(t0, torch.ones(4000))
    out = sampling.integrate(method, lambda x, t: closed_form_velocity(x.double(), t.double()), x0.double(), t0.double(),
                             0.0, solver="rk45", rtol=1e-8, atol=1e-8)
    se = S / math.sqrt(4000)
    assert (out.x.mean(0) - MU).abs().max() < 4 * se                     # the data's mean, to Monte Carlo error
    assert (out.x.std(0) / S - 1).abs().max() < 4 / math.sqrt(2 * 4000)  # and its spread
    # the path does not end where it started: the flow moved the noise (mean 0, std 1) to the data
    assert (x0.mean(0).double() - MU).abs().max() > 0.5


def test_it_trains_samples_and_reloads_through_the_one_trainer_and_sampler(tmp_path):
    method = FlowMatching((2,))
    data = gaussian(2000, 6).float()
    torch.manual_seed(0)
    net = nets.MLP(2, extra=0, width=32, depth=2)
    config = train.TrainConfig(steps=150, batch_size=64, large_batch_size=64, lr=3e-3, warmup=10, device="cpu")
    result = train.train(method, net, data, config, out_dir=tmp_path, progress=False)
    assert sum(result.losses[-20:]) / 20 < 0.5 * sum(result.losses[:20]) / 20        # it learns
    loaded, ema, _ = load_model(tmp_path, device="cpu")
    assert isinstance(loaded, FlowMatching) and loaded.to_config() == method.to_config()
    out = sampling.sample(loaded, loaded.predictor(ema), 500, solver="heun", steps=10, generator=gen(7))
    assert out.nfe == 20 and (out.x.mean(0).double() - MU).abs().max() < 0.3       # near the data after 150 steps
    assert method_from_config(method.to_config()).sigma_prior == 1.0


def test_bad_input():
    with pytest.raises(ValueError, match="sigma_prior must be finite and > 0, got 0"):
        FlowMatching((2,), sigma_prior=0)
    with pytest.raises(ValueError, match=r"the flow_matching target needs batch.y"):
        FlowMatching((2,)).target(torch.zeros(3, 2), torch.ones(3), Batch(large=torch.zeros(3, 2)))

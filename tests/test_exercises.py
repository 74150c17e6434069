"""Facts about pfgm_lite/exercises.py: every check passes a right answer, fails plausible wrong ones with
feedback that names the case, and reports a stub (NotImplementedError) as not implemented yet."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import linalg

from pfgm_lite import methods
from pfgm_lite.perturb import band_exponents
from pfgm_lite.teaching import exercises


def ball_volume_right(d):
    return math.pi ** (d / 2) / math.gamma(d / 2 + 1)


def ball_volume_sphere_area(d):                          # the area of the sphere, not the volume of the ball
    return 2 * math.pi ** (d / 2) / math.gamma(d / 2)


def ball_field_right(r):
    return min(r, 1.0) ** 3 / (4 * math.pi * r**2)


def ball_field_point_charge(r):                           # ignores that inside the ball less charge is enclosed
    return 1 / (4 * math.pi * r**2)


def polar_angle_right(points):
    return torch.arccos(points[:, -1] / points.norm(dim=1))


def polar_angle_from_plane(points):                       # measured from the plane, not from the z axis
    return torch.arcsin(points[:, -1] / points.norm(dim=1))


def prior_by_projection_right(n, n_dims, z_max, generator):
    u = torch.randn(n, n_dims + 1, generator=generator)
    u[:, -1] = u[:, -1].abs()
    return z_max * u[:, :-1] / u[:, -1:]


def prior_gaussian(n, n_dims, z_max, generator):          # a Gaussian cloud of the same scale
    return z_max * torch.randn(n, n_dims, generator=generator)


def prior_without_flip(n, n_dims, z_max, generator):      # forgets |z|: half the points come from below... and
    u = torch.randn(n, n_dims + 1, generator=generator)   # projecting from the origin then flips them: same law!
    return z_max * u[:, :-1] / u[:, -1:] * 0.5            # so this wrong answer also halves the scale


def disk_flux_right(a, h):
    return (1 - h / math.sqrt(a**2 + h**2)) / 2


def disk_flux_whole_sphere(a, h):                         # forgets that the disk sees only part of a hemisphere
    return 1 - h / math.sqrt(a**2 + h**2)


def ess_right(x, z, batch):
    d2 = torch.cdist(x, batch) ** 2 + z[:, None] ** 2
    w = torch.softmax(-(x.shape[1] + 1) / 2 * d2.log(), dim=1)
    return 1 / (w**2).sum(dim=1)


def ess_power_n(x, z, batch):                             # the exponent of R^N instead of R^{N+1}
    d2 = torch.cdist(x, batch) ** 2 + z[:, None] ** 2
    w = torch.softmax(-x.shape[1] / 2 * d2.log(), dim=1)
    return 1 / (w**2).sum(dim=1)


def target_z_right(e_hat_x, z, gamma):
    return -math.sqrt(e_hat_x.shape[1]) * z / (torch.sqrt((e_hat_x**2).sum(1) + z**2) + gamma)


def target_z_forgets_z(e_hat_x, z, gamma):                # ||E_hat|| without its z-component
    return -math.sqrt(e_hat_x.shape[1]) * z / (e_hat_x.norm(dim=1) + gamma)


def rule_right(n_dims, mean_norm, sigma, tau):
    m = math.floor(0.75 * math.log(mean_norm**2 / (2 * math.sqrt(n_dims) * sigma**2)) / math.log(1 + tau)) + 1
    return m, math.sqrt(2 / math.pi) * sigma * (1 + tau) ** m, math.sqrt(n_dims) * sigma * (1 + tau) ** m


def rule_log10(n_dims, mean_norm, sigma, tau):            # log10 where the rule has natural logs (M changes)
    m = math.floor(0.75 * math.log10(mean_norm**2 / (2 * math.sqrt(n_dims) * sigma**2)) / math.log10(1 + tau)) + 2
    return m, math.sqrt(2 / math.pi) * sigma * (1 + tau) ** m, math.sqrt(n_dims) * sigma * (1 + tau) ** m


def loss_right(method, net, large, batch_size, generator):
    x, z = method.perturb(large[:batch_size], generator)
    v = method.target(x, z, methods.Batch(large))
    return 0.5 * ((net(*method.network_input(x, z)) - v) ** 2).sum(dim=1).mean()


def loss_mean_over_components(method, net, large, batch_size, generator):
    x, z = method.perturb(large[:batch_size], generator)
    return 0.5 * ((net(*method.network_input(x, z)) - method.target(x, z, methods.Batch(large))) ** 2).mean()


def loss_target_from_minibatch(method, net, large, batch_size, generator):
    x, z = method.perturb(large[:batch_size], generator)
    v = method.target(x, z, methods.Batch(large[:batch_size]))   # the target needs the whole large batch
    return 0.5 * ((net(*method.network_input(x, z)) - v) ** 2).sum(dim=1).mean()


def c_in_right(z, n_dims, mean_norm):
    return 1 / torch.sqrt(1 + math.pi * n_dims * z**2 / (2 * mean_norm**2))


def c_in_without_pi(z, n_dims, mean_norm):
    return 1 / torch.sqrt(1 + n_dims * z**2 / mean_norm**2)


def radius_right(n, n_dims, z_max, generator):
    a, b = torch.tensor(n_dims / 2, dtype=torch.float64), torch.tensor(0.5, dtype=torch.float64)
    ga = torch._standard_gamma(a.expand(n), generator=generator)
    gb = torch._standard_gamma(b.expand(n), generator=generator)
    return z_max * torch.sqrt(ga / gb)               # u / (1 - u) = ga / gb for u ~ Beta(a, b)


def radius_off_by_one(n, n_dims, z_max, generator):   # Beta((N+1)/2, 1/2): the sphere of R^{N+2}
    return radius_right(n, n_dims + 1, z_max, generator)


def radius_gaussian(n, n_dims, z_max, generator):    # a Gaussian cloud instead of the Cauchy prior
    return z_max * torch.randn(n, n_dims, generator=generator, dtype=torch.float64).norm(dim=1)


def band_right(hp, low, high):
    return band_exponents(hp, low, high)


def band_no_sqrt_n(hp, low, high):                   # forgets that n_bar is a norm over N dimensions
    m = [math.log(c * hp.mean_norm / hp.sigma) / math.log1p(hp.tau) for c in (low, high)]
    return tuple(min(max(v, 0.0), hp.M) for v in m)


def band_unclipped(hp, low, high):
    m = [math.log(c * hp.mean_norm / math.sqrt(hp.N) / hp.sigma) / math.log1p(hp.tau) for c in (low, high)]
    return tuple(m)


def frechet_right(a, b):
    a, b = a.double().numpy(), b.double().numpy()
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(ca + cb - 2 * np.real(linalg.sqrtm(ca @ cb))))


def frechet_no_cross_term(a, b):
    a, b = a.double().numpy(), b.double().numpy()
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(np.cov(a, rowvar=False) + np.cov(b, rowvar=False)))


def frechet_elementwise_sqrt(a, b):                 # sqrt of the entries instead of the matrix square root
    a, b = a.double().numpy(), b.double().numpy()
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(ca + cb - 2 * np.sqrt(np.abs(ca * cb))))


def kernel_radius_right(n, n_dims, extra, r, generator):
    from scipy import stats

    u = torch.from_numpy(stats.beta(n_dims / 2, extra / 2).ppf(torch.rand(n, generator=generator, dtype=torch.float64)))
    return r * torch.sqrt(u / (1 - u))


def kernel_radius_pfgm_law(n, n_dims, extra, r, generator):     # D ignored: PFGM's Poisson kernel
    return kernel_radius_right(n, n_dims, 1.0, r, generator)


def kernel_radius_gaussian(n, n_dims, extra, r, generator):     # the D -> infinity limit at every D
    return r / math.sqrt(extra) * torch.randn(n, n_dims, generator=generator, dtype=torch.float64).norm(dim=1)


def denoiser_right(x, sigma, y, extra):
    d2 = torch.cdist(x, y) ** 2
    w = torch.softmax(-(x.shape[1] + extra) / 2 * torch.log(d2 + extra * sigma**2), dim=1)
    return w @ y


def denoiser_pfgm_power(x, sigma, y, extra):                    # PFGM's power N + 1 instead of N + D
    d2 = torch.cdist(x, y) ** 2
    return torch.softmax(-(x.shape[1] + 1) / 2 * torch.log(d2 + extra * sigma**2), dim=1) @ y


def denoiser_r_equals_sigma(x, sigma, y, extra):                # forgets r = sigma sqrt(D)
    d2 = torch.cdist(x, y) ** 2
    return torch.softmax(-(x.shape[1] + extra) / 2 * torch.log(d2 + sigma**2), dim=1) @ y



def nfe_to_reach_right(nfe, score, threshold):
    return next((n for n, s in sorted(zip(nfe, score)) if s <= threshold), None)


def nfe_to_reach_in_given_order(nfe, score, threshold):      # forgets to sort by NFE
    return next((n for n, s in zip(nfe, score) if s <= threshold), None)


def nfe_to_reach_strict(nfe, score, threshold):              # '<' where the question says 'at or below'
    return next((n for n, s in sorted(zip(nfe, score)) if s < threshold), None)


CASES = {   # key -> (a right answer, [plausible wrong answers])
    "01.1": (ball_volume_right, [ball_volume_sphere_area, lambda d: ball_volume_right(d) * d]),
    "01.2": (ball_field_right, [ball_field_point_charge, lambda r: min(r, 1.0) / (4 * math.pi * r**2)]),
    "01.3": (lambda d: 2 - d, [lambda d: 0, lambda d: 1 - d, lambda d: -2]),
    "02.1": (polar_angle_right, [polar_angle_from_plane]),
    "02.2": (prior_by_projection_right, [prior_gaussian, prior_without_flip]),
    "02.3": (disk_flux_right, [disk_flux_whole_sphere]),
    "03.1": (ess_right, [ess_power_n, lambda x, z, batch: ess_right(x, z, batch) / batch.shape[0]]),
    "03.2": (target_z_right, [target_z_forgets_z]),
    "03.3": (rule_right, [rule_log10, lambda n, m, s, t: rule_right(n, m, s, t)[::-1]]),
    "04.1": (loss_right, [loss_mean_over_components, loss_target_from_minibatch]),
    "04.2": (c_in_right, [c_in_without_pi, lambda z, n, m: c_in_right(z, n, m) ** 2]),
    "05.1": (lambda steps: 2 * steps, [lambda steps: steps, lambda steps: 2 * steps - 1, lambda steps: 14]),
    "05.2": (radius_right, [radius_off_by_one, radius_gaussian]),
    "06.1": (band_right, [band_no_sqrt_n, band_unclipped]),
    "06.2": (frechet_right, [frechet_no_cross_term, frechet_elementwise_sqrt]),
    "07.1": (kernel_radius_right, [kernel_radius_pfgm_law, kernel_radius_gaussian]),
    "07.2": (denoiser_right, [denoiser_pfgm_power, denoiser_r_equals_sigma]),
    "08.1": (nfe_to_reach_right, [nfe_to_reach_in_given_order, nfe_to_reach_strict]),
}


def test_every_exercise_is_covered_here():
    assert sorted(CASES) == exercises.list_exercises()


@pytest.mark.parametrize("key", sorted(CASES))
def test_right_answer_passes(key, capsys):
    assert exercises.check(key, CASES[key][0]) is True
    assert capsys.readouterr().out.startswith(f"✓ {key}")


@pytest.mark.parametrize("key, wrong", [(k, w) for k, (_, ws) in sorted(CASES.items()) for w in ws])
def test_wrong_answer_fails_with_feedback(key, wrong, capsys):
    assert exercises.check(key, wrong) is False
    out = capsys.readouterr().out
    assert out.startswith(f"✗ {key}") and "hint:" in out
    detail = out.split("): ", 1)[1].split("\n")[0]
    assert any(ch.isdigit() for ch in detail), out   # the feedback names the case that failed (its numbers)


@pytest.mark.parametrize("key", sorted(CASES))
def test_stub_is_reported_as_not_implemented(key, capsys):
    def stub(*args, **kwargs):
        raise NotImplementedError("write your answer between the markers")

    assert exercises.check(key, stub) is False
    assert "not implemented yet" in capsys.readouterr().out


def test_wrong_shape_and_crash_are_explained(capsys):
    assert not exercises.check("04.2", lambda z, n, m: c_in_right(z, n, m)[:, None])
    assert "expected shape (13,), got (13, 1)" in capsys.readouterr().out
    assert not exercises.check("06.1", lambda hp, low, high: hp.missing)
    assert "your answer raised AttributeError" in capsys.readouterr().out


def test_unknown_exercise_is_refused():
    with pytest.raises(ValueError, match="unknown exercise '99.9'"):
        exercises.check("99.9", None)


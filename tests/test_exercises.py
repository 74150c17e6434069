"""Facts about pfgm_lite/exercises.py: every check passes a right answer, fails plausible wrong ones with
feedback that names the case, and reports a stub (NotImplementedError) as not implemented yet."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import linalg

from pfgm_lite import exercises
from pfgm_lite.perturb import band_exponents


def loss_right(method, net, large, batch_size, generator):
    x, z = method.perturb(large[:batch_size], generator)
    v = method.target(x, z, large)
    return 0.5 * ((net(*method.network_input(x, z)) - v) ** 2).sum(dim=1).mean()


def loss_mean_over_components(method, net, large, batch_size, generator):
    x, z = method.perturb(large[:batch_size], generator)
    return 0.5 * ((net(*method.network_input(x, z)) - method.target(x, z, large)) ** 2).mean()


def loss_target_from_minibatch(method, net, large, batch_size, generator):
    x, z = method.perturb(large[:batch_size], generator)
    v = method.target(x, z, large[:batch_size])            # the target needs the whole large batch
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


CASES = {   # key -> (a right answer, [plausible wrong answers])
    "04.1": (loss_right, [loss_mean_over_components, loss_target_from_minibatch]),
    "04.2": (c_in_right, [c_in_without_pi, lambda z, n, m: c_in_right(z, n, m) ** 2]),
    "05.1": (lambda steps: 2 * steps, [lambda steps: steps, lambda steps: 2 * steps - 1, lambda steps: 14]),
    "05.2": (radius_right, [radius_off_by_one, radius_gaussian]),
    "06.1": (band_right, [band_no_sqrt_n, band_unclipped]),
    "06.2": (frechet_right, [frechet_no_cross_term, frechet_elementwise_sqrt]),
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
    assert "case" in out or "steps" in out          # the feedback names what failed


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

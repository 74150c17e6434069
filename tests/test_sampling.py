"""Facts about pfgm_lite/sampling.py: with the exact field the backward ODE lands on the data, encode and decode
are inverse, NFE is counted exactly, and log_likelihood obeys flux conservation and normalization."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from pfgm_lite import physics, sampling
from pfgm_lite.data import sample_toy
from pfgm_lite.methods import PFGM, Batch
from pfgm_lite.nets import MLP
from pfgm_lite.perturb import hyperparameter_rule, hyperparameters_for

F64 = torch.float64


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def toy():
    """30 points of eight Gaussians (float64) and a PFGM with the rule's hyper-parameters (z_max ~ 10)."""
    data = sample_toy("8gaussians", 30, gen(1)).double()
    return PFGM(hyperparameters_for(data), (2,)), data


def nearest_distance(x, data):
    return torch.cdist(x, data).min(dim=1).values


def counting(predict):
    calls = [0]

    def wrapped(x, t):
        calls[0] += 1
        return predict(x, t)

    return wrapped, calls


class ExactFieldNet(torch.nn.Module):
    """The regression target as a differentiable 'network' (what a perfectly trained net would output)."""

    def __init__(self, method, data):
        super().__init__()
        self.method, self.data = method, data
        self.dummy = torch.nn.Parameter(torch.zeros(()))  # log_likelihood reads the device from the parameters

    def forward(self, x_in, c):
        z = torch.exp(c)
        return self.method.target(x_in / self.method.input_scale(z)[:, None], z, Batch(large=self.data))


def log_flux_density(x, data, height):
    """log of the normalized flux density of the charges through the plane z = height: mean_i P_h(x - y_i)."""
    diff = (x[:, None, :] - data[None, :, :]).reshape(-1, x.shape[1])
    log_p = physics.log_poisson_kernel(diff, height).reshape(x.shape[0], -1)
    return torch.logsumexp(log_p, dim=1) - math.log(data.shape[0])


# --- the exact field carries the prior onto the data ----------------------------------------

@pytest.mark.parametrize("solver, steps, kwargs", [("heun", 30, {}), ("rk45", 1, dict(rtol=1e-6, atol=1e-6))])
def test_exact_field_lands_on_the_data(toy, solver, steps, kwargs):
    method, data = toy
    # at height t_min the model's law is the flux density, sum of Poisson kernels of width t_min around the data:
    # P(distance > d) ~ t_min / d. With t_min = 1e-6 and d = 0.01 that is 1e-4 per sample: none of 500 expected.
    # (RK45 at its default rtol = atol = 1e-4 leaves one of these 500 at 0.023: scipy's error norm is an RMS
    # over the whole batch, so one sample's error can be ~sqrt(batch) times the tolerance.)
    res = sampling.sample(method, method.exact_predictor(data), 500, solver=solver, steps=steps, generator=gen(2),
                          t_min=1e-6, **kwargs)
    d = nearest_distance(res.x.double(), data)
    assert d.max() < 0.01, d.max()  # measured: heun 0.001, rk45 0.0016
    assert d.median() < 1e-4
    # and they spread over the data, not onto a few points
    assert nearest_distance(data, res.x.double()).max() < 0.02


def test_exact_field_tail_law_at_t_min(toy):
    # with the usual t_min = 1e-3 a fraction ~ t_min / d of the samples still sits farther than d from every point
    method, data = toy
    res = sampling.sample(method, method.exact_predictor(data), 2000, solver="heun", steps=30, generator=gen(3))
    d = nearest_distance(res.x.double(), data)
    far_01, far_05 = (d > 0.01).double().mean().item(), (d > 0.05).double().mean().item()
    assert 0.07 < far_01 < 0.13, far_01  # predicted 0.1 (measured 0.104)
    assert 0.01 < far_05 < 0.03, far_05  # predicted 0.02 (measured 0.018)


def test_encode_then_decode_returns_to_the_start(toy):
    method, data = toy
    predict = method.exact_predictor(data)
    x = data[:20] + 0.05 * torch.randn(20, 2, generator=gen(4), dtype=F64)
    errors = {}
    for solver, steps, kwargs in [("heun", 50, {}), ("heun", 100, {}), ("rk45", 1, dict(rtol=1e-6, atol=1e-6))]:
        up = sampling.encode(method, predict, x, method.hp.z_max, solver=solver, steps=steps, **kwargs)
        assert (up.x - x).norm(dim=1).min() > 1.0  # it really went somewhere (up to ~30 away)
        down = sampling.integrate(method, predict, up.x, method.hp.z_max, method.t_min, solver=solver, steps=steps,
                                  **kwargs)
        errors[solver, steps] = (down.x - x).norm(dim=1).max().item()
    # measured: heun 50 steps 0.073, 100 steps 0.019 (200: 0.0017), rk45 6e-5; the starts are 0.05 from the data
    assert errors["heun", 100] < 0.03
    assert errors["heun", 100] < errors["heun", 50] / 3  # Heun is second order
    assert errors["rk45", 1] < 5e-4


# --- NFE ------------------------------------------------------------------------------------

@pytest.mark.parametrize("solver, steps, expected", [("euler", 7, 7), ("heun", 7, 14), ("rk45", 1, None)])
def test_nfe_counts_predictor_calls(toy, solver, steps, expected):
    method, data = toy
    predict, calls = counting(method.exact_predictor(data))
    res = sampling.sample(method, predict, 50, solver=solver, steps=steps, generator=gen(5))
    assert res.nfe == calls[0]
    if expected is not None:
        assert res.nfe == expected
    else:
        assert res.nfe > 6  # RK45: at least one step of six stages plus the first evaluation


@pytest.fixture(scope="module")
def one_charge():
    """A PFGM whose exact field is that of one charge at the origin: its field lines are rays, x(t) = x0 t / t0.

    (E_hat = (x, z) for a charge at 0, so dx/d(log z) = E_hat_x = x. gamma >= ||x~|| / 8 keeps the normalized
    field below the inversion's clip, and a velocity cap ||x|| + (a data norm) is above ||x||: both inactive.)
    """
    method = PFGM(hyperparameter_rule(2, 1.0), (2,))
    return method, method.exact_predictor(torch.zeros(1, 2, dtype=F64))


def test_euler_trajectory_steps_geometrically_in_t(one_charge):
    method, predict = one_charge
    x0 = torch.tensor([[1.0, 0.0], [-0.5, 2.0], [3.0, -1.0]], dtype=F64)
    res = sampling.integrate(method, predict, x0, 8.0, 1e-3, solver="euler", steps=4, return_trajectory=True)
    ts = torch.stack([t[0] for _, t in res.trajectory])
    torch.testing.assert_close(ts, torch.logspace(math.log10(8.0), -3, 5, dtype=F64))
    # dx/d(log t) = x: an Euler step of h = log(t1 / t0) / 4 multiplies x by (1 + h), so the k-th recorded
    # state is x0 (1 + h)^k (the exact flow would give x0 (t_k / t0), a different number: exp(h) != 1 + h).
    # Float64, ~20 operations per step, a condition number of a few: 1e-12 relative is ~100x the rounding.
    h = math.log(1e-3 / 8.0) / 4
    states = torch.stack([x for x, _ in res.trajectory])
    expected = torch.stack([x0 * (1 + h) ** k for k in range(5)])
    torch.testing.assert_close(states, expected, rtol=1e-12, atol=0)
    assert (states[-1] - x0 * 1e-3 / 8.0).abs().max() > 0.1   # Euler's amplification, not the exact ray


def test_rk45_trajectory_follows_the_flow(one_charge):
    method, predict = one_charge
    x0 = torch.tensor([[1.0, 0.0], [-0.5, 2.0], [3.0, -1.0]], dtype=F64)
    t0, t1 = 8.0, 1e-3
    res = sampling.integrate(method, predict, x0, t0, t1, solver="rk45", rtol=1e-8, atol=1e-10,
                             return_trajectory=True)
    assert len(res.trajectory) == 41   # 41 evenly spaced u in [0, 1], i.e. a geometric grid in t
    ts = torch.stack([t[0] for _, t in res.trajectory])
    torch.testing.assert_close(ts, torch.logspace(math.log10(t0), math.log10(t1), 41, dtype=F64),
                               rtol=1e-14, atol=0)   # exp of float64 logs: a few ulps
    states = torch.stack([x for x, _ in res.trajectory])
    assert torch.isfinite(states).all()
    assert torch.equal(states[-1], res.x)
    # every recorded state is on the ray x0 t / t0, to the solver's tolerance: a local error of rtol |x| + atol
    # per step, ~80 steps (measured: 3e-9 absolute, 1.2e-7 relative; at the default rtol = atol = 1e-4, 1.3e-4)
    expected = x0[None] * (ts / t0)[:, None, None]
    torch.testing.assert_close(states, expected, rtol=1e-6, atol=1e-8)


def test_sample_with_a_network_predictor():
    hp = hyperparameter_rule(2, 1.0)
    method = PFGM(hp, (2,))
    torch.manual_seed(0)
    res = sampling.sample(method, method.predictor(MLP(2, width=16)), 64, solver="heun", steps=5, generator=gen(6))
    assert res.x.shape == (64, 2) and torch.isfinite(res.x).all() and res.nfe == 10


# --- bad arguments --------------------------------------------------------------------------

def test_bad_arguments(toy):
    method, data = toy
    predict = method.exact_predictor(data)
    x0 = torch.zeros(4, 2, dtype=F64)
    with pytest.raises(ValueError, match=r"solver must be one of \('euler', 'heun', 'rk45'\), got 'rk4'"):
        sampling.integrate(method, predict, x0, 1.0, 1e-3, solver="rk4")
    with pytest.raises(ValueError, match="steps must be >= 1, got 0"):
        sampling.sample(method, predict, 4, solver="euler", steps=0)
    with pytest.raises(TypeError, match="steps must be an int, got float"):
        sampling.integrate(method, predict, x0, 1.0, 1e-3, solver="heun", steps=10.0)
    with pytest.raises(ValueError, match=r"t_min = 100.0 must be below every start scale \(min t0 = "):
        sampling.sample(method, predict, 4, t_min=100.0)
    with pytest.raises(ValueError, match="t1 must be finite and > 0, got -0.001"):
        sampling.integrate(method, predict, x0, 1.0, -1e-3)
    with pytest.raises(ValueError, match="t0 must be finite and > 0, got min 0"):
        sampling.integrate(method, predict, x0, 0.0, 1e-3)
    with pytest.raises(ValueError, match=r"x0 must have shape \(B, 2\) for this pfgm model, got \(4, 3\)"):
        sampling.integrate(method, predict, torch.zeros(4, 3), 1.0, 1e-3)
    with pytest.raises(ValueError, match="n must be >= 1, got 0"):
        sampling.sample(method, predict, 0)


# --- likelihood -----------------------------------------------------------------------------

def test_log_likelihood_of_the_exact_field_is_the_flux_density():
    # Flux is conserved along field lines (div E = 0 between the planes), so the exact flow carries the flux
    # density through z = t_min onto the flux density through z = z_max. With that as log_prior, log p(x) must be
    # the flux density at t_min: log mean_i P_{t_min}(x - y_i), point by point.
    data = sample_toy("8gaussians", 30, gen(1))
    hp = dataclasses.replace(hyperparameters_for(data), z_min=0.05)
    method = PFGM(hp, (2,))
    g = gen(7)
    x = torch.cat([data[:10] + 0.03 * torch.randn(10, 2, generator=g), 3 * torch.rand(10, 2, generator=g) - 1.5])
    log_p = sampling.log_likelihood(method, ExactFieldNet(method, data), x, hp.z_max,
                                    lambda end: log_flux_density(end, data, hp.z_max))
    torch.testing.assert_close(log_p, log_flux_density(x, data, hp.z_min), rtol=0, atol=2e-3)  # measured 2e-4


def test_hutchinson_is_exact_in_one_dimension():
    # with one data dimension the Rademacher probe squared is 1: the estimate is the exact divergence
    data = torch.randn(20, 1, generator=gen(8))
    hp = dataclasses.replace(hyperparameters_for(data), z_min=0.05)
    method = PFGM(hp, (1,))
    net = ExactFieldNet(method, data)
    x = torch.linspace(-2, 2, 9)[:, None]
    log_prior = lambda end: physics.log_poisson_kernel(end, hp.z_max)  # noqa: E731
    exact = sampling.log_likelihood(method, net, x, hp.z_max, log_prior, exact_divergence=True)
    hutch = sampling.log_likelihood(method, net, x, hp.z_max, log_prior, exact_divergence=False, generator=gen(9))
    # the integrands agree up to float32 rounding (probe^2 = 1 exactly; measured difference 0.0); rounding can only
    # change RK45's steps, so the two solves agree to ~2x its tolerance 1e-5 times |log p| <= 5
    torch.testing.assert_close(hutch, exact, rtol=0, atol=1e-4)


def test_hutchinson_estimates_the_trace_not_the_sum_of_the_jacobian():
    # g = A x in 3-D with a non-symmetric A: the divergence is tr A = 1 at every point; a wrong estimator that
    # multiplies by the all-ones vector instead of the probe gives sum A = 7, and one that forgets a probe factor
    # gives sum_j (A v)_j. Rademacher probes: v^T A v = tr A + sum_{i != j} A_ij v_i v_j, variance
    # sum_{i < j} (A_ij + A_ji)^2 = 13.
    A = torch.tensor([[1.0, 2.0, 0.0], [-1.0, 3.0, 1.0], [2.0, 2.0, -3.0]], dtype=F64)
    n = 4000
    x = torch.randn(n, 3, generator=gen(10), dtype=F64).requires_grad_(True)
    g = x @ A.T
    probe = (torch.randint(0, 2, (n, 3), generator=gen(11)) * 2 - 1).to(F64)
    estimate = sampling.divergence(g, x, probe)
    se = math.sqrt(13 / n)                                                  # 0.057
    assert abs(estimate.mean().item() - 1.0) < 3 * se
    assert abs(estimate.var().item() - 13) < 0.15 * 13                     # the variance of the estimator, too
    ones = sampling.divergence(x @ A.T, x, torch.ones(n, 3, dtype=F64))     # the "sum of the Jacobian" bug
    assert abs(ones.mean().item() - 7.0) < 1e-12 and abs(ones.mean().item() - 1.0) > 3 * se
    exact = sampling.divergence(x @ A.T, x)
    torch.testing.assert_close(exact, torch.full((n,), 1.0, dtype=F64), rtol=0, atol=1e-12)


def test_log_likelihood_picks_the_divergence_by_dimension(monkeypatch):
    # exact up to EXACT_DIVERGENCE_MAX_DIM dimensions (N backward passes), Hutchinson above (one): counted
    passes = {}
    real = sampling.likelihood.divergence

    def counting(g, x, probe=None):
        passes[g.shape[1]] = "exact" if probe is None else "hutchinson"
        return real(g, x, probe)

    monkeypatch.setattr(sampling.likelihood, "divergence", counting)
    for dim in (2, sampling.EXACT_DIVERGENCE_MAX_DIM, sampling.EXACT_DIVERGENCE_MAX_DIM + 1):
        data = torch.randn(30, dim, generator=gen(12))
        hp = dataclasses.replace(hyperparameters_for(data), z_min=0.5)
        method = PFGM(hp, (dim,))
        net = MLP(dim, width=8, depth=1)
        was = net.train()
        sampling.log_likelihood(method, net, data[:3], hp.z_max, lambda end: physics.log_poisson_kernel(end, hp.z_max),
                                rtol=1e-2, atol=1e-2)
        assert was.training                                               # the network's mode is put back
    assert passes == {2: "exact", 16: "exact", 17: "hutchinson"}


def test_log_likelihood_integrates_to_the_prior_mass_of_the_box_image():
    # A fixed (untrained) 2D network defines a flow map T from the plane z = t_min to z = z_max, and
    # p(x) = prior(T(x)) |det dT|. Over a box the integral of p is the prior mass of T(box); the prior is a 2D
    # Cauchy law (mass outside radius r ~ z_max / r), so over any finite box it is < 1, not 1.
    # Measured (z_max = 0.5, box [-4, 4]^2, 40 x 40 midpoint grid): integral 0.89387, prior mass of T(box) 0.89384.
    hp = dataclasses.replace(hyperparameter_rule(2, 1.0), z_max=0.5, upper_norm=0.5 * math.sqrt(math.pi))
    method = PFGM(hp, (2,))
    torch.manual_seed(0)
    net = MLP(2, width=32, depth=2)
    half, n = 4.0, 40
    axis = (torch.arange(n) + 0.5) / n * 2 * half - half
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), dim=-1).reshape(-1, 2)
    log_p = sampling.log_likelihood(method, net, grid, hp.z_max, lambda end: physics.log_poisson_kernel(end, hp.z_max))
    integral = log_p.exp().sum().item() * (2 * half / n) ** 2

    # T(box boundary) by the forward ODE, then the prior mass inside it by Green's theorem: the 2D Poisson kernel
    # p = z / (2 pi (rho^2 + z^2)^{3/2}) is d[F(rho) dphi] with F = (1 - z / sqrt(rho^2 + z^2)) / (2 pi), so the mass
    # inside a simple closed curve around the origin is the loop integral of F(rho) dphi (T is a diffeomorphism,
    # so T(boundary) is a simple closed curve).
    s = torch.linspace(-half, half, 201)[:-1]
    c = torch.full_like(s, half)
    edge = torch.cat([torch.stack([s, -c], 1), torch.stack([c, s], 1), torch.stack([-s, c], 1),
                      torch.stack([-c, -s], 1)])
    image = sampling.encode(method, method.predictor(net), edge, hp.z_max, solver="rk45", rtol=1e-6, atol=1e-6).x
    image = image.double()
    phi, rho = torch.atan2(image[:, 1], image[:, 0]), image.norm(dim=1)
    dphi = torch.remainder(torch.roll(phi, -1) - phi + math.pi, 2 * math.pi) - math.pi
    assert dphi.sum().item() == pytest.approx(2 * math.pi)  # winds once around the origin
    assert dphi.abs().max() < 0.05  # fine enough for the midpoint rule
    rho_mid = 0.5 * (rho + torch.roll(rho, -1))
    mass = (dphi * (1 - hp.z_max / torch.sqrt(rho_mid**2 + hp.z_max**2))).sum().item() / (2 * math.pi)
    assert 0.8 < mass < 0.95
    assert integral == pytest.approx(mass, abs=2e-3)


def test_rk45_end_point_is_solve_ivps_bit_for_bit(toy, monkeypatch):
    """Without a trajectory, integrate drives scipy's RK45 stepper itself (memory: solve_ivp keeps every step's
    state); its end point must be the one solve_ivp gives for the same right-hand side, exactly."""
    from scipy.integrate import RK45, solve_ivp

    method, data = toy
    seen = {}

    class Spy(RK45):
        def __init__(self, fun, t0, y0, t_bound, **options):
            seen.update(fun=fun, y0=y0.copy(), options=options)
            super().__init__(fun, t0, y0, t_bound, **options)

    monkeypatch.setattr(sampling.ode, "RK45", Spy)
    x0, z0 = method.sample_prior(16, generator=gen(3))
    res = sampling.integrate(method, method.exact_predictor(data), x0.double(), z0.double(), 1e-3, solver="rk45")
    reference = solve_ivp(seen["fun"], (0.0, 1.0), seen["y0"], method="RK45", **seen["options"])
    assert seen["options"] == dict(rtol=1e-4, atol=1e-4)
    assert torch.equal(res.x.reshape(-1), torch.from_numpy(reference.y[:, -1]))
    # one step less is a different point: the comparison can fail
    assert not torch.equal(res.x.reshape(-1), torch.from_numpy(reference.y[:, -2]))


# --- a time variable that runs linearly down to 0 (flow matching's) --------------------------------------------

class LinearTime(PFGM):
    """A method whose velocity is dx/dt (time "linear") and whose time may reach 0: here dx/dt = 2 t a, a the
    prediction, so from t = 1 to t = 0 the exact flow moves x by -a (the integral of 2 t from 1 to 0 is -1)."""

    name = "test-linear-time"
    time = "linear"

    def velocity(self, prediction, x, t):
        return 2 * t[:, None] * prediction[:, : self.N]


def test_a_linear_time_runs_down_to_zero_with_the_solvers_own_errors():
    hp = hyperparameter_rule(2, 1.0)
    method = LinearTime(hp, (2,))
    a = torch.tensor([[1.0, -2.0], [0.5, 3.0]], dtype=F64)
    x1 = torch.tensor([[0.1, 0.2], [-1.0, 0.0]], dtype=F64)
    predict, calls = counting(lambda x, t: torch.cat([a, torch.zeros(2, 1, dtype=F64)], 1))
    exact = x1 - a
    # Heun is the trapezoid rule in t: exact for a velocity linear in t; Euler on equal steps h = 1/n misses by
    # h * a (each step takes the velocity at the step's start, t_k = 1 - k h: sum_k 2 t_k h = 1 + h)
    heun = sampling.integrate(method, predict, x1, 1.0, 0.0, solver="heun", steps=4).x
    torch.testing.assert_close(heun, exact, rtol=0, atol=1e-15)
    euler = sampling.integrate(method, predict, x1, 1.0, 0.0, solver="euler", steps=8).x
    torch.testing.assert_close(euler, exact - a / 8, rtol=0, atol=1e-15)
    rk45 = sampling.integrate(method, predict, x1, 1.0, 0.0, solver="rk45", rtol=1e-10, atol=1e-10).x
    torch.testing.assert_close(rk45, exact, rtol=0, atol=1e-7)
    # the same ODE on a rho grid (t = (1 - u)^rho): other points of the same flow, the same end
    on_rho = sampling.integrate(method, predict, x1, 1.0, 0.0, solver="rk45", rho=3.0, rtol=1e-10, atol=1e-10).x
    torch.testing.assert_close(on_rho, exact, rtol=0, atol=1e-7)
    # and read as a "log" time (velocity = dx/d ln t) it is another ODE, which cannot even reach t = 0
    with pytest.raises(ValueError, match="t1 must be finite and > 0, got 0.0"):
        sampling.integrate(PFGM(hp, (2,)), predict, x1, 1.0, 0.0)

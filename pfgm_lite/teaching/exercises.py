"""Automatic feedback for the notebooks' exercises: `check("04.2", your_function)`.

Each exercise runs the reader's answer on cases the reader does not see, compares it with the package's own
reference, and prints what went wrong (which case, expected against received, a hint), or a tick:

    >>> from pfgm_lite.teaching import exercises
    >>> exercises.check("04.2", input_scale)        # prints "✓ 04.2 ..." or "✗ 04.2 ..."; returns True / False

An answer that still raises NotImplementedError (the student edition's stub) is reported as "not implemented yet".
`exercises.list_exercises()` names every exercise; tests/test_exercises.py feeds each one a wrong answer.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch


class Wrong(Exception):
    """Raised by a checker when the answer is wrong; its message says which case and how."""


@dataclass(frozen=True)
class Exercise:
    """key ("04.2"), one-line title, the hint shown on a wrong answer, and the checker (raises Wrong)."""

    key: str
    title: str
    hint: str
    checker: Callable[[Any], str]


EXERCISES: dict[str, Exercise] = {}


def exercise(key: str, title: str, hint: str):
    """Register a checker: a function (answer) -> success message that raises Wrong with feedback otherwise."""
    def register(checker: Callable[[Any], str]) -> Callable[[Any], str]:
        EXERCISES[key] = Exercise(key, title, hint, checker)
        return checker
    return register


def list_exercises() -> list[str]:
    """The keys of every exercise with a check, in notebook order."""
    return sorted(EXERCISES)


def check(key: str, answer: Any) -> bool:
    """Check `answer` for exercise `key`; print feedback; return True when it is right."""
    if key not in EXERCISES:
        raise ValueError(f"unknown exercise {key!r}; known: {list_exercises()}")
    ex = EXERCISES[key]
    try:
        message = ex.checker(answer)
    except NotImplementedError as err:
        print(f"… {key} ({ex.title}): not implemented yet. {err or ex.hint}")
        return False
    except Wrong as err:
        print(f"✗ {key} ({ex.title}): {err}\n  hint: {ex.hint}")
        return False
    except Exception as err:   # the reader's code crashed on one of the cases: say how
        print(f"✗ {key} ({ex.title}): your answer raised {type(err).__name__}: {err}\n  hint: {ex.hint}")
        return False
    print(f"✓ {key} ({ex.title}): {message}")
    return True


# --------------------------------------------------------------------------------------------------
# helpers for checkers
# --------------------------------------------------------------------------------------------------

def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _as_tensor(name: str, value: Any, case: str) -> torch.Tensor:
    if isinstance(value, (int, float)):
        return torch.tensor(float(value), dtype=torch.float64)
    if not isinstance(value, torch.Tensor):
        raise Wrong(f"{case}: {name} should be a torch.Tensor, got {type(value).__name__}")
    return value


def compare(case: str, got: Any, expected: torch.Tensor, rtol: float, atol: float = 0.0) -> None:
    """Raise Wrong unless got has expected's shape and agrees within rtol/atol (compared in float64)."""
    got = _as_tensor("the result", got, case)
    if tuple(got.shape) != tuple(expected.shape):
        raise Wrong(f"{case}: expected shape {tuple(expected.shape)}, got {tuple(got.shape)}")
    if not torch.isfinite(got).all():
        raise Wrong(f"{case}: the result has NaN or inf entries")
    diff = (got.double() - expected.double()).abs()
    bad = diff > atol + rtol * expected.double().abs()
    if bad.any():
        i = int(bad.flatten().nonzero()[0])
        raise Wrong(f"{case}: entry {i} is {got.flatten()[i].item():.6g}, expected {expected.flatten()[i].item():.6g} "
                    f"({int(bad.sum())} of {bad.numel()} entries differ)")


def compare_number(case: str, got: Any, expected: float, rel: float = 1e-9, abs_tol: float = 0.0) -> None:
    """Raise Wrong unless got is a number within rel (relative) or abs_tol (absolute) of expected."""
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        got = got.item()
    if isinstance(got, bool) or not isinstance(got, (int, float)):
        raise Wrong(f"{case}: expected a number, got {type(got).__name__}")
    if not math.isclose(got, expected, rel_tol=rel, abs_tol=abs_tol):
        raise Wrong(f"{case}: got {got:.6g}, expected {expected:.6g}")


# --------------------------------------------------------------------------------------------------
# 01 the Poisson equation
# --------------------------------------------------------------------------------------------------

@exercise("01.1", "the volume of the unit ball",
          "the ball is a stack of spherical shells: V_d = integral_0^1 S_{d-1} r^{d-1} dr = S_{d-1} / d")
def _check_ball_volume(ball_volume) -> str:
    for d in range(1, 13):
        # float64: any correct formula agrees to ~1e-15
        compare_number(f"d = {d}", ball_volume(d), math.pi ** (d / 2) / math.gamma(d / 2 + 1), rel=1e-9)
    return "ball_volume is right for d = 1..12 (2, π, 4π/3, π²/2, ...)"


@exercise("01.2", "the field of a charged ball",
          "Gauss: the flux 4 pi r^2 |E| through the sphere of radius r equals the charge inside, min(r, 1)^3 of it")
def _check_ball_field(field_strength) -> str:
    for r in (0.1, 0.3, 0.6, 1.0, 1.5, 3.0, 10.0):
        compare_number(f"r = {r}", field_strength(r), min(r, 1.0) ** 3 / (4 * math.pi * r**2), rel=1e-9)
    return "field_strength is right inside and outside the ball"


@exercise("01.3", "the harmonic power",
          "the Laplacian of r^p in R^d is p (p + d - 2) r^(p - 2); compare with the Green's function")
def _check_harmonic_exponent(harmonic_exponent) -> str:
    for d in range(3, 10):
        p = harmonic_exponent(d)
        if p == 0:
            raise Wrong(f"d = {d}: p = 0 is the constant function: look for the other one")
        x = (torch.randn(20, d, generator=_gen(d), dtype=torch.float64) + 3.0).requires_grad_(True)
        f = x.norm(dim=1) ** p
        grad = torch.autograd.grad(f.sum(), x, create_graph=True)[0]
        laplacian = sum(torch.autograd.grad(grad[:, i].sum(), x, retain_graph=True)[0][:, i] for i in range(d))
        scale = (p * (abs(p) + d) * x.norm(dim=1) ** (p - 2)).abs().max().item()
        if laplacian.abs().max().item() > 1e-9 * scale:   # float64 autograd: ~1e-14 of the terms when harmonic
            raise Wrong(f"d = {d}: the Laplacian of ||x||^{p} is not zero (it is {laplacian[0].item():.3g} at a "
                        f"test point)")
    return "harmonic_exponent is right for d = 3..9"


# --------------------------------------------------------------------------------------------------
# 02 charges to a hemisphere
# --------------------------------------------------------------------------------------------------

@exercise("02.1", "the polar angle", "the angle theta from the +z axis has cos(theta) = z / ||(x, z)||")
def _check_polar_angle(polar_angle) -> str:
    for k, n in enumerate((1, 2, 5)):
        points = torch.randn(100, n + 1, generator=_gen(30 + k), dtype=torch.float64)
        points[:, -1] = points[:, -1].abs()
        points = 7.0 * points / points.norm(dim=1, keepdim=True)
        # float64; arccos near 0 loses half the digits: still ~1e-8
        compare(f"case {k + 1} (N = {n}, 100 points on the hemisphere of radius 7)", polar_angle(points),
                torch.arccos(points[:, -1] / 7.0), rtol=1e-6, atol=1e-7)
    return "polar_angle is right for N = 1, 2, 5"


@exercise("02.2", "the prior by projection",
          "normalize a Gaussian vector in R^{N+1}, make its last coordinate positive, and project the point from the "
          "origin onto the plane z = z_max (flows.project_to_plane)")
def _check_prior_by_projection(sample_prior) -> str:
    from scipy import stats

    for k, n_dims in enumerate((1, 2, 4)):
        case = f"case {k + 1} (N = {n_dims}, z_max = 5, 4000 draws)"
        x = _as_tensor("the points", sample_prior(4000, n_dims, 5.0, _gen(31 + k)), case)
        if tuple(x.shape) != (4000, n_dims):
            raise Wrong(f"{case}: expected shape (4000, {n_dims}), got {tuple(x.shape)}")
        t = ((x.double() ** 2).sum(1) / 25.0).numpy()
        p = stats.kstest(t, stats.betaprime(n_dims / 2, 0.5).cdf).pvalue
        if p < 1e-4:   # a right answer fails this once in 10^4 runs
            raise Wrong(f"{case}: the radii do not follow the prior's law R^2/z_max^2 ~ BetaPrime(N/2, 1/2) "
                        f"(KS p = {p:.1e})")
        if n_dims > 1:
            direction = x.double() / x.double().norm(dim=1, keepdim=True)
            # the mean of 4000 uniform unit vectors has norm ~ 1/sqrt(4000) = 0.016; 0.1 is six times that
            if direction.mean(0).norm() > 0.1:
                raise Wrong(f"{case}: the directions are not uniform (their mean has norm "
                            f"{direction.mean(0).norm():.3f})")
    return "the projected hemisphere is the Poisson kernel for N = 1, 2, 4"


@exercise("02.3", "the flux through a disk",
          "the flux through the disk is the solid angle of the cone it subtends: (1 - cos alpha) / 2 of the whole, "
          "with cos alpha = h / sqrt(a^2 + h^2)")
def _check_disk_flux(disk_flux) -> str:
    from scipy import integrate

    for a, h in ((0.5, 1.0), (1.0, 1.0), (3.0, 0.2), (100.0, 1.0)):
        exact = integrate.quad(lambda r: h / (4 * math.pi * (r**2 + h**2) ** 1.5) * 2 * math.pi * r, 0, a)[0]
        compare_number(f"a = {a}, h = {h}", disk_flux(a, h), exact, rel=1e-6)   # quad: ~1.5e-8 relative
    return "disk_flux is right (and tends to 1/2 for a large disk)"


# --------------------------------------------------------------------------------------------------
# 03 estimating the field
# --------------------------------------------------------------------------------------------------

@exercise("03.1", "the effective sample size",
          "w = softmax(-(N+1)/2 log d^2) over the charges, with d^2 = ||x - y_i||^2 + z^2; ESS = 1 / sum w^2")
def _check_ess(ess_fn) -> str:
    from ..flows import augment

    for k, n_dims in enumerate((2, 50)):
        g = _gen(10 + k)
        batch = torch.randn(300, n_dims, generator=g)
        x, z = batch[:20] + 0.5 * torch.randn(20, n_dims, generator=g), torch.rand(20, generator=g) + 0.05
        d = (augment(x, z).double()[:, None] - augment(batch, 0.0).double()[None]).norm(dim=-1)
        expected = torch.exp(-torch.logsumexp(2 * torch.log_softmax(-(n_dims + 1) * d.log(), dim=1), dim=1))
        # float32 answers: a weight from a rounded d^2 is good to (N+1)/2 * 1000 * 1.2e-7 at worst: rtol 1e-3
        compare(f"case {k + 1} (N = {n_dims}, 20 points, 300 charges)", ess_fn(x, z, batch), expected, rtol=1e-3)
    far = ess_fn(torch.zeros(1, 2), torch.tensor([1e6]), torch.randn(300, 2, generator=_gen(12)))
    compare("far above the data (z = 1e6): all 300 charges count", far, torch.tensor([300.0], dtype=torch.float64),
            rtol=1e-3)
    return "ESS matches on 2 hidden cases and tends to L far from the data"


@exercise("03.2", "the z-component of the target",
          "with E_hat_z = z, ||E_hat|| = sqrt(||E_hat_x||^2 + z^2) and v_z = -sqrt(N) z / (||E_hat|| + gamma)")
def _check_target_z(target_z) -> str:
    from ..field import empirical_field, normalize_field

    for k, n_dims in enumerate((2, 784)):
        g = _gen(20 + k)
        batch = torch.randn(128, n_dims, generator=g, dtype=torch.float64)
        z = torch.logspace(-3, 1, 16, dtype=torch.float64)
        x = batch[:16] + z[:, None] * torch.randn(16, n_dims, generator=g, dtype=torch.float64)
        e_hat = empirical_field(x, z, batch)
        for gamma in (5.0, 0.1):
            compare(f"case N = {n_dims}, gamma = {gamma}", target_z(e_hat[:, :-1], z, gamma),
                    normalize_field(e_hat, gamma)[:, -1], rtol=1e-9, atol=1e-12)   # float64 formulas
    return "v_z from the x-part and z alone matches field.normalize_field (N = 2 and 784)"


@exercise("03.3", "the hyper-parameter rule by hand",
          "M = floor(0.75 ln(n_bar^2 / (2 sqrt(N) sigma^2)) / ln(1 + tau)) + 1, then z_max = sqrt(2/pi) sigma (1+tau)^M "
          "and upper_norm = sqrt(N) sigma (1+tau)^M")
def _check_rule(rule) -> str:
    from ..perturb import hyperparameter_rule

    for n_dims, mean_norm, sigma, tau in ((784, 26.9, 0.01, 0.03), (3072, 30.0, 0.01, 0.03), (2, 0.93, 0.01, 0.03),
                                          (100, 5.0, 0.02, 0.05)):
        case = f"N = {n_dims}, n_bar = {mean_norm}, sigma = {sigma}, tau = {tau}"
        ref = hyperparameter_rule(n_dims, mean_norm, sigma=sigma, tau=tau)
        got = rule(n_dims, mean_norm, sigma, tau)
        if not isinstance(got, (tuple, list)) or len(got) != 3:
            raise Wrong(f"{case}: expected (M, z_max, upper_norm), got {got!r}")
        if got[0] != ref.M:
            raise Wrong(f"{case}: M is {got[0]}, expected {ref.M}")
        compare_number(f"{case}, z_max", got[1], ref.z_max, rel=1e-6)
        compare_number(f"{case}, upper_norm", got[2], ref.upper_norm, rel=1e-6)
    return "(M, z_max, upper_norm) match perturb.hyperparameter_rule for 4 hidden cases"


# --------------------------------------------------------------------------------------------------
# 04 learning the field
# --------------------------------------------------------------------------------------------------

@exercise("04.1", "the loss by hand",
          "perturb the first batch_size points of the large batch with method.perturb(y, generator), take the target "
          "from the whole large batch, feed method.network_input(x, z) to the net, and average 1/2 ||f - v||^2 "
          "(summed over the N + 1 components) over the mini-batch")
def _check_loss(loss_fn) -> str:
    from ..data import sample_toy
    from ..methods import PFGM
    from ..nets import MLP
    from ..perturb import hyperparameters_for
    from ..train import loss_on_batch

    for k, (name, batch_size) in enumerate([("moons", 32), ("checkerboard", 17), ("8gaussians", 64)]):
        large = sample_toy(name, 512, _gen(40 + k))
        method = PFGM(hyperparameters_for(large), (2,), gamma=5.0 if k == 1 else "scaled")
        with torch.random.fork_rng(devices=[]):            # the reader's random state is left as it was
            torch.manual_seed(k)
            net = MLP(2, width=16, depth=1)
        case = f"case {k + 1} ({name}, mini-batch {batch_size} of a large batch of 512)"
        with torch.no_grad():
            expected = loss_on_batch(method, net, large, batch_size, _gen(7 + k))
            got = loss_fn(method, net, large, batch_size, _gen(7 + k))
        compare(case, got, expected.double(), rtol=1e-4)    # float32 loss of a few hundred terms
    return "the loss matches train.loss_on_batch on 3 hidden cases"


@exercise("04.2", "the input scaling c_in(z)",
          "c_in(z) = 1 / sqrt(1 + pi N z^2 / (2 n_bar^2)): a perturbed point at height z has ||x|| ~ sqrt(pi N / 2) z "
          "far from the data")
def _check_input_scale(input_scale) -> str:
    from ..methods import PFGM
    from ..perturb import hyperparameter_rule

    for k, (n_dims, mean_norm) in enumerate([(2, 0.93), (784, 26.9), (3072, 30.0), (5, 0.01)]):
        method = PFGM(hyperparameter_rule(n_dims, mean_norm, sigma=1e-3), (n_dims,))
        z = torch.logspace(-3, 3, 13, dtype=torch.float64)
        case = f"case {k + 1} (N = {n_dims}, n_bar = {mean_norm})"
        compare(case, input_scale(z, n_dims, mean_norm), method.input_scale(z), rtol=1e-6)
    return "c_in(z) matches methods.PFGM.input_scale for 4 hidden (N, n_bar)"


# --------------------------------------------------------------------------------------------------
# 05 sampling
# --------------------------------------------------------------------------------------------------

@exercise("05.1", "NFE of Heun's method", "each Heun step evaluates the network at its start and at the Euler guess")
def _check_nfe(heun_nfe) -> str:
    from ..methods import PFGM
    from ..perturb import hyperparameter_rule
    from ..sampling import sample

    method = PFGM(hyperparameter_rule(2, 1.0), (2,))
    for steps in (1, 7, 25):
        calls = [0]

        def predict(x, t):
            calls[0] += 1
            return torch.zeros(x.shape[0], 3)

        sample(method, predict, 4, solver="heun", steps=steps, generator=_gen(0))
        compare_number(f"Heun with {steps} steps", heun_nfe(steps), float(calls[0]))
    return "your count matches the evaluations sampling.sample makes (1, 7 and 25 Heun steps)"


@exercise("05.2", "drawing the prior radius",
          "R^2 / z_max^2 ~ BetaPrime(N/2, 1/2): draw u ~ Beta(N/2, 1/2) from the generator (e.g. "
          "scipy.stats.beta(N/2, 1/2).ppf of torch.rand(n, generator=generator)) and set R = z_max sqrt(u / (1 - u))")
def _check_prior_radius(draw_radius) -> str:
    from scipy import stats

    from ..prior import prior_radius_cdf

    n = 20_000
    for k, (n_dims, z_max) in enumerate([(2, 3.3), (784, 55.0), (1, 0.5)]):
        case = f"case {k + 1} (N = {n_dims}, z_max = {z_max}, {n} draws)"
        radii = _as_tensor("the radii", draw_radius(n, n_dims, z_max, _gen(50 + k)), case)
        if tuple(radii.shape) != (n,):
            raise Wrong(f"{case}: expected shape ({n},), got {tuple(radii.shape)}")
        if not (torch.isfinite(radii).all() and (radii >= 0).all()):
            raise Wrong(f"{case}: radii must be finite and >= 0")
        p = stats.kstest(radii.double().numpy(), lambda r: prior_radius_cdf(r, n_dims, z_max)).pvalue
        if p < 1e-4:   # a right answer fails this 1 time in 10^4; the wrong laws tried in the tests give p < 1e-20
            median = float(radii.double().median())
            expected = float(z_max * math.sqrt(stats.beta(n_dims / 2, 0.5).median() /
                                               (1 - stats.beta(n_dims / 2, 0.5).median())))
            raise Wrong(f"{case}: the radii do not follow the prior's law (KS p = {p:.1e}); their median is "
                        f"{median:.4g}, the law's is {expected:.4g}")
    return "the radii follow the prior's law (Kolmogorov-Smirnov) for 3 hidden (N, z_max)"


# --------------------------------------------------------------------------------------------------
# 06 digits
# --------------------------------------------------------------------------------------------------

@exercise("06.1", "the band where the digit takes shape",
          "noise per dimension sigma (1 + tau)^m = c n_bar / sqrt(N) gives m = ln(c n_bar / (sqrt(N) sigma)) / "
          "ln(1 + tau); clip it to [0, M]")
def _check_band(band) -> str:
    from ..perturb import band_exponents, hyperparameter_rule

    cases = [(784, 26.9, 0.1, 3.0), (3072, 30.0, 0.1, 3.0), (2, 0.93, 0.5, 2.0), (784, 9.3, 1e-4, 3.0)]
    for k, (n_dims, mean_norm, low, high) in enumerate(cases):
        hp = hyperparameter_rule(n_dims, mean_norm)
        case = f"case {k + 1} (N = {n_dims}, n_bar = {mean_norm}, low = {low}, high = {high}, M = {hp.M})"
        got = band(hp, low, high)
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            raise Wrong(f"{case}: expected a pair (m_low, m_high), got {got!r}")
        for name, g, e in zip(("m_low", "m_high"), got, band_exponents(hp, low, high)):
            compare_number(f"{case}, {name}", g, e, rel=1e-6)
    return "(m_low, m_high) match perturb.band_exponents for 4 hidden cases, clipping included"


@exercise("06.2", "the Fréchet distance",
          "fit a Gaussian (mean, covariance with rowvar=False) to each feature set; the distance is "
          "||mu_a - mu_b||^2 + tr(C_a + C_b - 2 (C_a C_b)^{1/2}), with scipy.linalg.sqrtm for the matrix square root")
def _check_frechet(frechet) -> str:
    from ..metrics import frechet_distance

    g = _gen(60)
    base = torch.randn(400, 6, generator=g, dtype=torch.float64)
    mix = torch.eye(6, dtype=torch.float64) + 0.3 * torch.randn(6, 6, generator=g, dtype=torch.float64)
    cases = [("two clouds, shifted", base, base @ mix * 0.5 + 1.0),
             ("correlated against isotropic", base @ mix, torch.randn(300, 6, generator=g, dtype=torch.float64)),
             ("a cloud against itself", base, base.clone())]
    for k, (name, a, b) in enumerate(cases):
        got = frechet(a, b)
        if isinstance(got, torch.Tensor):
            got = got.item()
        # float64 features; sqrtm and metrics' 1e-6 regularization differ from a plain answer by ~1e-5
        compare_number(f"case {k + 1} ({name})", got, frechet_distance(a, b), rel=1e-4, abs_tol=1e-4)
    return "the distance matches metrics.frechet_distance on 3 hidden pairs of feature sets"


# --------------------------------------------------------------------------------------------------
# 07 PFGM++
# --------------------------------------------------------------------------------------------------

@exercise("07.1", "drawing the PFGM++ kernel's radius",
          "R^2 / r^2 ~ BetaPrime(N/2, D/2): draw u ~ Beta(N/2, D/2) from the generator (e.g. scipy.stats.beta(N/2, D/2)"
          ".ppf of torch.rand(n, generator=generator)) and set R = r sqrt(u / (1 - u))")
def _check_kernel_radius(draw) -> str:
    from scipy import stats

    n = 20_000
    for k, (n_dims, extra, r) in enumerate([(2, 1.0, 1.0), (2, 8.0, 1.4), (10, 64.0, 4.0), (784, 2048.0, 30.0)]):
        case = f"case {k + 1} (N = {n_dims}, D = {extra:g}, r = {r}, {n} draws)"
        radii = _as_tensor("the radii", draw(n, n_dims, extra, r, _gen(70 + k)), case)
        if tuple(radii.shape) != (n,):
            raise Wrong(f"{case}: expected shape ({n},), got {tuple(radii.shape)}")
        if not (torch.isfinite(radii).all() and (radii >= 0).all()):
            raise Wrong(f"{case}: radii must be finite and >= 0")
        law = stats.betaprime(n_dims / 2, extra / 2)
        p = stats.kstest((radii.double() / r).pow(2).numpy(), law.cdf).pvalue
        if p < 1e-4:
            median = float((radii.double() / r).median())
            raise Wrong(f"{case}: R / r does not follow the kernel's law (KS p = {p:.1e}); its median is {median:.4g}, "
                        f"the law's is {math.sqrt(law.median()):.4g}")
    return "the radii follow BetaPrime(N/2, D/2) (Kolmogorov-Smirnov) for 4 hidden (N, D, r)"


@exercise("07.2", "the ideal PFGM++ denoiser",
          "weights w_i ∝ (||x - y_i||^2 + r^2)^(-(N + D)/2) with r = sigma sqrt(D), normalized with a softmax over their "
          "logs; the denoiser is sum_i w_i y_i")
def _check_ideal_denoiser(denoiser) -> str:
    from ..data import sample_toy
    from ..methods import PFGMpp

    y = sample_toy("moons", 300, _gen(80)).double()
    for k, (extra, sigma) in enumerate([(1.0, 0.05), (8.0, 0.3), (64.0, 1.0), (1e5, 0.2)]):
        x = y[:30] + sigma * torch.randn(30, 2, generator=_gen(81 + k), dtype=torch.float64)
        s = torch.full((30,), sigma, dtype=torch.float64)
        expected = PFGMpp((2,), D=extra).ideal_denoiser(x, s, y)
        compare(f"case {k + 1} (D = {extra:g}, sigma = {sigma}, 30 points, 300 data points)", denoiser(x, sigma, y, extra),
                expected, rtol=1e-6, atol=1e-9)
    return "E[y | x, r] matches pfgmpp.PFGMpp.ideal_denoiser for 4 hidden (D, sigma)"


# --------------------------------------------------------------------------------------------------
# 08 PFGM against diffusion
# --------------------------------------------------------------------------------------------------

@exercise("08.1", "the NFE needed for a quality",
          "go through the NFE in increasing order and return the first whose score is at or below the threshold; "
          "return None when none is (a failed run scores inf)")
def _check_nfe_to_reach(nfe_to_reach) -> str:
    cases = [
        ("a curve that reaches 1.2 at NFE 20", [10, 20, 36, 50], [2.5, 1.19, 1.1, 1.3], 1.2, 20),
        ("unsorted NFE", [50, 10, 36, 20], [1.1, 3.0, 1.15, 1.5], 1.2, 36),
        ("never reached", [6, 10, 20], [9.0, 4.0, 1.9], 1.2, None),
        ("a failed run (inf) on the way", [5, 10, 20], [math.inf, 1.0, 0.9], 1.2, 10),
        ("exactly at the threshold", [10, 20], [1.2, 1.0], 1.2, 10),
    ]
    for name, nfe, score, threshold, expected in cases:
        got = nfe_to_reach(list(nfe), list(score), threshold)
        if got != expected:
            raise Wrong(f"case '{name}' (NFE {nfe}, scores {score}, threshold {threshold}): got {got!r}, "
                        f"expected {expected!r}")
    return "nfe_to_reach is right on 5 hidden curves (unsorted, unreached, failed runs, ties)"

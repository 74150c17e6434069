"""Automatic feedback for the notebooks' exercises: `check("04.2", your_function)`.

Each exercise runs the reader's answer on cases the reader does not see, compares it with the package's own
reference, and prints what went wrong (which case, expected against received, a hint), or a tick:

    >>> from pfgm_lite import exercises
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
# 04 learning the field
# --------------------------------------------------------------------------------------------------

@exercise("04.1", "the loss by hand",
          "perturb the first batch_size points of the large batch with method.perturb(y, generator), take the target "
          "from the whole large batch, feed method.network_input(x, z) to the net, and average 1/2 ||f - v||^2 "
          "(summed over the N + 1 components) over the mini-batch")
def _check_loss(loss_fn) -> str:
    from .data import sample_toy
    from .methods import PFGM
    from .nets import MLP
    from .perturb import hyperparameters_for
    from .train import loss_on_batch

    for k, (name, batch_size) in enumerate([("moons", 32), ("checkerboard", 17), ("8gaussians", 64)]):
        large = sample_toy(name, 512, _gen(40 + k))
        method = PFGM(hyperparameters_for(large), (2,), gamma=5.0 if k == 1 else "scaled")
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
    from .methods import PFGM
    from .perturb import hyperparameter_rule

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
    from .methods import PFGM
    from .perturb import hyperparameter_rule
    from .sampling import sample

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

    from .prior import prior_radius_cdf

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
    from .perturb import band_exponents, hyperparameter_rule

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
    from .metrics import frechet_distance

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

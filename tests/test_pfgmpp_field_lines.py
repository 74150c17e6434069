"""The flux argument of PFGM++ (notebook 07, section 2): the field lines of a few charges in R^{N+D}, started with
equal flux, cross the cylinder "extra radius = r1" with the kernel mixture (1/M) sum_i p_r1(x | y_i),
p_r(x | y) ∝ (||x - y||^2 + r^2)^{-(N+D)/2}; the same lines in the field of a wrong dimension do not.
Lines are traced in the reduced coordinates (x, r) by flows.trace_field_lines(..., power=N + D)."""
from __future__ import annotations

import pytest
import torch
from scipy import stats

from pfgm_lite import flows, methods, physics

F64 = torch.float64
N = 2
CHARGES = torch.tensor([[-1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.3, -0.8]], dtype=F64)
EPS, R1, ALPHA = 1e-2, 3.0, 0.01          # start distance, end radius, level (two KS tests, Bonferroni)


def flux_uniform_starts(D: int, n: int, g: torch.Generator):
    """A random charge, then EPS * (a uniform direction u of R^{N+D}): x = y + EPS u_x, r = EPS ||u_z||."""
    i = torch.randint(0, len(CHARGES), (n,), generator=g)
    u = methods.uniform_directions(n, N + D, g, dtype=F64)
    return CHARGES[i] + EPS * u[:, :N], EPS * u[:, N:].norm(dim=1)


def kernel_mixture(D: int, n: int, g: torch.Generator) -> torch.Tensor:
    """Exact draws of (1/M) sum_i p_R1(x | y_i): a random charge plus R u, R^2 / R1^2 ~ BetaPrime(N/2, D/2)."""
    i = torch.randint(0, len(CHARGES), (n,), generator=g)
    radius = methods.sample_kernel_radius(n, N, D, R1, g, clip=0.0, dtype=F64)
    return CHARGES[i] + radius[:, None] * methods.uniform_directions(n, N, g, dtype=F64)


def two_distances(x: torch.Tensor):
    """Distance to the nearest charge and distance from the charges' centre: (n,), (n,)."""
    return ((x[:, None] - CHARGES) ** 2).sum(-1).min(1).values.sqrt(), (x - CHARGES.mean(0)).norm(dim=1)


def smallest_p(D: int, power: float, n: int = 4000, seed: int = 0) -> float:
    g = torch.Generator().manual_seed(seed)
    x0, r0 = flux_uniform_starts(D, n, g)
    reference = kernel_mixture(D, n, g)
    x1 = flows.trace_field_lines(x0, r0, R1, CHARGES, steps=150, power=power)
    return min(stats.ks_2samp(a.numpy(), b.numpy()).pvalue for a, b in zip(two_distances(x1), two_distances(reference)))


@pytest.mark.parametrize("D", [2, 8])
def test_field_lines_cross_with_the_kernel_mixture_only_for_the_right_exponent(D):
    assert smallest_p(D, N + D) > ALPHA / 2                   # the field of R^{N+D}: accepted
    assert smallest_p(D, N + D - 2) < ALPHA / 2               # the field of R^{N+D-2}, same starts: rejected


def test_reduced_velocity_is_r_ex_over_er_of_the_full_field():
    """dx/d ln r from the reduced tracer equals r E_x / E_r of the exact field in R^{N+D} (physics.poisson_field)."""
    g = torch.Generator().manual_seed(1)
    D = 3
    x, r = torch.randn(20, N, generator=g, dtype=F64), torch.rand(20, generator=g, dtype=F64) + 0.1
    z = r[:, None] * methods.uniform_directions(20, D, g, dtype=F64)            # any direction with ||z|| = r
    field = physics.poisson_field(torch.cat([x, z], 1), torch.cat([CHARGES, torch.zeros(len(CHARGES), D, dtype=F64)], 1))
    expected = r[:, None] * field[:, :N] / field[:, N:].norm(dim=1, keepdim=True)
    torch.testing.assert_close(flows.field_line_velocity(x, r, CHARGES, power=N + D), expected, rtol=1e-10, atol=1e-12)
    wrong = flows.field_line_velocity(x, r, CHARGES, power=N + D - 2)
    assert (wrong - expected).abs().max() > 1e-3                                 # and the check can fail


def test_default_power_is_pfgm_and_power_must_be_positive():
    g = torch.Generator().manual_seed(2)
    x0 = torch.randn(10, N, generator=g, dtype=F64)
    default = flows.trace_field_lines(x0, 0.1, 2.0, CHARGES, steps=20)
    torch.testing.assert_close(default, flows.trace_field_lines(x0, 0.1, 2.0, CHARGES, steps=20, power=N + 1),
                               rtol=0, atol=0)
    with pytest.raises(ValueError, match="power"):
        flows.trace_field_lines(x0, 0.1, 2.0, CHARGES, power=-1.0)

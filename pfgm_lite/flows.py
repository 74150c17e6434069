"""Field lines of charges on the z = 0 plane: the forward flow of PFGM and its hemisphere crossings.

Along a field line z only grows (E_z > 0 above the plane), so z, or better t = log z, parametrizes it.
With E_hat = sum_i w_i (x~ - y~_i) (the softmax-weighted field, see physics.weighted_field) the
z-component is exactly z, so the line obeys  dx/d(log z) = z E_x / E_z = E_hat_x  (Xu et al. 2022, Sec. 3.3).
The same holds for PFGM++ (Xu et al. 2023) in the reduced coordinates (x, r), r = ||z|| of D extra dimensions: the
field (x~ - y~) / ||x~ - y~||^{N+D} has the same form with the exponent N+D in place of N+1 (`power`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import special

from .checks import check_int, check_positive, check_tensor
from .physics import augment, sample_poisson_kernel, weighted_field

#: flux_start_points refuses a max_offset that keeps less of the offsets' law than this (the redraws would not end)
MIN_KEPT_SHARE = 0.01


def field_line_velocity(x: torch.Tensor, z: torch.Tensor, data: torch.Tensor,
                        power: float | None = None) -> torch.Tensor:
    """Velocity of a field line in log z.

    x:       (B, N) positions, z: (B,) heights > 0
    data:    (M, N) unit charges on the plane z = 0
    power:   exponent p of the field sum_i (x~ - y~_i) / ||x~ - y~_i||^p: N+1 (default, PFGM), N+D (PFGM++, z = r)
    returns: (B, N)  dx/d(log z) = z E_x / E_z = E_hat_x
    """
    charges = augment(data, 0.0)
    e_hat, _ = weighted_field(augment(x, z), charges, power=power)
    return e_hat[:, :-1]


def _rk4_step(x: torch.Tensor, s: torch.Tensor, ds: torch.Tensor, data: torch.Tensor,
              power: float | None = None) -> torch.Tensor:
    """One classical Runge-Kutta step in s = log z (per-sample step ds: (B,))."""
    h = ds[:, None]
    k1 = field_line_velocity(x, torch.exp(s), data, power)
    k2 = field_line_velocity(x + 0.5 * h * k1, torch.exp(s + 0.5 * ds), data, power)
    k3 = field_line_velocity(x + 0.5 * h * k2, torch.exp(s + 0.5 * ds), data, power)
    k4 = field_line_velocity(x + h * k3, torch.exp(s + ds), data, power)
    return x + h * (k1 + 2 * k2 + 2 * k3 + k4) / 6


def _check_flow_inputs(x0: torch.Tensor, data: torch.Tensor) -> None:
    check_tensor("data", data, ndim=2, min_last_dim=1)
    check_tensor("x0", x0, ndim=2, last_dim=data.shape[-1])


def trace_field_lines(x0: torch.Tensor, z0: torch.Tensor | float, z1: float, data: torch.Tensor,
                      steps: int = 200, return_path: bool = False, power: float | None = None):
    """Follow field lines of the charges `data` from height z0 to height z1 (up or down), RK4 in log z.

    x0:      (B, N) start positions, z0: (B,) or float start heights > 0, z1: end height > 0
    data:    (M, N) charge positions on the plane z = 0
    power:   exponent p of the field sum_i (x~ - y~_i) / ||x~ - y~_i||^p: N+1 (default, PFGM); N+D traces PFGM++'s
             lines in the reduced coordinates (x, r), with z the radius r of the D extra dimensions
    returns: x1 (B, N) at z = z1; with return_path, also the path (steps+1, B, N+1) of points (x, z)
    """
    _check_flow_inputs(x0, data)
    check_int("steps", steps)
    check_positive("z1", z1)
    if power is not None:
        power = check_positive("power", power)
    z0 = torch.as_tensor(z0, dtype=x0.dtype, device=x0.device).expand(x0.shape[0]).clone()
    if not (z0 > 0).all() or not torch.isfinite(z0).all():
        raise ValueError(f"z0 must be finite and > 0, got min z0 = {z0.min().item():.4g}")
    data = data.to(dtype=x0.dtype, device=x0.device)
    s = torch.log(z0)
    ds = (math.log(z1) - s) / steps
    x = x0.clone()
    path = [augment(x, torch.exp(s))] if return_path else None
    for _ in range(steps):
        x = _rk4_step(x, s, ds, data, power)
        s = s + ds
        if return_path:
            path.append(augment(x, torch.exp(s)))
    return (x, torch.stack(path)) if return_path else x


@dataclass
class Crossings:
    """Where field lines cross the hemisphere ||x~|| = radius.

    points: (B, N+1) crossing points (on the sphere, z >= 0)
    polar_angle: (B,) angle theta from the +z axis, in [0, pi/2]
    """

    points: torch.Tensor
    polar_angle: torch.Tensor


def flux_start_points(data: torch.Tensor, n: int, z0: float, generator: torch.Generator | None = None,
                      max_offset: float | None = None) -> torch.Tensor:
    """Start points on the plane z = z0 distributed like the upward flux through it.

    A unit charge at y sends the flux density E_z = (1/2) P_{z0}(x - y) up through z = z0 (P the Poisson
    kernel, which integrates to 1: half of the unit flux goes up); M charges send (1/2) sum_i P_{z0}(x - y_i),
    total M/2. Normalized, a start point has density (1/M) sum_i P_{z0}(x - y_i): a random charge plus a
    Poisson-kernel offset. Lines started this way carry equal flux: this is the exact statement of the
    theorem for any z0 > 0, even for point charges.
    max_offset: redraw the (rare, heavy-tailed) offsets longer than this; None keeps the exact law. It must keep at
    least 1% of the law: P(R <= max_offset) = I_u(N/2, 1/2), u = max_offset^2 / (max_offset^2 + z0^2), else the
    redraws would go on for ever (the acceptance falls like (max_offset / z0)^N), and a ValueError says so at once.
    data: (M, N); returns: (n, N)
    """
    check_tensor("data", data, ndim=2, min_last_dim=1)
    check_int("n", n)
    z0 = check_positive("z0", z0)
    dim = data.shape[1]
    if max_offset is not None:
        max_offset = check_positive("max_offset", max_offset)
        kept = float(special.betainc(dim / 2, 0.5, max_offset**2 / (max_offset**2 + z0**2)))
        if kept < MIN_KEPT_SHARE:
            raise ValueError(f"max_offset = {max_offset:g} keeps only {kept:.2g} of the offsets at z0 = {z0:g} in "
                             f"N = {dim} (they have radius R with R^2 / z0^2 ~ BetaPrime(N/2, 1/2)); it must keep at "
                             f"least {MIN_KEPT_SHARE:g}: use a larger max_offset (or None for the exact law)")
    idx = torch.randint(0, data.shape[0], (n,), generator=generator)
    offset = sample_poisson_kernel(n, dim, z0, generator=generator, dtype=data.dtype)
    if max_offset is not None:
        while (far := offset.norm(dim=1) > max_offset).any():
            offset[far] = sample_poisson_kernel(int(far.sum()), dim, z0, generator, data.dtype)
    return data[idx.to(data.device)] + offset.to(data.device)


def hemisphere_crossings(data: torch.Tensor, radius: float, x0: torch.Tensor, z0: float = 1e-2,
                         steps_per_unit: int = 6) -> Crossings:
    """Follow field lines of the charges `data` from (x0, z0) upward; record where they cross the sphere of `radius`.

    data:    (M, N) charges on the plane z = 0
    x0:      (B, N) start positions at height z0 (see flux_start_points)
    radius:  sphere radius r (must exceed the start points' distance from the origin)
    steps_per_unit: RK4 steps per unit of log z; crossings are interpolated linearly in log ||x~||
    returns: Crossings(points (B, N+1), polar_angle (B,))
    """
    _check_flow_inputs(x0, data)
    radius = check_positive("radius", radius)
    z0 = check_positive("z0", z0)
    check_int("steps_per_unit", steps_per_unit)
    start = augment(x0, z0).norm(dim=1)
    if (start >= radius).any():
        raise ValueError(f"radius must exceed the start points' norm: radius = {radius}, max start norm = "
                         f"{start.max().item():.4g}")
    data = data.to(dtype=x0.dtype, device=x0.device)
    steps = max(1, math.ceil(steps_per_unit * (math.log(radius) - math.log(z0))))
    ds_value = (math.log(radius) - math.log(z0)) / steps
    x, s = x0.clone(), torch.full((x0.shape[0],), math.log(z0), dtype=x0.dtype, device=x0.device)
    result = torch.zeros(x0.shape[0], x0.shape[1] + 1, dtype=x0.dtype, device=x0.device)
    active = torch.arange(x0.shape[0], device=x0.device)
    for step in range(steps):
        prev = augment(x, torch.exp(s))
        ds = torch.full_like(s, ds_value)
        x = _rk4_step(x, s, ds, data)
        s = s + ds
        here = augment(x, torch.exp(s))
        out = here.norm(dim=1) >= radius
        if step == steps - 1:
            # z has reached the radius; a vertical line can fall short of it by rounding: it crosses here
            out = torch.ones_like(out)
        if out.any():
            lo, hi = prev[out].norm(dim=1).log(), here[out].norm(dim=1).log()
            frac = ((math.log(radius) - lo) / (hi - lo)).clamp(0, 1)[:, None]
            p = prev[out] + frac * (here[out] - prev[out])
            result[active[out]] = p * radius / p.norm(dim=1, keepdim=True)
            active, x, s = active[~out], x[~out], s[~out]
        if active.numel() == 0:
            break
    # on the sphere z <= radius, so every line has crossed once z reaches the radius
    theta = torch.arccos((result[:, -1] / radius).clamp(-1, 1))
    return Crossings(points=result, polar_angle=theta)


def uniform_polar_angle_cdf(theta, n: int):
    """CDF of the polar angle of a uniform point on the upper hemisphere of S^n (in R^{n+1}).

    theta: array-like in [0, pi/2]; returns P(Theta <= theta) = I_{sin^2 theta}(n/2, 1/2)
    (cos^2 Theta ~ Beta(1/2, n/2); for n = 1 the angle is uniform, for n = 2 cos Theta is uniform).
    """
    check_int("n", n)
    theta = np.asarray(theta.cpu() if isinstance(theta, torch.Tensor) else theta, dtype=np.float64)
    return special.betainc(n / 2, 0.5, np.sin(np.clip(theta, 0, np.pi / 2)) ** 2)


def project_to_plane(points: torch.Tensor, z_max: float) -> torch.Tensor:
    """Radial projection from the origin of points with z > 0 onto the plane z = z_max.

    points:  (B, N+1) with z > 0
    returns: (B, N)  x * z_max / z
    """
    check_tensor("points", points, ndim=2, min_last_dim=2)
    z_max = check_positive("z_max", z_max)
    z = points[:, -1]
    if not (z > 0).all():
        raise ValueError(f"points must have z > 0 to be projected onto a plane above, got min z = {z.min().item():.4g}")
    return points[:, :-1] * (z_max / z)[:, None]

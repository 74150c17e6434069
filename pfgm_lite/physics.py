"""Electrostatics in R^{N+1}: sphere areas, Green's function, potential and the exact Poisson field.

Space has D = N + 1 dimensions (N data dimensions plus the extra z axis of PFGM).
A unit charge at y produces  E(x) = (x - y) / (S_N ||x - y||^{N+1}),  the gradient field of the
Green's function G solving  -laplacian G = delta  (Xu et al. 2022, Sec. 2).
All sums over charges are done in log space, so N = 784 or 3072 neither overflows nor underflows
before the final exponential, and in blocks, so memory stays bounded for any number of points.
"""
from __future__ import annotations

import math

import torch

from .checks import check_int, check_positive, check_same_dim, check_tensor

#: default cap on the number of (point, charge) pairs processed at once (times D for low D)
BLOCK_ELEMENTS = 2**20     # pairs per block: ~8 MB per float64 temporary


def augment(x: torch.Tensor, z: torch.Tensor | float) -> torch.Tensor:
    """Append the extra coordinate: (B, N), (B,) or float -> (B, N+1) points x~ = (x, z) of R^{N+1}."""
    z = torch.as_tensor(z, dtype=x.dtype, device=x.device).expand(x.shape[0])
    return torch.cat([x, z[:, None]], dim=1)


def log_sphere_area(n: int) -> float:
    """log S_n, the log surface area of the unit n-sphere in R^{n+1}.

    S_n = 2 pi^{(n+1)/2} / Gamma((n+1)/2); computed with lgamma, so valid for any n (n = 3072: -7.97e3).
    """
    check_int("n", n, minimum=0)
    return math.log(2.0) + 0.5 * (n + 1) * math.log(math.pi) - math.lgamma(0.5 * (n + 1))


def sphere_area(n: int) -> float:
    """S_n: surface area of the unit n-sphere in R^{n+1} (S_0 = 2, S_1 = 2 pi, S_2 = 4 pi, S_3 = 2 pi^2).

    Underflows to 0.0 for n above ~1300; use log_sphere_area there.
    """
    return math.exp(log_sphere_area(n))


def _check_points_and_charges(points: torch.Tensor, charges: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    check_tensor("points", points, ndim=2, min_last_dim=2)
    check_tensor("charges", charges, ndim=2, min_last_dim=2)
    check_same_dim("points", points, "charges", charges)
    if charges.shape[0] == 0:
        raise ValueError("charges must hold at least one charge, got shape (0, D)")
    return points, charges.to(dtype=points.dtype, device=points.device)


def squared_distances(points: torch.Tensor, charges: torch.Tensor) -> torch.Tensor:
    """Pairwise squared distances by the dot-product form (one matrix product, no (B, M, D) tensor).

    points:  (B, D)
    charges: (M, D)
    returns: (B, M)  ||x||^2 + ||y||^2 - 2 x.y, clamped at 0
    That form has absolute error ~ eps (||x||^2 + ||y||^2), which swamps d^2 close to a charge (float32,
    ||x|| ~ 1, d ~ 1e-3); pairs with d^2 < 1e-3 (||x||^2 + ||y||^2) are recomputed as sum (x - y)^2, so every
    pair keeps a relative error below ~1e3 eps. (The test is per pair: a point far from all charges, from the
    prior's heavy tail, has no pair to recompute.)
    """
    x2, y2 = (points**2).sum(-1)[:, None], (charges**2).sum(-1)[None, :]
    d2 = (x2 + y2 - 2.0 * points @ charges.T).clamp_min(0.0)
    if d2.numel():
        i, j = (d2 < 1e-3 * (x2 + y2)).nonzero(as_tuple=True)
        d2[i, j] = ((points[i] - charges[j]) ** 2).sum(-1)
    return d2


def _blocks(n_points: int, n_charges: int, block_elements: int) -> tuple[int, int]:
    charge_block = max(1, min(n_charges, block_elements))
    point_block = max(1, block_elements // charge_block)
    return point_block, charge_block


def weighted_field(points: torch.Tensor, charges: torch.Tensor, power: float | None = None,
                   block_elements: int = BLOCK_ELEMENTS) -> tuple[torch.Tensor, torch.Tensor]:
    """The field of unit charges split into a direction-carrying mean and a log strength.

    points:  (B, D) where the field is evaluated
    charges: (M, D) positions of unit charges
    power:   exponent p of the weights (default D, the Coulomb law in R^D)
    returns: E_hat (B, D) = sum_i w_i (x - y_i),  w_i = d_i^{-p} / sum_j d_j^{-p}   (a softmax over -p log d_i)
             log_strength (B,) = log sum_j d_j^{-p}
    so that the Poisson field is  E = exp(log_strength) / S_{D-1} * E_hat  (paper's E_hat with c(x)).
    Blocks over points and charges keep memory below ~block_elements pairs, and below block_elements numbers per
    block of charges (online softmax over charges).
    Points on top of a charge (d = 0) are treated as d = 1e-30.
    Precision: float32 inputs are computed in float64 and the results rounded back. Near a charge E_hat = x - sum_i
    w_i y_i is a small difference of numbers of the size of x (float32 sums lost 2 digits at z = 1e-3 on 2D data),
    and in high dimension the weights d^-(N+1) multiply the relative error of d^2 by (N+1)/2 (392 for digits: the
    float32 dot-product form of d^2 put the target's norm off by 1e-3 at z ~ 3e-3). Results have the dtype of `points`.
    """
    points, charges = _check_points_and_charges(points, charges)
    dim = points.shape[-1]
    p = float(dim if power is None else power)
    acc = torch.float64 if points.dtype in (torch.float16, torch.bfloat16, torch.float32) else points.dtype
    # at most block_elements numbers of charges per block too: in high dimension a float64 copy of all charges at once
    # is the largest buffer here (4000 digits: 25 MB, and as much again for its squares)
    charge_rows = max(1, block_elements // dim)
    point_block, charge_block = _blocks(points.shape[0], min(charges.shape[0], charge_rows), block_elements)
    e_hats, log_strengths = [], []
    for x in points.to(acc).split(point_block):
        run_max = torch.full((x.shape[0],), -math.inf, dtype=acc, device=x.device)
        run_sum = torch.zeros(x.shape[0], dtype=acc, device=x.device)
        run_mean = torch.zeros_like(x)                                   # sum_i w_i y_i
        for y in charges.split(charge_block):
            y = y.to(acc)
            log_w = -0.5 * p * torch.log(squared_distances(x, y).clamp_min(1e-30))  # (b, m)
            new_max = torch.maximum(run_max, log_w.max(dim=1).values)
            keep = torch.exp(run_max - new_max)
            w = torch.exp(log_w - new_max[:, None])
            run_sum = run_sum * keep + w.sum(dim=1)
            run_mean = run_mean * keep[:, None] + w @ y
            run_max = new_max
        e_hats.append((x - run_mean / run_sum[:, None]).to(points.dtype))
        log_strengths.append((run_max + torch.log(run_sum)).to(points.dtype))
    return torch.cat(e_hats), torch.cat(log_strengths)


def poisson_field(points: torch.Tensor, charges: torch.Tensor,
                  block_elements: int = BLOCK_ELEMENTS) -> torch.Tensor:
    """Exact electric field of unit charges in R^D (D = N + 1).

    points:  (B, D) where the field is evaluated
    charges: (M, D) charge positions
    returns: (B, D)  E(x) = 1/S_N * sum_i (x - y_i) / ||x - y_i||^{N+1}
    Divide by M for the field of the empirical distribution (the PFGM field of a dataset).
    """
    e_hat, log_strength = weighted_field(points, charges, block_elements=block_elements)
    dim = points.shape[-1]
    return torch.exp(log_strength - log_sphere_area(dim - 1))[:, None] * e_hat


def green_function(points: torch.Tensor, charges: torch.Tensor) -> torch.Tensor:
    """Green's function of the Laplacian in R^D, D = N + 1 (-laplacian G = delta, G -> 0 at infinity for D >= 3).

    points:  (B, D)
    charges: (M, D)
    returns: (B, M)  G = 1 / ((N - 1) S_N d^{N-1}) for N >= 2,   G = -log(d) / (2 pi) for N = 1
    """
    points, charges = _check_points_and_charges(points, charges)
    n = points.shape[-1] - 1
    log_d = 0.5 * torch.log(squared_distances(points, charges).clamp_min(1e-30))
    if n == 1:
        return -log_d / (2 * math.pi)
    return torch.exp(-(n - 1) * log_d - math.log(n - 1) - log_sphere_area(n))


def potential(points: torch.Tensor, charges: torch.Tensor, block_elements: int = BLOCK_ELEMENTS) -> torch.Tensor:
    """Electric potential of unit charges in R^D (sum of Green's functions), with E = -grad(potential).

    points:  (B, D)
    charges: (M, D)
    returns: (B,)  phi(x) = sum_i G(x, y_i), summed in log space for N >= 2
    """
    points, charges = _check_points_and_charges(points, charges)
    n = points.shape[-1] - 1
    point_block, _ = _blocks(points.shape[0], charges.shape[0], block_elements)
    if n == 1:
        return torch.cat([green_function(x, charges).sum(1) for x in points.split(point_block)])
    out = []
    for x in points.split(point_block):
        log_d = 0.5 * torch.log(squared_distances(x, charges).clamp_min(1e-30))
        out.append(torch.exp(torch.logsumexp(-(n - 1) * log_d, dim=1) - math.log(n - 1) - log_sphere_area(n)))
    return torch.cat(out)


def log_poisson_kernel(x: torch.Tensor, height: float) -> torch.Tensor:
    """Log of the Poisson kernel: the flux density of a unit charge at the origin through the plane z = height.

    x:       (B, N) points on the plane
    returns: (B,)  log P(x) = log(2 h / S_N) - (N+1)/2 log(||x||^2 + h^2)
    It is also the uniform hemisphere radially projected onto the plane, i.e. the PFGM prior at h = z_max,
    and the N-dimensional Cauchy distribution of scale h. (The sphere is S_N, in R^{N+1}; the official
    likelihood code uses the sphere of R^N instead.)
    """
    check_tensor("x", x, ndim=2, min_last_dim=1)
    height = check_positive("height", height)
    n = x.shape[-1]
    r2 = (x**2).sum(-1) + height**2
    return math.log(2 * height) - log_sphere_area(n) - 0.5 * (n + 1) * torch.log(r2)


def poisson_kernel(x: torch.Tensor, height: float) -> torch.Tensor:
    """Poisson kernel P(x) = 2 h / (S_N (||x||^2 + h^2)^{(N+1)/2}); integrates to 1 over R^N.

    x:       (B, N)
    returns: (B,)
    """
    return torch.exp(log_poisson_kernel(x, height))


def sample_poisson_kernel(n: int, dim: int, height: float, generator: torch.Generator | None = None,
                          dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Draw from the Poisson kernel (N-dimensional Cauchy of scale h): x = h g / |g_0|, g ~ N(0, I_N), g_0 ~ N(0, 1).

    returns: (n, dim). The radius obeys R^2 / h^2 ~ BetaPrime(N/2, 1/2), the direction is uniform.
    """
    check_int("n", n, minimum=0)
    check_int("dim", dim)
    height = check_positive("height", height)
    g = torch.randn(n, dim + 1, generator=generator, dtype=dtype)
    return height * g[:, 1:] / g[:, :1].abs().clamp_min(torch.finfo(dtype).tiny)

"""log p(x) by the instantaneous change of variables along the forward ODE (Chen et al. 2018; Song et al. 2021).

d log p(x(u)) / du = -div_x g(x(u), u) for dx/du = g, so log p(x) = log p_prior(x(1)) + int_0^1 div_x g du. The divergence
is exact (one backward pass per data dimension) or Hutchinson's estimate E[v^T (dg/dx) v] with a Rademacher probe v
(one backward pass); the default picks by dimension.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from scipy.integrate import solve_ivp

from ..checks import check_positive
from ..methods import Method, network_prediction

#: log_likelihood computes the divergence exactly up to this many data dimensions, Hutchinson's estimate above
EXACT_DIVERGENCE_MAX_DIM = 16


def divergence(g: torch.Tensor, x: torch.Tensor, probe: torch.Tensor | None = None) -> torch.Tensor:
    """div_x g = tr(dg/dx) of each row: exact (one backward pass per dimension) when probe is None, else Hutchinson's
    estimate v^T (dg/dx) v with the probe v (E[v v^T] = I, e.g. Rademacher: one backward pass).

    g: (B, n) computed from x (B, n) with x.requires_grad; probe: (B, n) or None; returns (B,)
    """
    if probe is None:
        return sum(torch.autograd.grad(g[:, i].sum(), x, retain_graph=True)[0][:, i] for i in range(g.shape[1]))
    return (torch.autograd.grad((g * probe).sum(), x)[0] * probe).sum(1)


def log_likelihood(method: Method, net: torch.nn.Module, x: torch.Tensor, t_max: float,
                   log_prior: Callable[[torch.Tensor], torch.Tensor], exact_divergence: bool | None = None,
                   rtol: float = 1e-5, atol: float = 1e-5, generator: torch.Generator | None = None,
                   labels: torch.Tensor | None = None) -> torch.Tensor:
    """log p(x) by the instantaneous change of variables along the forward ODE from t_min to t_max.

    x:        (B, *shape) points at t = method.t_min
    log_prior: (B, *shape) -> (B,) log density of the end points (PFGM: physics.log_poisson_kernel at z_max)
    exact_divergence: True: N backward passes per evaluation; False: Hutchinson's estimate with one Rademacher probe
              per point (drawn once from `generator`): unbiased, with variance sum_{i<j} (A_ij + A_ji)^2, A = dg/dx;
              None (default): exact for N <= EXACT_DIVERGENCE_MAX_DIM, Hutchinson above (digits: 1 pass, not 784)
    labels:   (B,) class labels for a class-conditional network, or None
    returns:  (B,)  log p(x) = log_prior(x(1)) + int_0^1 div_x g(x(u), u) du,  g = dx/du
    The ODE runs in u in [0, 1] with t geometric in u (time "log") or linear in u (time "linear"); RK45 chooses
    its own steps, so the grid only sets the variable it integrates in. The network is put back in the mode it
    had (train or eval).
    """
    method.check_data("x", x)
    t_max = check_positive("t_max", t_max)
    device = next(net.parameters()).device
    shape, b = x.shape, x.shape[0]
    n = method.N
    if exact_divergence is None:
        exact_divergence = n <= EXACT_DIVERGENCE_MAX_DIM
    if labels is not None and labels.shape != (b,):
        raise ValueError(f"labels must have shape ({b},), one per point, got {tuple(labels.shape)}")
    if method.time == "log":
        s0, span = math.log(method.t_min), math.log(t_max) - math.log(method.t_min)

        def t_at(u: float) -> float:
            return math.exp(s0 + u * span)
    else:
        span = t_max - method.t_min

        def t_at(u: float) -> float:
            return method.t_min + u * span
    probe = None
    if not exact_divergence:
        probe = (torch.randint(0, 2, (b, n), generator=generator) * 2 - 1).to(device, torch.float32)
    cond = None if labels is None else labels.to(device)
    was_training = net.training
    net.eval()

    def g_and_div(xf: torch.Tensor, u: float) -> tuple[torch.Tensor, torch.Tensor]:
        xf = xf.detach().requires_grad_(True)
        t = torch.full((b,), t_at(u), device=device)
        xs = xf.reshape(shape)
        x_in, c = method.network_input(xs, t)
        g = span * method.velocity(network_prediction(net, x_in, c, cond), xs, t).reshape(b, n)
        return g.detach(), divergence(g, xf, probe).detach()

    def fun(u, y):
        xf = torch.from_numpy(y[: b * n]).float().to(device).reshape(b, n)
        g, div = g_and_div(xf, float(u))
        return np.concatenate([g.reshape(-1).double().cpu().numpy(), div.double().cpu().numpy()])

    y0 = np.concatenate([x.reshape(-1).double().cpu().numpy(), np.zeros(b)])
    try:
        sol = solve_ivp(fun, (0.0, 1.0), y0, method="RK45", rtol=rtol, atol=atol)
    finally:
        net.train(was_training)
    if not sol.success:
        raise RuntimeError(f"RK45 failed: {sol.message}")
    end = torch.from_numpy(sol.y[: b * n, -1]).float().reshape(shape)
    integral = torch.from_numpy(sol.y[b * n:, -1]).float()
    return log_prior(end) + integral

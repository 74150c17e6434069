"""The ODE sampler shared by every method: integrate dx/d(log t) = velocity from t0 down to t_min.

For PFGM, t = z and the backward ODE in log z is  dx/d(log z) = z E_x / E_z  (Xu et al. 2022, Sec. 3.3):
z shrinks geometrically, so equal steps in log z spend the effort near the data where the field turns.
Each sample may start at its own t0 (the "ray" prior), so we integrate in a normalized time u in [0, 1]:
    s(u) = log t0 + u (log t1 - log t0),   dx/du = (log t1 - log t0) * velocity(x, exp(s(u))),
a geometric grid in t (PFGM's official grid in z). A method with `rho` set uses EDM's grid instead (Karras et al.
2022, eq. 5): t(u) = (t0^{1/rho} + u (t1^{1/rho} - t0^{1/rho}))^rho, dx/du = velocity * d log t / du.
Euler and Heun use equal steps in u; RK45 is scipy's adaptive solve_ivp (rtol = atol = 1e-4 as in the paper).
NFE counts network evaluations exactly (each velocity call is one batch evaluation).
"""
from __future__ import annotations

import gc
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from scipy.integrate import RK45, solve_ivp
from tqdm.auto import tqdm

from .checks import check_int, check_positive
from .methods import Method, Predictor
from .runtime import trim_freed_memory

SOLVERS = ("euler", "heun", "rk45")


@dataclass
class ODEResult:
    """x: (B, *shape) end points; nfe: network evaluations; trajectory: list of (x, t) along the way."""

    x: torch.Tensor
    nfe: int
    trajectory: list = field(default_factory=list)


def _check_solver(solver: str, steps: int) -> None:
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    check_int("steps", steps)


def time_grid(t0: torch.Tensor, t1: float, rho: float | None = None):
    """The map u in [0, 1] -> t(u) from t0 (B,) to t1, and d log t / du: geometric (rho None) or EDM's rho grid.

    returns: (t_at(u) -> (B,), dlogt_du(u) -> (B,))
    """
    s0 = torch.log(t0)
    span = math.log(t1) - s0                                     # (B,)
    if rho is None:
        return (lambda u: torch.exp(s0 + u * span)), (lambda u: span)
    a = t0 ** (1 / rho)
    b = t1 ** (1 / rho) - a

    def t_at(u: float) -> torch.Tensor:
        return (a + u * b) ** rho

    def dlogt_du(u: float) -> torch.Tensor:
        return rho * b / (a + u * b)

    return t_at, dlogt_du


def integrate(method: Method, predict: Predictor, x0: torch.Tensor, t0: torch.Tensor | float, t1: float,
              solver: str = "heun", steps: int = 50, rtol: float = 1e-4, atol: float = 1e-4,
              return_trajectory: bool = False, progress: bool = False, rho: float | None = None) -> ODEResult:
    """Integrate dx/d(log t) = method.velocity from t0 to t1 (down to sample, up to encode).

    x0:      (B, *shape) start points, t0: (B,) or float start scales > 0, t1: end scale > 0
    solver:  "euler" (NFE = steps), "heun" (NFE = 2 steps), "rk45" (adaptive, NFE from scipy)
    rho:     the time grid: EDM's t^(1/rho) grid with this rho; None takes the method's own (method.rho: None for
             PFGM's geometric grid, 7 for EDM and PFGM++)
    returns: ODEResult(x (B, *shape) at t1, nfe, trajectory [(x, t)] if requested)
    """
    _check_solver(solver, steps)
    method.check_data("x0", x0)
    t1 = check_positive("t1", t1)
    t0 = torch.as_tensor(t0, dtype=x0.dtype, device=x0.device).expand(x0.shape[0]).clone()
    if not (torch.isfinite(t0).all() and (t0 > 0).all()):
        raise ValueError(f"t0 must be finite and > 0, got min {t0.min().item():.4g}")
    if rho is not None:
        check_positive("rho", rho)
    t_at, dlogt_du = time_grid(t0, t1, method.rho if rho is None else rho)
    nfe = 0

    def f(x: torch.Tensor, u: float) -> torch.Tensor:
        nonlocal nfe
        nfe += 1
        t = t_at(u)
        prediction = predict(x, t).to(x.device, x.dtype)
        return dlogt_du(u).view(-1, *[1] * (x.dim() - 1)) * method.velocity(prediction, x, t)

    trajectory = [(x0.clone(), t0.clone())] if return_trajectory else []
    if solver in ("euler", "heun"):
        x, h = x0.clone(), 1.0 / steps
        for k in tqdm(range(steps), disable=not progress, desc=solver, leave=False):
            u = k * h
            d = f(x, u)
            if solver == "euler":
                x = x + h * d
            else:
                x_pred = x + h * d
                x = x + 0.5 * h * (d + f(x_pred, u + h))
            if return_trajectory:
                trajectory.append((x.clone(), t_at(u + h)))
        return ODEResult(x=x, nfe=nfe, trajectory=trajectory)

    shape, dtype, device = x0.shape, x0.dtype, x0.device

    def fun(u, y):
        x = torch.from_numpy(y).to(device=device, dtype=dtype).reshape(shape)
        return f(x, float(u)).reshape(-1).double().cpu().numpy()

    y0 = x0.reshape(-1).double().cpu().numpy()
    if return_trajectory:
        sol = solve_ivp(fun, (0.0, 1.0), y0, method="RK45", rtol=rtol, atol=atol, t_eval=np.linspace(0.0, 1.0, 41))
        if not sol.success:
            raise RuntimeError(f"RK45 failed: {sol.message}")
        trajectory = [(torch.from_numpy(sol.y[:, i]).to(device=device, dtype=dtype).reshape(shape),
                       t_at(float(u))) for i, u in enumerate(sol.t)]
        end = sol.y[:, -1]
        del sol
    else:
        # scipy's RK45 stepper driven as solve_ivp drives it (the same steps, the same end point), without the copy of
        # the state at every accepted step that solve_ivp keeps when t_eval is None (300 digits: ~2 MB a step)
        stepper = RK45(fun, 0.0, y0, 1.0, rtol=rtol, atol=atol)
        message = None
        while stepper.status == "running":
            message = stepper.step()
        if stepper.status == "failed":
            raise RuntimeError(f"RK45 failed: {message}")
        end = stepper.y
        del stepper
    # scipy's solvers hold themselves in a reference cycle (their `fun` closes over the solver), so their arrays (the
    # state, 7 stages, ...) would outlive this call until Python's next full collection (300 digits: ~40 MB held)
    gc.collect()
    x = torch.from_numpy(end).to(device=device, dtype=dtype).reshape(shape)
    return ODEResult(x=x, nfe=nfe, trajectory=trajectory)


def sample(method: Method, predict: Predictor, n: int, solver: str = "rk45", steps: int = 50,
           generator: torch.Generator | None = None, t_min: float | None = None, device: torch.device | str = "cpu",
           return_trajectory: bool = False, progress: bool = False, **kwargs) -> ODEResult:
    """Draw n samples: start from method.sample_prior and integrate down to t_min (default method.t_min).

    returns: ODEResult with x (n, *shape); the final t_min is dropped (no denoising step, as in PFGM).
    """
    check_int("n", n)
    _check_solver(solver, steps)
    t_min = method.t_min if t_min is None else check_positive("t_min", t_min)
    x0, t0 = method.sample_prior(n, generator=generator)
    if (t0 <= t_min).any():
        raise ValueError(f"t_min = {t_min} must be below every start scale (min t0 = {t0.min().item():.4g})")
    result = integrate(method, predict, x0.to(device), t0.to(device), t_min, solver=solver, steps=steps,
                       return_trajectory=return_trajectory, progress=progress, **kwargs)
    trim_freed_memory()           # the network calls' small freed buffers go back to the system
    return result


def encode(method: Method, predict: Predictor, x: torch.Tensor, t_max: float, solver: str = "rk45",
           steps: int = 50, **kwargs) -> ODEResult:
    """Forward ODE: carry data (at t = method.t_min) up to t_max (for PFGM, onto the plane z = z_max)."""
    return integrate(method, predict, x, method.t_min, t_max, solver=solver, steps=steps, **kwargs)


def log_likelihood(method: Method, net: torch.nn.Module, x: torch.Tensor, t_max: float,
                   log_prior: Callable[[torch.Tensor], torch.Tensor], exact_divergence: bool = True,
                   rtol: float = 1e-5, atol: float = 1e-5,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """log p(x) by the instantaneous change of variables along the forward ODE from t_min to t_max.

    x:        (B, *shape) points at t = method.t_min
    log_prior: (B, *shape) -> (B,) log density of the end points (PFGM: physics.log_poisson_kernel at z_max)
    returns:  (B,)  log p(x) = log_prior(x(1)) + int_0^1 div_x g(x(u), u) du,  g = dx/du
    The divergence is exact (one backward pass per dimension) or a Hutchinson estimate (Rademacher probe).
    """
    method.check_data("x", x)
    t_max = check_positive("t_max", t_max)
    device = next(net.parameters()).device
    shape, b = x.shape, x.shape[0]
    n = method.N
    s0, span = math.log(method.t_min), math.log(t_max) - math.log(method.t_min)
    probe = None
    if not exact_divergence:
        probe = (torch.randint(0, 2, (b, n), generator=generator) * 2 - 1).to(device, torch.float32)
    net.eval()

    def g_and_div(xf: torch.Tensor, u: float) -> tuple[torch.Tensor, torch.Tensor]:
        xf = xf.detach().requires_grad_(True)
        t = torch.full((b,), math.exp(s0 + u * span), device=device)
        xs = xf.reshape(shape)
        x_in, c = method.network_input(xs, t)
        g = span * method.velocity(net(x_in, c), xs, t).reshape(b, n)
        if exact_divergence:
            div = sum(torch.autograd.grad(g[:, i].sum(), xf, retain_graph=True)[0][:, i] for i in range(n))
        else:
            div = (torch.autograd.grad((g * probe).sum(), xf)[0] * probe).sum(1)
        return g.detach(), div.detach()

    def fun(u, y):
        xf = torch.from_numpy(y[: b * n]).float().to(device).reshape(b, n)
        g, div = g_and_div(xf, float(u))
        return np.concatenate([g.reshape(-1).double().cpu().numpy(), div.double().cpu().numpy()])

    y0 = np.concatenate([x.reshape(-1).double().cpu().numpy(), np.zeros(b)])
    sol = solve_ivp(fun, (0.0, 1.0), y0, method="RK45", rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"RK45 failed: {sol.message}")
    end = torch.from_numpy(sol.y[: b * n, -1]).float().reshape(shape)
    integral = torch.from_numpy(sol.y[b * n:, -1]).float()
    return log_prior(end) + integral

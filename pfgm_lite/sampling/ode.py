"""The ODE sampler shared by every method: integrate the method's velocity from t0 down to t_min.

For PFGM, t = z and the backward ODE in log z is  dx/d(log z) = z E_x / E_z  (Xu et al. 2022, Sec. 3.3):
z shrinks geometrically, so equal steps in log z spend the effort near the data where the field turns.
Each sample may start at its own t0 (the "ray" prior), so we integrate in a normalized time u in [0, 1]:
    s(u) = log t0 + u (log t1 - log t0),   dx/du = (log t1 - log t0) * velocity(x, exp(s(u))),
a geometric grid in t (PFGM's official grid in z). A method with `rho` set uses EDM's grid instead (Karras et al.
2022, eq. 5): t(u) = (t0^{1/rho} + u (t1^{1/rho} - t0^{1/rho}))^rho, dx/du = velocity * d log t / du.
A method whose time variable is "linear" (velocity = dx/dt, as flow matching's) integrates dx/du = velocity * dt/du
on equal steps in t (or the rho grid), and may run down to t = 0.
Euler and Heun use equal steps in u; RK45 is scipy's adaptive solve_ivp (rtol = atol = 1e-4, the official code's
solve_ivp setting).
NFE counts network evaluations exactly (each velocity call is one batch evaluation).
"""
from __future__ import annotations

import gc
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.integrate import RK45, solve_ivp
from tqdm.auto import tqdm

from ..checks import batch_view, check_int, check_positive
from ..methods import Method, Predictor
from ..runtime import trim_freed_memory

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


def time_grid(t0: torch.Tensor, t1: float, rho: float | None = None, time: str = "log"):
    """The map u in [0, 1] -> t(u) from t0 (B,) to t1, and the rate r(u) with dx/du = r(u) * velocity.

    time "log" (velocity = dx/d ln t): r = d ln t / du; geometric in t (rho None) or EDM's rho grid. t0, t1 > 0.
    time "linear" (velocity = dx/dt): r = dt/du; equal steps in t (rho None) or the rho grid. t1 may be 0.
    returns: (t_at(u) -> (B,), rate(u) -> (B,))
    """
    if time == "log" and rho is None:
        s0 = torch.log(t0)
        span = math.log(t1) - s0                                     # (B,)
        return (lambda u: torch.exp(s0 + u * span)), (lambda u: span)
    if time == "linear" and rho is None:
        span = t1 - t0
        return (lambda u: t0 + u * span), (lambda u: span)
    a = t0 ** (1 / rho)
    b = t1 ** (1 / rho) - a

    def t_at(u: float) -> torch.Tensor:
        return (a + u * b) ** rho

    def rate(u: float) -> torch.Tensor:
        if time == "log":
            return rho * b / (a + u * b)                                 # d ln t / du
        return rho * b * (a + u * b) ** (rho - 1)                        # dt / du

    return t_at, rate


def integrate(method: Method, predict: Predictor, x0: torch.Tensor, t0: torch.Tensor | float, t1: float,
              solver: str = "heun", steps: int = 50, rtol: float = 1e-4, atol: float = 1e-4,
              return_trajectory: bool = False, progress: bool = False, rho: float | None = None) -> ODEResult:
    """Integrate the method's ODE (dx/d(log t) = method.velocity, or dx/dt for a "linear" time) from t0 to t1
    (down to sample, up to encode).

    x0:      (B, *shape) start points, t0: (B,) or float start scales > 0, t1: end scale > 0 (>= 0 for "linear")
    solver:  "euler" (NFE = steps), "heun" (NFE = 2 steps), "rk45" (adaptive, NFE from scipy)
    rho:     the time grid: EDM's t^(1/rho) grid with this rho; None takes the method's own (method.rho: None for
             PFGM's geometric grid, 7 for EDM and PFGM++)
    returns: ODEResult(x (B, *shape) at t1, nfe, trajectory [(x, t)] if requested)
    """
    _check_solver(solver, steps)
    method.check_data("x0", x0)
    linear = method.time == "linear"                     # t may reach 0 (velocity = dx/dt)
    t1 = check_positive("t1", t1, allow_zero=linear)
    t0 = torch.as_tensor(t0, dtype=x0.dtype, device=x0.device).expand(x0.shape[0]).clone()
    if not (torch.isfinite(t0).all() and ((t0 >= 0) if linear else (t0 > 0)).all()):
        raise ValueError(f"t0 must be finite and {'>= 0' if linear else '> 0'}, got min {t0.min().item():.4g}")
    if rho is not None:
        check_positive("rho", rho)
    t_at, rate = time_grid(t0, t1, method.rho if rho is None else rho, method.time)
    nfe = 0

    def f(x: torch.Tensor, u: float) -> torch.Tensor:
        nonlocal nfe
        nfe += 1
        t = t_at(u)
        prediction = predict(x, t).to(x.device, x.dtype)
        return batch_view(rate(u), x) * method.velocity(prediction, x, t)

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
    t_min = method.t_min if t_min is None else check_positive("t_min", t_min, allow_zero=method.time == "linear")
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

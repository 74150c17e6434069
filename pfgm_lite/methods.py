"""The small interface that the one trainer and the one ODE sampler are written against, and PFGM.

A method says (shapes: data (B, *shape), N = numel of shape):
  perturb(y, generator) -> x, t         push data off the data manifold; t (B,) is the method's scale
                                         (z for PFGM, sigma for diffusion, r for PFGM++)
  target(x, t, batch)   -> (B, K)       what the network regresses at (x, t), K = N + extra_outputs
  network_input(x, t)   -> x_in, c      what the network sees (preconditioned x, condition c = log t)
  sample_prior(n, gen)  -> x, t0        where the backward ODE starts (t0 (n,) may differ per sample)
  velocity(pred, x, t)  -> (B, *shape)  dx/d(log t), the ODE the sampler integrates from t0 down to t_min
The trainer minimises 1/2 ||net(network_input(x, t)) - target||^2; the sampler integrates velocity.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from .checks import check_positive, check_tensor
from .field import data_scaled_gamma, empirical_field, log_z_velocity_from_normalized, normalize_field
from .perturb import PFGMHyperparameters, band_exponents, perturb
from .prior import CLIP_MODES, sample_prior

Predictor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class Method:
    """Base class: what a generative method must tell the shared trainer and sampler (see module doc)."""

    name = "method"
    extra_outputs = 0
    t_min = 1e-3

    def __init__(self, data_shape: tuple[int, ...]):
        self.data_shape = tuple(int(s) for s in data_shape)
        self.N = int(math.prod(self.data_shape))

    def check_data(self, name: str, y: torch.Tensor) -> torch.Tensor:
        """Raise a clear error unless y has shape (B, *data_shape)."""
        check_tensor(name, y)
        if tuple(y.shape[1:]) != self.data_shape:
            raise ValueError(f"{name} must have shape (B, {', '.join(map(str, self.data_shape))}) for this "
                             f"{self.name} model, got {tuple(y.shape)}")
        return y

    def perturb(self, y: torch.Tensor, generator: torch.Generator | None = None):
        raise NotImplementedError

    def target(self, x: torch.Tensor, t: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def network_input(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def sample_prior(self, n: int, generator: torch.Generator | None = None):
        raise NotImplementedError

    def velocity(self, prediction: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def to_config(self) -> dict:
        raise NotImplementedError

    def predictor(self, net: nn.Module) -> Predictor:
        """(x, t) -> network prediction, in eval mode without gradients, on the network's device."""
        device = next(net.parameters()).device

        def predict(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            net.eval()
            with torch.no_grad():
                x_in, c = self.network_input(x.to(device), t.to(device))
                return net(x_in, c)

        return predict

    def exact_predictor(self, data: torch.Tensor) -> Predictor:
        """(x, t) -> the regression target computed from the whole dataset (no network: the 'perfect' model)."""
        self.check_data("data", data)
        return lambda x, t: self.target(x, t, data.to(x.device))


class PFGM(Method):
    """Poisson Flow Generative Model (Xu et al. 2022) with the fixes that make it work in low dimension.

    hp:          PFGMHyperparameters (sigma, tau, M, z_max, upper_norm, mean_norm; see perturb.hyperparameter_rule)
    gamma:       "scaled" for gamma = n_bar/8 sqrt(1 + ||x~||^2/n_bar^2), or a number (paper: 5)
    precondition: feed the network x / sqrt(1 + pi N z^2 / (2 n_bar^2)) instead of x (paper: False)
    restrict_M:  the official restrict_M rule (paper: True)
    clip:        prior clipping, "ray" or "radius" (paper) or "none"; see prior.sample_prior
    z_velocity:  "exact": dx/dlog z from the predicted x-part and the exact E_hat_z = z;
                 "network": z v_x / v_z with the predicted v_z (paper)
    emphasis:    fraction of training points whose m is drawn from perturb.band_exponents(hp), where the noise
                 per dimension is 0.1 to 3 times the data's scale, instead of U[0, M] (paper: 0)
    PFGM.paper(...) gives the paper's recipe; the defaults are ours (see notebooks 04-05 for why).
    """

    name = "pfgm"
    extra_outputs = 1

    def __init__(self, hp: PFGMHyperparameters, data_shape: tuple[int, ...], gamma: float | str = "scaled",
                 precondition: bool = True, restrict_M: bool = False, clip: str = "ray",
                 z_velocity: str = "exact", emphasis: float = 0.0):
        super().__init__(data_shape)
        if hp.N != self.N:
            raise ValueError(f"hyper-parameters were made for N = {hp.N} but data_shape {self.data_shape} "
                             f"has N = {self.N}")
        if gamma != "scaled":
            gamma = check_positive("gamma", gamma, allow_zero=True)
        if clip not in CLIP_MODES:
            raise ValueError(f"clip must be one of {CLIP_MODES}, got {clip!r}")
        if z_velocity not in ("exact", "network"):
            raise ValueError(f"z_velocity must be 'exact' or 'network', got {z_velocity!r}")
        self.hp, self.gamma, self.precondition = hp, gamma, bool(precondition)
        emphasis = check_positive("emphasis", emphasis, allow_zero=True)
        if emphasis > 1:
            raise ValueError(f"emphasis must be in [0, 1] (a fraction of the training points), got {emphasis}")
        self.restrict_M, self.clip, self.z_velocity = bool(restrict_M), clip, z_velocity
        self.emphasis = float(emphasis)
        self.t_min = hp.z_min

    @classmethod
    def paper(cls, hp: PFGMHyperparameters, data_shape: tuple[int, ...]) -> "PFGM":
        """The official recipe: gamma = 5, raw inputs, restrict_M, radius clipping, network z-velocity."""
        return cls(hp, data_shape, gamma=5.0, precondition=False, restrict_M=True, clip="radius",
                   z_velocity="network")

    def gamma_at(self, x_flat: torch.Tensor, z: torch.Tensor) -> torch.Tensor | float:
        """gamma at the points (x, z): (B,) tensor for "scaled", else the constant."""
        if self.gamma == "scaled":
            return data_scaled_gamma(x_flat, z, self.hp.mean_norm)
        return self.gamma

    def perturb(self, y: torch.Tensor, generator: torch.Generator | None = None):
        """x = y + eps_x (1+tau)^m, z = |eps_z| (1+tau)^m (perturb.perturb); returns x (B, *shape), z (B,)."""
        self.check_data("y", y)
        x, z, _ = perturb(y, self.hp.M, self.hp.sigma, self.hp.tau, self.restrict_M, generator,
                          band=band_exponents(self.hp), emphasis=self.emphasis)
        return x, z

    def target(self, x: torch.Tensor, t: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        """v = -sqrt(N) E_hat / (||E_hat|| + gamma) from the large batch: (B, N+1)."""
        x_flat = x.reshape(x.shape[0], -1)
        e_hat = empirical_field(x_flat, t, batch.reshape(batch.shape[0], -1).to(x.dtype))
        return normalize_field(e_hat, self.gamma_at(x_flat, t))

    def input_scale(self, z: torch.Tensor) -> torch.Tensor:
        """c_in(z) = 1 / sqrt(1 + pi N z^2 / (2 n_bar^2)): keeps ||c_in x|| ~ n_bar at every z. (B,) -> (B,)."""
        if not self.precondition:
            return torch.ones_like(z)
        return torch.rsqrt(1 + math.pi * self.N * z**2 / (2 * self.hp.mean_norm**2))

    def network_input(self, x: torch.Tensor, t: torch.Tensor):
        """(c_in(z) x, log z)."""
        scale = self.input_scale(t).view(-1, *[1] * (x.dim() - 1))
        x_in = x * scale
        return (x_in.reshape(x.shape[0], -1) if len(self.data_shape) == 1 else x_in), torch.log(t)

    def sample_prior(self, n: int, generator: torch.Generator | None = None):
        """Prior on the plane z = z_max (prior.sample_prior with this method's clip rule): x (n, *shape), z (n,)."""
        s = sample_prior(n, self.N, self.hp.z_max, self.hp.upper_norm, clip=self.clip, generator=generator)
        return s.x.reshape(n, *self.data_shape), s.z

    def velocity(self, prediction: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """dx/d(log z): from the x-part and the exact E_hat_z = z (norm capped at ||x|| + 2 n_bar),
        or z v_x / v_z with the predicted v_z (paper)."""
        v_x, v_z = prediction[:, : self.N], prediction[:, self.N]
        if self.z_velocity == "exact":
            x_flat = x.reshape(x.shape[0], -1)
            dx = log_z_velocity_from_normalized(v_x, t, self.gamma_at(x_flat, t))
            # E_hat_x is a convex combination of the displacements x - y_i, so ||E_hat_x|| <= ||x|| + max ||y||;
            # with max ||y|| ~ 2 n_bar this stops a bad prediction far from the data from flinging points away
            bound = x_flat.norm(dim=1) + 2 * self.hp.mean_norm
            dx = dx * (bound / dx.norm(dim=1).clamp_min(1e-30)).clamp(max=1.0)[:, None]
        else:
            dx = t[:, None] * v_x / torch.clamp(v_z, max=-1e-5)[:, None]
        return dx.reshape(x.shape)

    def to_config(self) -> dict:
        """Everything needed to rebuild this method (stored in checkpoints)."""
        return dict(name=self.name, data_shape=list(self.data_shape), hp=self.hp.to_dict(), gamma=self.gamma,
                    precondition=self.precondition, restrict_M=self.restrict_M, clip=self.clip,
                    z_velocity=self.z_velocity, emphasis=self.emphasis)


def method_from_config(config: dict) -> Method:
    """Rebuild a method from Method.to_config()."""
    cfg = dict(config)
    name = cfg.pop("name", None)
    if name == "pfgm":
        hp = PFGMHyperparameters(**cfg.pop("hp"))
        return PFGM(hp, tuple(cfg.pop("data_shape")), **cfg)
    raise ValueError(f"unknown method {name!r} in config; known: 'pfgm'")

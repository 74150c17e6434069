"""PFGM (Xu et al. 2022) as a Method: the normalized Poisson field of a large batch, learned and integrated in log z."""
from __future__ import annotations

import math

import torch

from ..checks import batch_view, check_positive
from ..field import data_scaled_gamma, empirical_field, log_z_velocity_from_normalized, normalize_field
from ..perturb import PFGMHyperparameters, band_exponents, perturb
from ..prior import CLIP_MODES, sample_prior
from .base import Batch, Method

Z_VELOCITIES = ("exact", "paper")


class PFGM(Method):
    """Poisson Flow Generative Model (Xu et al. 2022) with the changes that make it work in low dimension.

    hp:          PFGMHyperparameters (sigma, tau, M, z_max, upper_norm, mean_norm; see perturb.hyperparameter_rule)
    gamma:       "scaled" for gamma = n_bar/8 sqrt(1 + ||x~||^2/n_bar^2) (this repository's own), or a number (paper: 5)
    precondition: feed the network c_in(z) x = x / sqrt(1 + pi N z^2 / (2 n_bar^2)) instead of x (paper: False;
                 the idea is EDM's input scaling c_in, Karras et al. 2022, with PFGM's noise scale)
    restrict_M:  the official restrict_M rule (paper: True)
    clip:        prior clipping, "ray" (ours) or "radius" (paper) or "none"; see prior.sample_prior
    z_velocity:  "exact" (ours): dx/dlog z = E_hat_x, inverted exactly from the predicted x-part with E_hat_z = z,
                 its norm capped at ||x|| + max_norm (a bound for the exact field);
                 "paper": the official sampler, z v_x / (v_z + 1e-5), where below z = z_exp the predicted v_z is
                 replaced by -sqrt(N) z / (sqrt(a^2 + z^2) + gamma), a = gamma n / (1 - n), n = ||v_x|| / sqrt(N)
                 (App. B.2.3); z_exp = 0 uses the network's v_z everywhere
    z_exp:       where "paper" starts to substitute v_z (official: 5 for CIFAR-10, 1 for CelebA, 0.1 for LSUN)
    emphasis:    fraction of training points whose m is drawn from perturb.band_exponents(hp), where the noise
                 per dimension is 0.1 to 3 times the data's scale, instead of U[0, M] (paper: 0; ours, a choice
                 of training-noise distribution like EDM's p(sigma))
    PFGM.paper(...) gives the paper's recipe (the official code); the defaults are ours (notebooks 04-05 measure them).
    """

    name = "pfgm"
    extra_outputs = 1

    def __init__(self, hp: PFGMHyperparameters, data_shape: tuple[int, ...], gamma: float | str = "scaled",
                 precondition: bool = True, restrict_M: bool = False, clip: str = "ray",
                 z_velocity: str = "exact", z_exp: float = 5.0, emphasis: float = 0.0):
        super().__init__(data_shape)
        if hp.N != self.N:
            raise ValueError(f"hyper-parameters were made for N = {hp.N} but data_shape {self.data_shape} "
                             f"has N = {self.N}")
        if gamma != "scaled":
            gamma = check_positive("gamma", gamma, allow_zero=True)
        if clip not in CLIP_MODES:
            raise ValueError(f"clip must be one of {CLIP_MODES}, got {clip!r}")
        if z_velocity not in Z_VELOCITIES:
            raise ValueError(f"z_velocity must be one of {Z_VELOCITIES}, got {z_velocity!r}")
        self.z_exp = check_positive("z_exp", z_exp, allow_zero=True)
        self.hp, self.gamma, self.precondition = hp, gamma, bool(precondition)
        emphasis = check_positive("emphasis", emphasis, allow_zero=True)
        if emphasis > 1:
            raise ValueError(f"emphasis must be in [0, 1] (a fraction of the training points), got {emphasis}")
        self.restrict_M, self.clip, self.z_velocity = bool(restrict_M), clip, z_velocity
        self.emphasis = float(emphasis)
        self.t_min = hp.z_min

    @classmethod
    def paper(cls, hp: PFGMHyperparameters, data_shape: tuple[int, ...], z_exp: float = 5.0) -> PFGM:
        """The official recipe: gamma = 5, raw inputs, restrict_M, radius clipping, and the official sampler's
        z-velocity (v_z substituted below z_exp; CIFAR-10's config: 5)."""
        return cls(hp, data_shape, gamma=5.0, precondition=False, restrict_M=True, clip="radius",
                   z_velocity="paper", z_exp=z_exp)

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

    def target(self, x: torch.Tensor, t: torch.Tensor, batch: Batch) -> torch.Tensor:
        """v = -sqrt(N) E_hat / (||E_hat|| + gamma), E_hat the field of the charges batch.large: (B, N+1).

        With labels (batch.labels and batch.large_labels), a row of class k gets the field of the large batch's
        charges of class k only (the class-conditional field); a row whose label is nets.NO_LABEL (-1), the field
        of all of them.
        """
        large = batch.large.reshape(batch.large.shape[0], -1).to(x.dtype)
        x_flat = x.reshape(x.shape[0], -1)
        if batch.labels is None or batch.large_labels is None:
            e_hat = empirical_field(x_flat, t, large)
        else:
            e_hat = torch.empty(x_flat.shape[0], x_flat.shape[1] + 1, dtype=x.dtype, device=x.device)
            labels, large_labels = batch.labels.to(x.device), batch.large_labels.to(x.device)
            for k in labels.unique().tolist():
                rows = labels == k
                charges = large if k < 0 else large[large_labels == k]
                if charges.shape[0] == 0:
                    raise ValueError(f"batch.large holds no charge of class {k}, which a point of the mini-batch has")
                e_hat[rows] = empirical_field(x_flat[rows], t[rows], charges)
        return normalize_field(e_hat, self.gamma_at(x_flat, t))

    def input_scale(self, z: torch.Tensor) -> torch.Tensor:
        """c_in(z) = 1 / sqrt(1 + pi N z^2 / (2 n_bar^2)): keeps ||c_in x|| ~ n_bar at every z. (B,) -> (B,)."""
        if not self.precondition:
            return torch.ones_like(z)
        return torch.rsqrt(1 + math.pi * self.N * z**2 / (2 * self.hp.mean_norm**2))

    def network_input(self, x: torch.Tensor, t: torch.Tensor):
        """(c_in(z) x, log z)."""
        scale = batch_view(self.input_scale(t), x)
        x_in = x * scale
        return (x_in.reshape(x.shape[0], -1) if len(self.data_shape) == 1 else x_in), torch.log(t)

    def sample_prior(self, n: int, generator: torch.Generator | None = None):
        """Prior on the plane z = z_max (prior.sample_prior with this method's clip rule): x (n, *shape), z (n,)."""
        s = sample_prior(n, self.N, self.hp.z_max, self.hp.upper_norm, clip=self.clip, generator=generator)
        return s.x.reshape(n, *self.data_shape), s.z

    def velocity(self, prediction: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """dx/d(log z) from a prediction (B, N+1) at x (B, *shape), z = t (B,); see z_velocity in the class doc."""
        v_x, v_z = prediction[:, : self.N], prediction[:, self.N]
        x_flat = x.reshape(x.shape[0], -1)
        gamma = self.gamma_at(x_flat, t)
        if self.z_velocity == "exact":
            dx = log_z_velocity_from_normalized(v_x, t, gamma)
            # E_hat_x = sum_i w_i (x - y_i) with w_i >= 0, sum w_i = 1, so ||E_hat_x|| <= ||x|| + max_i ||y_i||:
            # the exact field never reaches this cap; a bad prediction far from the data cannot fling points away
            if self.hp.max_norm is not None:
                bound = x_flat.norm(dim=1) + self.hp.max_norm
                dx = dx * (bound / dx.norm(dim=1).clamp_min(1e-30)).clamp(max=1.0)[:, None]
        else:
            # the official sampler (methods.py, Poisson.ode): below z_exp the predicted v_z is replaced by the value
            # it has for the training target, from ||E_hat_x|| ~ gamma n / (1 - n) (App. B.2.3)
            n = v_x.norm(dim=1) / math.sqrt(self.N)
            e_x = gamma * n / (1 - n)
            v_z_rule = -math.sqrt(self.N) * t / (torch.sqrt(e_x**2 + t**2) + gamma)
            v_z = torch.where(t < self.z_exp, v_z_rule, v_z)
            dx = t[:, None] * v_x / (v_z + 1e-5)[:, None]
        return dx.reshape(x.shape)

    @classmethod
    def from_config(cls, config: dict) -> PFGM:
        """Rebuild from to_config() without its "name" (hp as a dict)."""
        cfg = dict(config)
        hp = PFGMHyperparameters(**cfg.pop("hp"))
        return cls(hp, tuple(cfg.pop("data_shape")), **cfg)

    def to_config(self) -> dict:
        """Everything needed to rebuild this method (stored in checkpoints)."""
        return dict(name=self.name, data_shape=list(self.data_shape), hp=self.hp.to_dict(), gamma=self.gamma,
                    precondition=self.precondition, restrict_M=self.restrict_M, clip=self.clip,
                    z_velocity=self.z_velocity, z_exp=self.z_exp, emphasis=self.emphasis)

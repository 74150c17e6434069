"""The interface that the one trainer and the one sampler are written against, and the registry of methods.

A method says (shapes: data (B, *shape), N = numel of shape):
  perturb(y, generator) -> x, t          push data off the data manifold; t (B,) is the method's scale
                                          (z for PFGM, sigma for EDM and PFGM++)
  target(x, t, batch)   -> (B, K)        what the network regresses at (x, t), K = N + extra_outputs; batch (a Batch)
                                          holds the step's large batch and the clean points x was made from
  network_input(x, t)   -> x_in, c       what the network sees (preconditioned x, condition c = log t)
  sample_prior(n, gen)  -> x, t0         where the backward ODE starts (t0 (n,) may differ per sample)
  velocity(pred, x, t)  -> (B, *shape)   the ODE the sampler integrates from t0 down to t_min: dx/d(ln t) when
                                          time = "log" (PFGM, EDM, PFGM++), dx/dt when time = "linear" (a method
                                          whose t runs down to 0, such as flow matching)
The trainer minimises 1/2 ||net(network_input(x, t)) - target||^2; the sampler integrates velocity.
A class-conditional network takes the labels as a third argument, net(x_in, c, labels) (network_prediction).

Every subclass with a `name` joins METHODS when its class is defined; method_from_config finds it there, so this
module never imports a method. The package's __init__ imports every method module, so all of them are registered
whenever pfgm_lite.methods is imported.
"""
from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from typing import Callable, ClassVar

import torch
from torch import nn

from ..checks import check_int, check_positive, check_tensor

#: the label a class-conditional network reads as "no label" (nets.NO_LABEL; the base imports no network module)
NO_LABEL = -1
#: (x (B, *shape), t (B,)) -> the network's prediction (B, K)
Predictor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: how a method's velocity is written: dx/d(ln t), or dx/dt (t may then reach 0)
TIME_VARIABLES = ("log", "linear")
#: every method with a name, by name (filled by Method.__init_subclass__)
METHODS: dict[str, type[Method]] = {}


@dataclass(frozen=True)
class Batch:
    """The data of a training step that a target may read.

    large:        (L, *shape) the step's large batch B_L (PFGM: the charges of the empirical field)
    y:            (B, *shape) the clean points the perturbed x were made from, row for row (EDM, PFGM++), or None
    labels:       (B,) int64 class labels of y, or None (unconditional)
    large_labels: (L,) int64 class labels of `large`, or None
    """

    large: torch.Tensor
    y: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    large_labels: torch.Tensor | None = None


def network_prediction(net: nn.Module, x_in: torch.Tensor, c: torch.Tensor,
                       labels: torch.Tensor | None = None) -> torch.Tensor:
    """net(x_in, c), or net(x_in, c, labels) for a class-conditional network (labels (B,) int64)."""
    return net(x_in, c) if labels is None else net(x_in, c, labels)


class Method(abc.ABC):
    """Base class: what a generative method must tell the shared trainer and sampler (see the module doc)."""

    name: ClassVar[str]
    extra_outputs = 0
    t_min = 1e-3
    rho: float | None = None     # sampler's time grid: None = equal steps in log t; a number = EDM's t^(1/rho) grid
    time = "log"                 # the velocity's time variable, one of TIME_VARIABLES

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            if cls.time not in TIME_VARIABLES:
                raise TypeError(f"{cls.__name__}.time must be one of {TIME_VARIABLES}, got {cls.time!r}")
            if cls.name in METHODS and METHODS[cls.name].__qualname__ != cls.__qualname__:
                raise TypeError(f"two methods are named {cls.name!r}: {METHODS[cls.name].__qualname__} and "
                                f"{cls.__qualname__}")
            METHODS[cls.name] = cls

    def __init__(self, data_shape: tuple[int, ...]):
        shape = tuple(data_shape)
        for k, s in enumerate(shape):
            check_int(f"data_shape[{k}]", s)
        self.data_shape = tuple(int(s) for s in shape)
        self.N = int(math.prod(self.data_shape))

    def check_data(self, name: str, y: torch.Tensor) -> torch.Tensor:
        """Raise a clear error unless y has shape (B, *data_shape)."""
        check_tensor(name, y)
        if tuple(y.shape[1:]) != self.data_shape:
            raise ValueError(f"{name} must have shape (B, {', '.join(map(str, self.data_shape))}) for this "
                             f"{self.name} model, got {tuple(y.shape)}")
        return y

    @abc.abstractmethod
    def perturb(self, y: torch.Tensor, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Training points from data y (B, *shape): x (B, *shape) and their scale t (B,)."""

    @abc.abstractmethod
    def target(self, x: torch.Tensor, t: torch.Tensor, batch: Batch) -> torch.Tensor:
        """The regression target at (x, t): (B, N + extra_outputs)."""

    @abc.abstractmethod
    def network_input(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What the network is fed: (x_in, condition c (B,))."""

    @abc.abstractmethod
    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Start points of the backward ODE: x (n, *shape) and t0 (n,)."""

    @abc.abstractmethod
    def velocity(self, prediction: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The ODE's right-hand side in the method's time variable (see `time`): (B, *shape)."""

    @abc.abstractmethod
    def to_config(self) -> dict:
        """Everything needed to rebuild this method (stored in checkpoints): {"name": ..., ...}."""

    @classmethod
    def from_config(cls, config: dict) -> Method:
        """Rebuild from to_config() without its "name": cls(tuple(data_shape), **the rest)."""
        if "data_shape" not in config:
            raise ValueError(f"a {cls.__name__} config needs 'data_shape' (the shape of one sample), "
                             f"got keys {sorted(config)}")
        cfg = dict(config)
        return cls(tuple(cfg.pop("data_shape")), **cfg)

    def predictor(self, net: nn.Module, batch_size: int | None = None,
                  labels: torch.Tensor | None = None, guidance: float = 0.0) -> Predictor:
        """(x, t) -> network prediction, in eval mode without gradients, on the network's device.

        batch_size: evaluate at most this many samples at a time (None: all at once). The result is the same; the
                    peak memory of a convolutional network's activations drops by about batch / batch_size (the digits
                    U-Net holds ~230 MB of activations for 300 images at once).
        labels:     (B,) class labels of the B samples, for a class-conditional network; None: unconditional.
        guidance:   w >= 0, classifier-free guidance (Ho & Salimans 2022): (1 + w) f(x, t, labels) - w f(x, t, no label)
                    of the network's own predictions f, computed as one pass over twice the batch; a sampler's NFE
                    counts passes, so a guided evaluation costs twice the network work. w = 0: the conditional
                    prediction alone. What it combines depends on the method's prediction: denoisers (EDM, PFGM++:
                    so the scores), velocities (flow matching), normalized fields v (PFGM: not the fields, whose
                    lengths the normalization removed). Needs labels and a class-conditional network.
        The device is read at each call (a network moved after this call still works); the network is left in eval
        mode.
        """
        if batch_size is not None:
            check_int("batch_size", batch_size)
        guidance = check_positive("guidance", guidance, allow_zero=True)
        if guidance > 0 and labels is None:
            raise ValueError(f"guidance = {guidance:g} needs labels (the class to guide towards), got labels=None")
        if guidance > 0 and not getattr(net, "num_classes", 0):
            raise ValueError(f"guidance = {guidance:g} needs a class-conditional network (num_classes > 0), got an "
                             f"unconditional {type(net).__name__}")

        def predict(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            device = next(net.parameters()).device
            if labels is not None and labels.shape != (x.shape[0],):
                raise ValueError(f"labels must have shape ({x.shape[0]},), one per sample, got {tuple(labels.shape)}")
            net.eval()
            given = labels
            if guidance > 0:                       # the conditional and the unconditional rows in one pass
                x, t = torch.cat([x, x]), torch.cat([t, t])
                given = torch.cat([labels, torch.full_like(labels, NO_LABEL)])   # the networks' "no label"
            parts = [slice(None)] if batch_size is None else [slice(k, k + batch_size)
                                                               for k in range(0, x.shape[0], batch_size)]
            with torch.no_grad():
                out = [network_prediction(net, *self.network_input(x[s].to(device), t[s].to(device)),
                                          None if given is None else given[s].to(device)) for s in parts]
            out = out[0] if len(out) == 1 else torch.cat(out)
            if guidance > 0:
                conditional, unconditional = out.chunk(2)
                return (1 + guidance) * conditional - guidance * unconditional
            return out

        return predict

    def exact_predictor(self, data: torch.Tensor) -> Predictor:
        """(x, t) -> the regression target computed from the whole dataset (no network: the 'perfect' model)."""
        self.check_data("data", data)
        return lambda x, t: self.target(x, t, Batch(large=data.to(x.device)))


def method_from_config(config: dict) -> Method:
    """Rebuild a method from Method.to_config(), by the name it stores (any method in METHODS)."""
    if not isinstance(config, dict) or "name" not in config:
        raise ValueError(f"a method config is a dict with a 'name', got {config!r:.200}")
    cfg = dict(config)
    name = cfg.pop("name")
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r} in config; known: {', '.join(map(repr, sorted(METHODS)))}")
    return METHODS[name].from_config(cfg)

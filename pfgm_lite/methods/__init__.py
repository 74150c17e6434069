"""The generative methods, each one implementation of the interface in methods.base that the one trainer
(pfgm_lite.train) and the one sampler (pfgm_lite.sampling) are written against.

    base      Method, Batch, Predictor, METHODS (the registry), method_from_config
    pfgm      PFGM: the normalized Poisson field of a large batch, in log z (Xu et al. 2022)
    denoiser  Denoiser: EDM's preconditioning, denoising target and ODE, shared by the two below
    edm       EDM: Gaussian noise (Karras et al. 2022)
    pfgmpp    PFGMpp: D extra dimensions (Xu et al. 2023); D -> infinity is EDM
    flow_matching  FlowMatching: straight lines from data to noise (Lipman et al. 2023; Liu et al. 2023), time "linear"
    ddpm      DDPM: noise prediction on the 1000-step linear schedule (Ho et al. 2020), time "linear" in sigma

A new method is one new module with a subclass of Method that sets `name`, imported below: defining the class
registers it, so method_from_config rebuilds it from a checkpoint.
"""
from .base import METHODS, TIME_VARIABLES, Batch, Method, Predictor, method_from_config, network_prediction
from .ddpm import DDPM, ddpm_alpha_bars
from .denoiser import Denoiser
from .edm import EDM, EDM_IMAGE_DEFAULTS
from .flow_matching import FlowMatching
from .pfgm import PFGM, Z_VELOCITIES
from .pfgmpp import PFGMpp, sample_kernel_radius, uniform_directions

__all__ = ["METHODS", "TIME_VARIABLES", "Batch", "Method", "Predictor", "method_from_config", "network_prediction",
           "DDPM", "ddpm_alpha_bars", "Denoiser", "EDM", "EDM_IMAGE_DEFAULTS", "FlowMatching", "PFGM", "Z_VELOCITIES", "PFGMpp", "sample_kernel_radius",
           "uniform_directions"]

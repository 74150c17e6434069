"""The names notebook 07 and earlier code import from pfgm_lite.diffusion, which now live in methods.edm,
methods.denoiser and sampling.ancestral (import them from there in new code)."""
from .methods.denoiser import Denoiser
from .methods.edm import EDM, EDM_IMAGE_DEFAULTS
from .sampling.ancestral import ancestral_sample, ddpm_alpha_bars

__all__ = ["Denoiser", "EDM", "EDM_IMAGE_DEFAULTS", "ancestral_sample", "ddpm_alpha_bars"]

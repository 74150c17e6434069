"""The names notebook 07 and earlier code import from pfgm_lite.pfgmpp, which now live in methods.pfgmpp (import
them from there in new code)."""
from .methods.pfgmpp import PFGMpp, sample_kernel_radius, uniform_directions

__all__ = ["PFGMpp", "sample_kernel_radius", "uniform_directions"]

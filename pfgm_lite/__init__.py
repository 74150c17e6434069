"""pfgm_lite: Poisson Flow Generative Models from first principles."""
__version__ = "0.1.0"

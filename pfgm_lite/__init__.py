"""pfgm_lite: Poisson Flow Generative Models from first principles."""
from .runtime import return_freed_memory

__version__ = "0.1.0"

return_freed_memory()   # glibc: large freed buffers go back to the system (notebooks stay small; see its docstring)

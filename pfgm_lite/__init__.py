"""pfgm_lite: Poisson Flow Generative Models from first principles.

Importing it changes nothing in the process: notebooks that want glibc to hand freed memory back call
pfgm_lite.runtime.return_freed_memory() themselves (their first cell does).
"""
__version__ = "0.1.0"

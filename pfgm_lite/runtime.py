"""Run-time switches shared by every notebook: quick mode, seeds and the device."""
from __future__ import annotations

import ctypes
import math
import os
import random
import sys
from typing import TypeVar

import numpy as np
import torch

from .checks import check_int

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}


def is_quick() -> bool:
    """True when notebooks should shrink their work (env PFGM_LITE_QUICK=1, or CI set).

    PFGM_LITE_QUICK=0 forces full mode even on CI.
    """
    flag = os.environ.get("PFGM_LITE_QUICK")
    if flag is not None and flag.strip() != "":
        return flag.strip().lower() in _TRUE
    ci = os.environ.get("CI", "")
    return ci.strip() != "" and ci.strip().lower() not in {"0", "false", "no", "off"}


def seconds_from_env(name: str, default: float) -> float:
    """A timeout in seconds from the environment variable `name` (unset or blank: `default`); anything but a finite
    number > 0 is a ValueError that names the variable and the value."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"{name} must be a number of seconds > 0, got {value!r}")
    return seconds


def pick(full: T, quick: T) -> T:
    """Return `quick` in quick mode and `full` otherwise (training steps, sample counts)."""
    return quick if is_quick() else full


def seed_everything(seed: int = 0, deterministic: bool = True) -> torch.Generator:
    """Seed python, numpy and torch (CPU and CUDA); return a torch.Generator seeded the same.

    With `deterministic`, ask torch for deterministic algorithms where they exist (warn_only): the switch that
    torch.use_deterministic_algorithms(True, warn_only=True) sets for eager operations. That public function also
    imports torch._inductor's config (sympy and ~900 modules: +150 MiB with the CUDA build of torch, +71 MiB with the
    CPU build, benchmarks/import_memory.py) to make torch.compile deterministic too; nothing here compiles, and a
    notebook on Binder has 1-2 GB, so the switch is set directly (a reader who compiles calls the public function).
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        set_switch = getattr(torch._C, "_set_deterministic_algorithms", None)     # what the public function calls
        if set_switch is None:                                                       # renamed in a future torch
            torch.use_deterministic_algorithms(True, warn_only=True)
        else:
            set_switch(True, warn_only=True)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return torch.Generator().manual_seed(seed)


def default_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_device(name: str | torch.device) -> torch.device:
    """'auto' -> CUDA if available else CPU; otherwise torch.device(name) (a bad name is a ValueError)."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return default_device()
    try:
        return torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:K', got {name!r}") from None


def trim_freed_memory() -> bool:
    """Hand the free memory at the top and in the gaps of glibc's heap back to the system (malloc_trim(0)).

    Buffers under return_freed_memory's threshold come from the heap; after a training run (an autograd graph of many
    small tensors per step) glibc keeps tens of MB of them, freed but held (measured after 30 steps of the digits
    U-Net: RSS +101 MiB, +29 MiB after trimming). train.train and sampling.sample call it when they finish; it takes
    milliseconds. Returns True where glibc released memory, False where it released none or is absent.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):                   # musl and other C libraries have no malloc_trim
        return False


def return_freed_memory(threshold: int = 1 << 20) -> bool:
    """Make glibc hand buffers of `threshold` bytes or more back to the system when they are freed.

    glibc serves a large allocation with its own memory map (returned on free) only above a threshold that it raises
    each time such a buffer is freed, up to 32 MB. After training (many freed 2-4 MB buffers) the field's 8 MB
    blocks come from the heap instead, which fragments: notebook 04 grew by ~300 MB in one cell (measured; 40 MB
    with the threshold fixed at 1 MB). Fixing it costs a page fault per page of each large buffer.
    Returns True where it was applied (Linux with glibc), False elsewhere. It changes the whole process, so nothing
    calls it for you: the notebooks call it in their first cell (importing pfgm_lite leaves malloc alone).
    """
    check_int("threshold", threshold)
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(-3, threshold))        # M_MMAP_THRESHOLD = -3 in glibc's malloc.h
    except (OSError, AttributeError):                   # musl and other C libraries have no mallopt
        return False

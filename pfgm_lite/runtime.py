"""Run-time switches shared by every notebook: quick mode, seeds and the device."""
from __future__ import annotations

import os
import random
from typing import TypeVar

import numpy as np
import torch

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


def pick(full: T, quick: T) -> T:
    """Return `quick` in quick mode and `full` otherwise (training steps, sample counts)."""
    return quick if is_quick() else full


def seed_everything(seed: int = 0, deterministic: bool = True) -> torch.Generator:
    """Seed python, numpy and torch (CPU and CUDA); return a torch.Generator seeded the same.

    With `deterministic`, ask torch for deterministic algorithms where they exist (warn_only).
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return torch.Generator().manual_seed(seed)


def default_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")

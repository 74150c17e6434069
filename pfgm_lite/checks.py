"""Input checks shared by the package: every error names the argument, what was expected and what came."""
from __future__ import annotations

import math
import numbers

import torch


def check_tensor(name: str, value, ndim: int | None = None, last_dim: int | None = None,
                 min_last_dim: int | None = None, finite: bool = True) -> torch.Tensor:
    """Return `value` as a floating tensor after checking its shape and values, or raise ValueError/TypeError."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor (float32 or float64), got dtype {value.dtype}")
    if ndim is not None and value.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(value.shape)}")
    if last_dim is not None and value.shape[-1] != last_dim:
        raise ValueError(f"{name} must have last dimension {last_dim}, got shape {tuple(value.shape)}")
    if min_last_dim is not None and value.shape[-1] < min_last_dim:
        raise ValueError(f"{name} must have last dimension >= {min_last_dim}, got shape {tuple(value.shape)}")
    if finite and not torch.isfinite(value).all():
        bad = (~torch.isfinite(value)).sum().item()
        raise ValueError(f"{name} must be finite, got {bad} NaN/inf entries")
    return value


def check_same_dim(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    """Raise ValueError unless a and b have the same last dimension."""
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(f"{name_a} and {name_b} must live in the same space: last dimensions "
                         f"{a.shape[-1]} and {b.shape[-1]} differ (shapes {tuple(a.shape)} and {tuple(b.shape)})")


def check_nonneg_z(name: str, z: torch.Tensor) -> None:
    """Raise ValueError if any z coordinate is negative (PFGM lives in the upper half-space z >= 0)."""
    if (z < 0).any():
        raise ValueError(f"{name} must have z >= 0 (upper half-space), got min z = {z.min().item():.4g}")


def check_positive(name: str, value, allow_zero: bool = False) -> float:
    """Return float(value) after checking it is a finite positive number (a Python, NumPy or 0-d torch number)."""
    if isinstance(value, torch.Tensor) and value.dim() == 0 and not value.dtype.is_complex:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not isinstance(value, (int, float)):            # a NumPy scalar: shown as the Python number it holds
        value = value.item()
    v = float(value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        expected = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {expected}, got {value!r}")
    return v


def check_int(name: str, value, minimum: int = 1) -> int:
    """Return int(value) after checking it is an integer >= minimum (a Python or NumPy integer, or a 0-d integer
    tensor; not a bool, not a float such as 3.0)."""
    if isinstance(value, torch.Tensor) and value.dim() == 0 and not value.is_floating_point() \
            and value.dtype != torch.bool and not value.dtype.is_complex:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def batch_view(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-sample scalar (B,) shaped to broadcast against `like` (B, *shape): (B, 1, ..., 1)."""
    return v.view(-1, *[1] * (like.dim() - 1))


def check_integer_tensor(name: str, value) -> torch.Tensor:
    """Return value after checking it is a tensor of integers (int64, int32, int16 or uint8)."""
    if not isinstance(value, torch.Tensor) or value.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise TypeError(f"{name} must be an integer tensor, got {getattr(value, 'dtype', type(value).__name__)}")
    return value

"""What the benchmark scripts share: the scores of 2D samples, RK45's evaluation cap, a sampler's start height,
results files, the commit."""
from __future__ import annotations

import json
import math
import subprocess
from dataclasses import asdict, replace
from pathlib import Path

import torch

from pfgm_lite import data, methods, metrics

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


class Scorer:
    """Scores of n samples of a toy set: SW / noise floor (mean over 3 true draws; the floor is the mean of 5 pairs
    of true draws), the share of samples farther than 2 max ||y|| out (or not finite), and on 8gaussians the RMS
    distance to the nearest mode and the modes holding >= 5% of the samples. Random draws from 1000 + seed."""

    def __init__(self, name: str, n: int, max_norm: float, seed: int):
        self.name, self.n, self.max_norm = name, n, max_norm
        self.g = torch.Generator().manual_seed(1000 + seed)
        self.floor = metrics.noise_floor(self.sw, self.true, n, repeats=5)

    def true(self, n: int) -> torch.Tensor:
        return data.sample_toy(self.name, n, self.g)

    def sw(self, a: torch.Tensor, b: torch.Tensor) -> float:
        return metrics.sliced_wasserstein(a, b, n_projections=500, generator=self.g)

    def __call__(self, x: torch.Tensor) -> dict:
        finite = torch.isfinite(x).all(dim=1)
        far = ((x.norm(dim=1) > 2 * self.max_norm) | ~finite).float().mean().item()
        if not finite.all():
            return dict(sw=math.inf, far=far)
        out = dict(sw=sum(self.sw(x, self.true(len(x))) for _ in range(3)) / 3 / self.floor, far=far)
        if self.name == "8gaussians":
            modes = data.eight_gaussian_modes()
            out["rms_mode"] = metrics.nearest_mode_rms(x, modes)
            nearest = torch.cdist(x.double(), modes.double()).argmin(dim=1)
            out["modes"] = int((torch.bincount(nearest, minlength=8) >= 0.05 * len(x)).sum())
        return out


class TooManyEvaluations(RuntimeError):
    pass


def capped(predict, max_nfe: int):
    """Wrap a predictor so that RK45 gives up (TooManyEvaluations) after max_nfe network calls."""
    calls = [0]

    def wrapped(x, t):
        calls[0] += 1
        if calls[0] > max_nfe:
            raise TooManyEvaluations(f"more than {max_nfe} evaluations")
        return predict(x, t)

    return wrapped


def sampler_method(method, settings: dict | None):
    """The method to sample with under sampler settings: PFGM start height (x z_max) or EDM's sigma_max."""
    if settings is None:
        return method
    if isinstance(method, methods.PFGM):
        hp = replace(method.hp, z_max=method.hp.z_max * settings["start"],
                     upper_norm=method.hp.upper_norm * settings["start"])
        return methods.method_from_config({**method.to_config(), "hp": asdict(hp)})
    return methods.method_from_config({**method.to_config(), "sigma_max": settings["sigma_max"]})


def write_json(path: Path, results: dict) -> None:
    """Write atomically (a temporary file, then rename): an interrupted run never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1))
    tmp.replace(path)


def git_commit() -> str:
    """The checkout's commit (and '+dirty' when it has changes), recorded with the results."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "pfgm_lite", "benchmarks"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"

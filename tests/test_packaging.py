"""A wheel built from the repository, offline, is a working pfgm_lite: it holds every subpackage and the shipped
weights, and installed on its own (--no-deps --no-index, into a scratch folder beside the installed dependencies,
away from this checkout) it samples from the shipped digits model and loads the shipped classifier without
training or writing anything."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ("pyproject.toml", "README.md", "LICENSE")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # a copy of what the package is made of, so the build sees no stale build/ folder and writes nothing here
    src = tmp_path_factory.mktemp("src")
    for name in SOURCE:
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "pfgm_lite", src / "pfgm_lite", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                           "-q", "-w", str(out), str(src)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (path,) = out.glob("pfgm_lite-*.whl")
    return path


def test_the_wheel_holds_every_subpackage_and_the_shipped_weights(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = {str(p.parent.relative_to(ROOT)) for p in (ROOT / "pfgm_lite").rglob("__init__.py")
                if "__pycache__" not in p.parts}
    assert {"pfgm_lite", "pfgm_lite/methods", "pfgm_lite/sampling", "pfgm_lite/teaching",
            "pfgm_lite/weights"} <= packages
    for package in packages:
        assert f"{package}/__init__.py" in names, package
    for weights in ("digit_classifier.pt", "pfgm_digits.pt", "pfgm_digits_10min.pt"):
        assert f"pfgm_lite/weights/{weights}" in names


def test_the_installed_wheel_samples_from_the_shipped_model(wheel, tmp_path):
    target = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target",
                           str(target), str(wheel)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    before = sorted(str(p.relative_to(target)) for p in target.rglob("*") if "__pycache__" not in p.parts)
    code = """
import torch, pfgm_lite
from pfgm_lite import digits, recipes, sampling
from pfgm_lite.checkpoint import load_model
print(pfgm_lite.__file__)
method, net, ckpt = load_model(recipes.shipped_digits_path(), device="cpu")
out = sampling.sample(method, method.predictor(net), 4, solver="euler", steps=3, generator=torch.Generator().manual_seed(0))
classifier = digits.digit_classifier()
print(tuple(out.x.shape), bool(torch.isfinite(out.x).all()), ckpt["step"], classifier(out.x.clamp(-1, 1)).shape[1])
"""
    env = {**os.environ, "PYTHONPATH": str(target), "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=tmp_path,
                         env=env)
    assert ran.returncode == 0, ran.stderr[-3000:]
    where, result = ran.stdout.strip().splitlines()[-2:]
    assert Path(where).is_relative_to(target)                       # the wheel's copy, not this checkout
    assert result == "(4, 1, 28, 28) True 8000 10"
    after = sorted(str(p.relative_to(target)) for p in target.rglob("*") if "__pycache__" not in p.parts)
    assert after == before                                          # nothing retrained or written beside it

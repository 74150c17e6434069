"""Shared by tests/ and notebooks/ (nbval): every run folder of pfgm_lite.recipes goes to a scratch folder of this
pytest session (PFGM_LITE_RUNS), removed at the end, so no `make test` reuses a model that an earlier one trained."""
from __future__ import annotations

import os
import shutil
import tempfile

_SCRATCH = {}


def pytest_configure(config):
    _SCRATCH["runs"] = tempfile.mkdtemp(prefix="pfgm-lite-runs-")
    _SCRATCH["before"] = os.environ.get("PFGM_LITE_RUNS")
    os.environ["PFGM_LITE_RUNS"] = _SCRATCH["runs"]       # kernels and subprocesses started from here inherit it


def pytest_unconfigure(config):
    if "runs" in _SCRATCH:
        shutil.rmtree(_SCRATCH.pop("runs"), ignore_errors=True)
        before = _SCRATCH.pop("before")
        if before is None:
            os.environ.pop("PFGM_LITE_RUNS", None)
        else:
            os.environ["PFGM_LITE_RUNS"] = before

"""What the libraries cost before a notebook computes anything: resident memory (RSS) of a fresh Python after each import.

    python benchmarks/import_memory.py          # measures the torch this Python has; writes benchmarks/results/

Each row runs in a fresh process: `setup` first, then RSS is read, then `step`, then RSS again; the row is the growth
in MiB (median of 3 processes). Writes import-memory.json (CUDA build of torch) or import-memory-cpu.json (CPU build,
what Binder installs), like benchmarks/memory.py. The rows say why pfgm_lite avoids some imports: torchvision,
and torch.use_deterministic_algorithms (it imports torch._inductor's config, and with it sympy), and what no notebook
that trains can avoid: its first torch.optim optimizer imports torch._dynamo (sympy, and triton where installed).
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = {"CUDA": ROOT / "benchmarks" / "results" / "import-memory.json",
           "CPU": ROOT / "benchmarks" / "results" / "import-memory-cpu.json"}

#: name -> (setup, step): RSS growth of `step` after `setup`
ROWS = {
    "import torch": ("", "import torch"),
    "matplotlib, scipy and pfgm_lite after torch": (
        "import torch",
        "import matplotlib.pyplot, scipy.stats, scipy.integrate\n"
        "from pfgm_lite import data, exercises, field, flows, methods, metrics, nets, perturb, physics, plotting, "
        "prior, recipes, sampling, train, widgets"),
    "import torchvision after torch": ("import torch", "import torchvision"),
    "torch.use_deterministic_algorithms(True)": ("import torch", "torch.use_deterministic_algorithms(True, warn_only=True)"),
    "pfgm_lite.runtime.seed_everything(0)": ("import torch\nfrom pfgm_lite.runtime import seed_everything",
                                             "seed_everything(0)"),
    "the first torch.optim.Adam": ("import torch\nnet = torch.nn.Linear(4, 4)",
                                   "torch.optim.Adam(net.parameters(), lr=1e-3)"),
}

PROBE = """
import psutil
{setup}
before = psutil.Process().memory_info().rss
{step}
print(psutil.Process().memory_info().rss - before)
"""


def growth_mib(setup: str, step: str, repeats: int = 3) -> float | None:
    """Median RSS growth (MiB) of `step` after `setup`, each repeat in a fresh Python; None where a module it imports
    is not installed (torchvision beside a CPU build of torch, say)."""
    grew = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", PROBE.format(setup=setup, step=step)], capture_output=True,
                             text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        if out.returncode != 0 and "ModuleNotFoundError" in out.stderr:
            return None
        if out.returncode != 0:
            raise RuntimeError(f"measuring {step!r} failed:\n{out.stderr}")
        grew.append(int(out.stdout.split()[-1]) / 2**20)
    return round(statistics.median(grew), 1)


def main() -> int:
    from memory import torch_build  # benchmarks/memory.py: the same test of the build

    version, build = torch_build()
    rows = {"torch": f"{version} ({build} build)"}
    for name, (setup, step) in ROWS.items():
        rows[name] = growth_mib(setup, step)
        print(f"{name:>48}: " + ("not installed" if rows[name] is None else f"+{rows[name]:6.1f} MiB"), flush=True)
    RESULTS[build].parent.mkdir(parents=True, exist_ok=True)
    RESULTS[build].write_text(json.dumps(rows, indent=1) + "\n")
    print(f"torch {rows['torch']} -> {RESULTS[build].relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

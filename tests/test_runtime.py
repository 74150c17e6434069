"""Facts about pfgm_lite/runtime.py: when quick mode is on (PFGM_LITE_QUICK, CI), and what pick returns."""
from __future__ import annotations

import os

import pytest

from pfgm_lite import runtime


@pytest.mark.parametrize("quick, ci, expected", [
    (None, None, False),          # nothing set: full mode
    ("1", None, True),
    ("true", None, True),
    (" Yes ", None, True),        # case and spaces do not matter
    ("0", None, False),
    ("", None, False),            # empty means unset
    (None, "true", True),         # CI alone turns quick mode on
    (None, "1", True),
    (None, "false", False),
    (None, "0", False),
    (None, "", False),
    ("0", "true", False),         # PFGM_LITE_QUICK=0 forces full mode even on CI
    ("1", "false", True),
    ("", "true", True),           # an empty PFGM_LITE_QUICK leaves the decision to CI
])
def test_is_quick_reads_the_environment(monkeypatch, quick, ci, expected):
    for name, value in (("PFGM_LITE_QUICK", quick), ("CI", ci)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert runtime.is_quick() is expected


def test_pick_follows_quick_mode(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("PFGM_LITE_QUICK", "1")
    assert runtime.pick(8000, 400) == 400
    monkeypatch.setenv("PFGM_LITE_QUICK", "0")
    assert runtime.pick(8000, 400) == 8000
    # the decision is made at each call, not once at import
    monkeypatch.setenv("CI", "true")
    monkeypatch.delenv("PFGM_LITE_QUICK")
    assert runtime.pick("full", "quick") == "quick"


def test_return_freed_memory_applies_on_glibc_and_checks_its_argument():
    import platform
    import sys

    from pfgm_lite.runtime import return_freed_memory

    expected = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert return_freed_memory() is expected
    assert return_freed_memory(4 << 20) is expected       # may be called again with another threshold
    with pytest.raises(ValueError, match="threshold must be >= 1, got 0"):
        return_freed_memory(0)


def test_trim_freed_memory_hands_freed_heap_pages_back():
    import platform
    import sys

    import torch

    from pfgm_lite.runtime import trim_freed_memory

    if not (sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"):
        assert trim_freed_memory() is False
        return

    def rss_mib() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    # 64 MiB in 64 KiB tensors (below the 1 MiB map threshold: from the heap), then all but the last one freed:
    # the last keeps the heap's top in use, so glibc cannot shrink the heap on its own and holds the freed pages
    blocks = [torch.ones(16384) for _ in range(1024)]
    del blocks[:-1]
    held = rss_mib()
    assert trim_freed_memory() is True
    assert held - rss_mib() > 32, "malloc_trim should return most of the 64 MiB freed"
    assert trim_freed_memory() in (True, False)     # nothing left to return is not an error


def test_seed_everything_turns_deterministic_algorithms_on_without_importing_inductor():
    """The switch is on (warn-only) after seed_everything, and torch._inductor (sympy: +71 to +150 MiB) stays unimported;
    the public torch.use_deterministic_algorithms would import it, which this check sees."""
    import subprocess
    import sys

    code = ("import sys, torch\n"
            "from pfgm_lite.runtime import seed_everything\n"
            "before = 'torch._inductor.config' in sys.modules\n"
            "g = seed_everything(3)\n"
            "mine = (before, torch.are_deterministic_algorithms_enabled(),\n"
            "        torch.is_deterministic_algorithms_warn_only_enabled(), 'torch._inductor.config' in sys.modules,\n"
            "        torch.equal(torch.rand(4, generator=g), torch.rand(4, generator=torch.Generator().manual_seed(3))))\n"
            "torch.use_deterministic_algorithms(True, warn_only=True)\n"
            "print(*mine, 'torch._inductor.config' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True", "True", "False", "True", "True"], out.stdout


def test_seed_everything_rejects_a_bad_seed():
    with pytest.raises(ValueError, match="seed must be a non-negative int, got -1"):
        runtime.seed_everything(-1)


def test_importing_the_package_leaves_malloc_alone():
    """return_freed_memory changes glibc for the whole process: only an explicit call (the notebooks' first cell)
    may make it. A fresh interpreter records every C-library call of mallopt while importing all of pfgm_lite."""
    import subprocess
    import sys

    code = """
import ctypes, importlib, pkgutil
calls = []
real = ctypes.CDLL
class Recording:
    def __init__(self, *a, **k): self._lib = real(*a, **k)
    def __getattr__(self, name):
        if name == "mallopt": calls.append(name)
        return getattr(self._lib, name)
ctypes.CDLL = Recording
import pfgm_lite
for m in pkgutil.walk_packages(pfgm_lite.__path__, "pfgm_lite."):
    if m.name not in ("pfgm_lite.__main__", "pfgm_lite.student"):
        importlib.import_module(m.name)
print("imports", len(calls))
from pfgm_lite.runtime import return_freed_memory
return_freed_memory()
print("explicit", len(calls))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    # nothing on import; the explicit call is seen, so the recorder would have seen one at import too
    assert out.stdout.split() == ["imports", "0", "explicit", "1"], out.stdout

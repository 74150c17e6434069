"""Peak memory of each notebook's kernel, the number that decides whether a notebook fits on Binder (1-2 GB).

    python benchmarks/memory.py                        # every notebook, full mode, outputs not saved
    python benchmarks/memory.py --inplace              # the same, saving the executed notebooks (= make notebooks)
    python benchmarks/memory.py --quick notebooks/01_poisson_equation.ipynb

Each notebook runs in a fresh kernel (nbclient, as `jupyter nbconvert --execute` does); a thread samples the kernel
process's resident set size (RSS, psutil) every 50 ms. It records the cell during which the peak occurred and, since
memory a cell allocates stays held after it, the three cells whose RSS grew most while they ran (peak during the cell
minus RSS at its start): a notebook over budget says where its memory goes. RSS counts everything the process holds:
Python, torch's libraries (~500 MB for a CUDA build of torch on its own), tensors, matplotlib figures and what the
allocator keeps after freeing. Writes, in full mode, the peak per notebook in MiB, the cell at the peak, the top three
cells by growth, the wall time and the torch it ran with, to benchmarks/results/memory.json where torch is a CUDA build
(what `make install` gets from PyPI on Linux) and to memory-cpu.json where it is a CPU build (what Binder installs:
binder/environment.yml). To measure the CPU build, run this script with the Python of an environment that has one.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

import nbformat
import psutil
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
RESULTS = {"CUDA": ROOT / "benchmarks" / "results" / "memory.json",
           "CPU": ROOT / "benchmarks" / "results" / "memory-cpu.json"}


def torch_build() -> tuple[str, str]:
    """The torch this Python (and so the notebooks' kernel) has: its version, and "CUDA" or "CPU" for its build."""
    import torch

    return torch.__version__, ("CUDA" if torch.version.cuda else "CPU")


class PeakWatcher:
    """Samples the RSS of a process in a thread; remembers the peak and when it happened."""

    def __init__(self, interval: float = 0.05):
        self.interval, self.peak, self.label, self.process = interval, 0, None, None
        self.current_label = "start"
        self.cell_peaks: dict[str, int] = {}          # label -> highest RSS seen while that cell ran
        self.cell_starts: dict[str, int] = {}         # label -> RSS when that cell started
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def watch(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self._thread.start()

    def rss(self) -> int:
        """Resident set size of the kernel process, in bytes (0 if it is gone). Not its children: a child forked by
        a library shares the kernel's pages, and adding its RSS would count them twice (a spurious +200 MB seen)."""
        if self.process is None:
            return 0
        try:
            return self.process.memory_info().rss
        except psutil.Error:
            return 0

    def sample(self) -> int:
        """Read the RSS now and count it for the current cell (the thread calls this every `interval`)."""
        with self._lock:
            rss, label = self.rss(), self.current_label
            if rss > self.peak:
                self.peak, self.label = rss, label
            if rss > self.cell_peaks.get(label, 0):
                self.cell_peaks[label] = rss
            return rss

    def start_cell(self, label: str) -> None:
        """A cell starts: a last sample for the cell that ends (a cell shorter than `interval` would otherwise go
        unseen, and its memory be charged to no cell), then the new cell's starting RSS."""
        rss = self.sample()
        with self._lock:
            self.current_label = label
            self.cell_starts[label] = rss

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            time.sleep(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sample()


def run_notebook(path: Path, inplace: bool, timeout: int) -> dict:
    """Execute one notebook in a fresh kernel; return its peak RSS (MiB), the cell at the peak, the cells that grew
    the RSS most (MiB) and the wall time."""
    nb = nbformat.read(path, as_version=4)
    watcher = PeakWatcher()
    client = NotebookClient(nb, kernel_name="python3", timeout=timeout, record_timing=False,
                            resources={"metadata": {"path": str(path.parent)}})

    def on_cell_start(cell, cell_index):
        watcher.start_cell(f"cell {cell_index}: {cell.source.splitlines()[0][:60] if cell.source else ''}")

    client.on_cell_start = on_cell_start
    start = time.perf_counter()
    with client.setup_kernel():
        watcher.watch(client.km.provisioner.process.pid)
        try:
            client.execute(cleanup_kc=False)
        finally:
            watcher.stop()
    seconds = time.perf_counter() - start
    if inplace:
        nbformat.write(nb, path)
    growth = {label: peak - watcher.cell_starts.get(label, 0) for label, peak in watcher.cell_peaks.items()
              if label in watcher.cell_starts}
    top = sorted(growth.items(), key=lambda kv: -kv[1])[:3]
    return dict(peak_mib=round(watcher.peak / 2**20), at=watcher.label, seconds=round(seconds),
                top_cells={label: round(grew / 2**20) for label, grew in top})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("notebooks", nargs="*", help="default: every notebooks/NN_*.ipynb")
    parser.add_argument("--quick", action="store_true", help="quick mode (PFGM_LITE_QUICK=1); results not stored")
    parser.add_argument("--inplace", action="store_true", help="save the executed notebooks (full mode only)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    args = parser.parse_args(argv)
    if args.quick and args.inplace:
        raise SystemExit("--inplace saves the outputs readers see: run it in full mode (without --quick)")
    os.environ["PFGM_LITE_QUICK"] = "1" if args.quick else "0"
    paths = [Path(p) for p in args.notebooks] or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    version, build = torch_build()
    results_path = RESULTS[build]
    print(f"torch {version} ({build} build); results: {results_path.relative_to(ROOT)}", flush=True)
    for path in paths:
        row = run_notebook(path.resolve(), args.inplace, args.timeout)
        row["torch"] = f"{version} ({build} build)"
        print(f"{path.name}: peak {row['peak_mib']} MiB ({row['at']}), {row['seconds']} s", flush=True)
        for label, mib in row["top_cells"].items():
            print(f"    +{mib:5d} MiB during {label}", flush=True)
        if not args.quick:      # re-read before writing: another run may have added notebooks meanwhile
            results = json.loads(results_path.read_text()) if results_path.exists() else {}
            results[path.name] = row
            results_path.parent.mkdir(parents=True, exist_ok=True)
            results_path.write_text(json.dumps(dict(sorted(results.items())), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Time and memory of the PFGM training target: pfgm_lite's log-space, blocked field against a naive one.

    python benchmarks/field.py [--threads 2] [--repeats 7] [--max-naive-gb 4]

Setup per N (2, 784, 3072): a large batch of L = 4096 data points uniform in [-1, 1]^N (image-like, n_bar ~
sqrt(N/3)), a mini-batch of B = 128 of them perturbed with the rule's hyper-parameters (perturb.perturb), float32.
  package: methods.PFGM(hp, (N,)).target(x, z, large_batch): field.empirical_field, normalized (what train() calls)
  naive:   the full (B, L, N+1) difference tensor and plain powers d**-(N+1), as one would write it from the paper
Measured, each case in its own fresh process:
  time:   median (and min) wall time of `repeats` calls after the first (3 for naive), torch.set_num_threads(threads);
          cpu: median process CPU time of the same calls (all threads; on a shared machine it tracks the work
          better than the wall time, but OpenMP's spin-waiting counts too)
  memory: growth of the process's peak resident set (ru_maxrss) over the first call, i.e. the real peak of
          extra memory the call needed (tensors plus allocator overhead; the inputs are allocated before)
  biggest: the analytic size of the largest intermediate tensor (package: the augmented (L, N+1) copy of the
          large batch or a (B, L) block of distances/weights, at most physics.BLOCK_ELEMENTS pairs;
          naive: the (B, L, N+1) differences)
  NaN rows: output rows with a NaN; inf w / zero w: weights d**-(N+1) that overflow / underflow in float32.
The naive case is not run when its analytic peak (two (B, L, N+1) tensors) exceeds --max-naive-gb; its weight
counts then come from the (B, L) distances alone.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

B, L = 128, 4096
DIMS = (2, 784, 3072)


def make_inputs(n_dims: int):
    import torch

    from pfgm_lite.perturb import hyperparameters_for, perturb

    g = torch.Generator().manual_seed(0)
    large = 2 * torch.rand(L, n_dims, generator=g) - 1
    hp = hyperparameters_for(large)
    x, z, _ = perturb(large[:B], hp.M, hp.sigma, hp.tau, generator=g)
    return hp, x, z, large


def naive_target(x, z, large, gamma: float = 5.0):
    """v = -sqrt(N) E / (||E|| + gamma), E = sum_i w_i (x~ - y~_i) / sum_i w_i, w_i = d_i**-(N+1), no tricks."""
    import torch

    n_dims = x.shape[1]
    xt = torch.cat([x, z[:, None]], dim=1)
    yt = torch.cat([large, torch.zeros(large.shape[0], 1)], dim=1)
    diff = xt[:, None, :] - yt[None, :, :]                    # (B, L, N+1)
    d = diff.norm(dim=-1)                                      # (B, L)
    w = d ** -(n_dims + 1)
    e = (w[..., None] * diff).sum(1) / w.sum(1, keepdim=True)
    return -math.sqrt(n_dims) * e / (e.norm(dim=1, keepdim=True) + gamma), w


def weight_counts(x, z, large) -> tuple[int, int]:
    """inf and zero counts of d**-(N+1) in float32, from the (B, L) distances only."""
    import torch

    xt = torch.cat([x, z[:, None]], dim=1)
    yt = torch.cat([large, torch.zeros(large.shape[0], 1)], dim=1)
    w = torch.cdist(xt, yt) ** -(x.shape[1] + 1)
    return int(torch.isinf(w).sum()), int((w == 0).sum())


def run_case(impl: str, n_dims: int, threads: int, repeats: int) -> dict:
    import torch

    from pfgm_lite.methods import PFGM
    from pfgm_lite.physics import BLOCK_ELEMENTS

    torch.set_num_threads(threads)
    hp, x, z, large = make_inputs(n_dims)
    if impl == "package":
        method = PFGM(hp, (n_dims,))
        call = lambda: method.target(x, z, large)  # noqa: E731
        pairs = min(B * L, max(BLOCK_ELEMENTS, L))
        biggest = max(pairs, L * (n_dims + 1)) * 4
    else:
        call = lambda: naive_target(x, z, large)[0]  # noqa: E731
        biggest = B * L * (n_dims + 1) * 4
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    out = call()
    peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
    times, cpu = [], []
    for _ in range(repeats if impl == "package" else min(repeats, 3)):
        t, c = time.perf_counter(), time.process_time()
        call()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    if impl == "naive":
        w = naive_target(x, z, large)[1]
        inf_w, zero_w = int(torch.isinf(w).sum()), int((w == 0).sum())
    else:
        inf_w = zero_w = -1  # the package never forms d**-(N+1)
    return dict(impl=impl, N=n_dims, ms=1e3 * statistics.median(times), min_ms=1e3 * min(times),
                cpu_ms=1e3 * statistics.median(cpu),
                peak_mb=peak / 2**20,
                biggest_mb=biggest / 2**20, nan_rows=int(torch.isnan(out).any(dim=1).sum()), inf_w=inf_w,
                zero_w=zero_w, ran=True)


def skipped_case(n_dims: int) -> dict:
    hp, x, z, large = make_inputs(n_dims)
    inf_w, zero_w = weight_counts(x, z, large)
    return dict(impl="naive", N=n_dims, ms=float("nan"), min_ms=float("nan"), cpu_ms=float("nan"),
                peak_mb=float("nan"),
                biggest_mb=B * L * (n_dims + 1) * 4 / 2**20, nan_rows=-1, inf_w=inf_w, zero_w=zero_w, ran=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--max-naive-gb", type=float, default=4.0)
    parser.add_argument("--case", nargs=2, metavar=("IMPL", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case[0], int(args.case[1]), args.threads, args.repeats)))
        return

    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "CUDA_VISIBLE_DEVICES": ""}
    load_before = os.getloadavg()[0]
    rows = []
    for n_dims in DIMS:
        for impl in ("package", "naive"):
            naive_gb = 2 * B * L * (n_dims + 1) * 4 / 2**30
            if impl == "naive" and naive_gb > args.max_naive_gb:
                rows.append(skipped_case(n_dims))
                continue
            res = subprocess.run([sys.executable, os.path.abspath(__file__), "--case", impl, str(n_dims),
                                  "--threads", str(args.threads), "--repeats", str(args.repeats)],
                                 capture_output=True, text=True, env=env, check=True,
                                 cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
            rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
    pairs = B * L
    print(f"PFGM training target, mini-batch B = {B}, large batch L = {L}, float32, {args.threads} threads, "
          f"{args.repeats} calls (naive: 3); load average (1 min) {load_before:.2f} before, "
          f"{os.getloadavg()[0]:.2f} after")
    print(f"{'N':>5} {'impl':>8} {'median ms':>10} {'min ms':>8} {'cpu ms':>8} {'peak MB':>8} {'biggest MB':>10} "
          f"{'NaN rows':>9} {'inf w':>7} {'zero w':>7}")
    for r in rows:
        if r["ran"]:
            t = f"{r['ms']:10.1f} {r['min_ms']:8.1f} {r['cpu_ms']:8.1f} {r['peak_mb']:8.1f}"
            nan = f"{r['nan_rows']}/{B}"
        else:
            t, nan = f"{'not run':>10} {'-':>8} {'-':>8} {'-':>8}", "-"
        w = (f"{'-':>7} {'-':>7}" if r["inf_w"] < 0 else
             f"{100 * r['inf_w'] / pairs:6.1f}% {100 * r['zero_w'] / pairs:6.1f}%")
        print(f"{r['N']:>5} {r['impl']:>8} {t} {r['biggest_mb']:10.1f} {nan:>9} {w}")
    print("inf w / zero w: share of the naive weights d**-(N+1) that overflow / underflow in float32 (the package "
          f"works with log d and never forms them). 'not run': the naive version needs > {args.max_naive_gb} GB.")


if __name__ == "__main__":
    main()

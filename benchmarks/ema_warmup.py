"""What the EMA's warm-up changes in the README's own command: `python -m pfgm_lite train --data moons --steps S`.

    python benchmarks/ema_warmup.py                     # S = 500 and 2000, 5 seeds -> results/ema_warmup.json
    python benchmarks/ema_warmup.py --quick --out-dir /tmp/e    # a tiny version (seconds): for the tests

For each seed k (a paired design: the same data, initial weights and training draws with and without the warm-up,
the same prior draws and scoring sample) the command line's toy PFGM is trained twice, with the EMA decay fixed at
0.999 (--no-ema-warmup, the old default) and with the warm-up d_k = min(0.999, (1 + k) / (10 + k)). Both EMA networks
are scored by SW / noise floor (benchmarks/common.Scorer) on 5000 samples of Heun with 10 steps (NFE 20) and RK45.
Reported: each mean, the paired difference (warm-up minus fixed) with its 95% t-interval over the seeds (n - 1
degrees of freedom), the verdict ("better"/"worse" only when the interval excludes 0, else "tie"), and the share of
the EMA that is still the initial weights (train.ema_share_of_initial_weights). Finished (steps, seed) pairs are
written at once, so a run resumes where it stopped.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
from common import RESULTS, Scorer, git_commit, write_json  # noqa: E402
from scipy import stats  # noqa: E402

from pfgm_lite import recipes, sampling, train  # noqa: E402
from pfgm_lite.methods import PFGM  # noqa: E402
from pfgm_lite.perturb import hyperparameters_for  # noqa: E402


def t_interval(diffs: list[float]) -> tuple[float, float, float]:
    """Mean and 95% t-interval (n - 1 degrees of freedom) of paired differences."""
    mean = statistics.mean(diffs)
    half = stats.t.ppf(0.975, len(diffs) - 1) * statistics.stdev(diffs) / len(diffs) ** 0.5
    return mean, mean - half, mean + half


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for the tests")
    parser.add_argument("--out-dir", default=str(RESULTS))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    steps_list, seeds, n_samples, n_data, batch = ((20, 40), range(2), 300, 2000, 64) if args.quick else \
        ((500, 2000), range(5), 5000, 100_000, 256)
    path = Path(args.out_dir) / "ema_warmup.json"
    results = json.loads(path.read_text()) if path.exists() else {"rows": []}
    results["meta"] = dict(command="python benchmarks/ema_warmup.py" + ("" if argv is None else " " + " ".join(argv)),
                           torch=str(torch.__version__), machine=platform.machine(), commit=git_commit(),
                           samplers="heun 10 steps (NFE 20), rk45", samples=n_samples, data_points=n_data)
    done = {(r["steps"], r["seed"]) for r in results["rows"]}
    for steps in steps_list:
        for seed in seeds:
            if (steps, seed) in done:
                continue
            data = recipes.toy_data("moons", n_data, seed=seed)
            method = PFGM(hyperparameters_for(data), (2,))
            score = Scorer("moons", n_samples, method.hp.max_norm, seed)
            row = dict(steps=steps, seed=seed)
            for warmup in (False, True):
                config = train.TrainConfig(steps=steps, seed=seed, device="cpu", ema_warmup=warmup, batch_size=batch,
                                           large_batch_size=8 * batch)
                start = time.perf_counter()
                result = train.train(method, recipes.toy_network(seed=seed), data, config, progress=False)
                key = "warmup" if warmup else "fixed"
                row[f"{key}_init_share"] = train.ema_share_of_initial_weights(config)
                row[f"{key}_train_seconds"] = round(time.perf_counter() - start, 1)
                predict = method.predictor(result.ema)
                for solver, s in (("heun", 10), ("rk45", 1)):
                    out = sampling.sample(method, predict, n_samples, solver=solver, steps=s,
                                          generator=torch.Generator().manual_seed(10 + seed))
                    row[f"{key}_{solver}"] = score(out.x)["sw"]
                    row[f"{key}_{solver}_nfe"] = out.nfe
            results["rows"].append(row)
            write_json(path, results)
            print(f"steps {steps} seed {seed}: " + ", ".join(f"{k} {v:.3g}" for k, v in row.items()
                                                             if k.endswith(("heun", "rk45"))), flush=True)
    summary = []
    for steps in steps_list:
        rows = [r for r in results["rows"] if r["steps"] == steps]
        for solver in ("heun", "rk45"):
            diffs = [r[f"warmup_{solver}"] - r[f"fixed_{solver}"] for r in rows]
            mean, low, high = t_interval(diffs)
            verdict = "better" if high < 0 else "worse" if low > 0 else "tie"
            summary.append(dict(steps=steps, solver=solver, n_seeds=len(rows),
                                fixed=statistics.mean(r[f"fixed_{solver}"] for r in rows),
                                warmup=statistics.mean(r[f"warmup_{solver}"] for r in rows),
                                diff_mean=mean, ci_low=low, ci_high=high, verdict=verdict,
                                fixed_init_share=rows[0]["fixed_init_share"],
                                warmup_init_share=rows[0]["warmup_init_share"]))
            print(f"{steps:5d} steps, {solver}: SW/floor fixed {summary[-1]['fixed']:.2f}, warm-up "
                  f"{summary[-1]['warmup']:.2f}; warm-up - fixed {mean:+.2f} [{low:+.2f}, {high:+.2f}] -> {verdict}; "
                  f"EMA on the initial weights {rows[0]['fixed_init_share']:.3g} vs {rows[0]['warmup_init_share']:.1e}")
    results["summary"] = summary
    write_json(path, results)


if __name__ == "__main__":
    main()

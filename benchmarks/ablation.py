"""Ablation of PFGM on 2D toys: the paper's recipe, and each of our five changes added or removed one at a time.

    python benchmarks/ablation.py                       # full: moons and 8gaussians, seeds 0 1 2 (hours on 2 cores)
    python benchmarks/ablation.py --quick --out-dir /tmp/a   # a tiny version (seconds): checks the script runs

The five changes (notebooks 03-05 explain them):
  gamma        gamma = n_bar/8 sqrt(1 + ||x~||^2/n_bar^2), this repository's own       (paper: gamma = 5)
  c_in         network input c_in(z) x, EDM's input scaling (Karras et al. 2022)       (paper: raw x)
  restrict_M   off                                                                      (paper: on)
  ray clip     far prior points slide along their ray                                  (paper: radius clipped)
  exact z      dx/dlog z from the x-part and E_hat_z = z                               (paper: official z-substitution)
Variants: "paper", "paper + <change>" for each change, "ours" (all five), "ours - <change>" for each change.
The first three change training; the last two only the sampler, so each (data, seed) trains 8 networks:
the recipe of notebook 04 (recipes.toy_train_config() in full mode: 8000 steps, batch 256, large batch 2048,
lr 1e-3, EMA 0.999) on recipes.toy_data(name) with config.seed = torch seed = seed.
Scores, per variant and sampler (Heun 10 and 20 steps = NFE 20 and 40, and RK45 at rtol = atol = 1e-4, stopped
as failed after --max-nfe evaluations), on --samples samples drawn with torch.Generator().manual_seed(seed):
  sw:        sliced Wasserstein (500 projections) to fresh true samples, mean of 3 true draws, / the noise floor
             (the same distance between two true draws of the same size, mean of 5 pairs); 1.0 = as good as data
  far:       fraction of samples farther than 2 max_norm from the origin (flung away)
  rms_mode, modes (8gaussians only): RMS distance to the nearest mode; modes holding >= 5% of the samples
Networks are cached in runs/ablation/<data>-<train key>-s<seed>/checkpoint.pt (train_or_load), and every finished
(data, seed) is written to <out-dir>/ablation-<data>.json at once, so an interrupted run resumes where it stopped.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout
# one thread for torch and numpy alike: with more, OpenMP and BLAS threads spin against each other between scipy's
# RK45 steps and a busy 2-core machine runs 30x slower (set OMP_NUM_THREADS yourself to override)
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
from common import RESULTS, Scorer, TooManyEvaluations, capped, git_commit, write_json  # noqa: E402

from pfgm_lite import data, methods, nets, perturb, recipes, sampling, train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

PAPER = dict(gamma=5.0, precondition=False, restrict_M=True, clip="radius", z_velocity="paper")
OURS = dict(gamma="scaled", precondition=True, restrict_M=False, clip="ray", z_velocity="exact")
CHANGES = {  # name -> the option it sets
    "gamma": "gamma",
    "c_in": "precondition",
    "restrict_M": "restrict_M",
    "ray clip": "clip",
    "exact z": "z_velocity",
}
TRAIN_OPTIONS = ("gamma", "precondition", "restrict_M")
SAMPLERS = (("heun", 10), ("heun", 20), ("rk45", 1))


def variants() -> dict[str, dict]:
    """name -> the PFGM options of that variant (paper, paper + one change, ours, ours - one change)."""
    out = {"paper": dict(PAPER)}
    for change, option in CHANGES.items():
        out[f"paper + {change}"] = {**PAPER, option: OURS[option]}
    out["ours"] = dict(OURS)
    for change, option in CHANGES.items():
        out[f"ours - {change}"] = {**OURS, option: PAPER[option]}
    return out


def train_key(options: dict) -> str:
    """A folder-safe name of the training options (what the network depends on)."""
    g = "g5" if options["gamma"] == 5.0 else "gscaled"
    return f"{g}-{'cin' if options['precondition'] else 'raw'}-{'rM' if options['restrict_M'] else 'noRM'}"


def run_one(name: str, seed: int, config: train.TrainConfig, n_samples: int, max_nfe: int, run_root: Path,
            progress: bool) -> list[dict]:
    """Train the 8 networks of one (data, seed) (or load them) and score every variant with every sampler."""
    train_data = recipes.toy_data(name)
    hp = perturb.hyperparameters_for(train_data)
    score = Scorer(name, n_samples, hp.max_norm, seed)
    networks, seconds = {}, {}
    rows = []
    for variant, options in variants().items():
        key = train_key(options)
        if key not in networks:
            method = methods.PFGM(hp, (2,), **{k: options[k] for k in TRAIN_OPTIONS})
            torch.manual_seed(seed)
            result = train.train_or_load(method, nets.MLP(2), train_data, replace(config, seed=seed),
                                         out_dir=run_root / f"{name}-{key}-s{seed}", progress=progress)
            networks[key] = result.ema
            seconds[key] = round(result.seconds, 1)     # 0 when the network was loaded from the cache
        method = methods.PFGM(hp, (2,), **options)
        for solver, steps in SAMPLERS:
            predict = capped(method.predictor(networks[key]), max_nfe)
            start = time.perf_counter()
            try:
                out = sampling.sample(method, predict, n_samples, solver=solver, steps=steps,
                                      generator=torch.Generator().manual_seed(seed))
                row = dict(nfe=out.nfe, **score(out.x))
            except (TooManyEvaluations, RuntimeError) as err:   # RK45 that does not finish counts as failed
                row = dict(nfe=None, sw=math.inf, far=math.nan, failed=str(err)[:120])
            rows.append(dict(data=name, seed=seed, variant=variant, train=key, train_seconds=seconds[key],
                             solver=solver, steps=steps, sample_seconds=round(time.perf_counter() - start, 2), **row))
            if progress:
                print(f"{name:>10} s{seed} {variant:>22} {solver} {steps:3d}: nfe {row['nfe']}, sw/floor "
                      f"{row['sw']:.3g}, far {row['far']:.3f}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", nargs="+", default=["moons", "8gaussians"], choices=data.toy_names())
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--max-nfe", type=int, default=1000, help="RK45 gives up after this many evaluations")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy machine)")
    parser.add_argument("--out-dir", default=str(RESULTS), help="writes ablation-<data>.json there")
    parser.add_argument("--runs", default=str(ROOT / "runs" / "ablation"), help="where the networks are cached")
    parser.add_argument("--quick", action="store_true", help="a tiny run (40 steps, 200 samples): for tests")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.quick:
        config = train.TrainConfig(steps=40, batch_size=64, large_batch_size=256, lr=1e-3, warmup=5, ema_decay=0.9)
        n_samples, runs = 200, Path(args.runs + "-quick")
    else:   # notebook 04's recipe, recipes.toy_train_config() in full mode, without the EMA warm-up, which came after
        # the committed results (0.999^8000 = 3e-4 of the EMA is the initial weights): a rerun uses the same networks
        config = train.TrainConfig(steps=8000, batch_size=256, large_batch_size=2048, lr=1e-3, warmup=200,
                                   ema_decay=0.999, ema_warmup=False)
        n_samples, runs = args.samples, Path(args.runs)
    meta = dict(command="python benchmarks/ablation.py" + ("" if argv is None else " " + " ".join(argv)),
                train_config=asdict(config), samples=n_samples, max_nfe=args.max_nfe,
                samplers=[list(s) for s in SAMPLERS], variants=variants(), torch=torch.__version__,
                machine=platform.processor() or platform.machine(), threads=args.threads,
                commit=git_commit())
    for name in args.data:
        out = Path(args.out_dir) / f"ablation-{name}.json"
        results = json.loads(out.read_text()) if out.exists() else None
        if results is None or results["meta"]["train_config"] != meta["train_config"] \
                or results["meta"]["samples"] != n_samples:
            results = dict(meta=dict(meta, data=name), rows=[])
        done = {r["seed"] for r in results["rows"]}
        for seed in args.seeds:
            if seed in done:
                continue
            start = time.perf_counter()
            rows = run_one(name, seed, config, n_samples, args.max_nfe, runs, progress=not args.quick)
            results["rows"].extend(rows)
            results["meta"]["updated"] = time.strftime("%Y-%m-%d %H:%M")
            write_json(out, results)
            print(f"{name} seed {seed}: {len(rows)} rows in {time.perf_counter() - start:.0f} s -> {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

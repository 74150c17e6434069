"""PFGM, PFGM++ and a tuned diffusion model (EDM; DDPM's ancestral sampler) on 2D toys: quality against NFE.

    python benchmarks/quality_vs_nfe.py --tune          # 1. tuning on moons and checkerboard, seed 0 -> results/tuning.json
    python benchmarks/quality_vs_nfe.py                 # 2. every method, data set and seed -> results/quality_vs_nfe-<data>.json
    python benchmarks/quality_vs_nfe.py --quick --out-dir /tmp/q    # a tiny version of both (seconds): for the tests

Same network (nets.MLP, 3 x 256), same training (8000 steps, batch 256, Adam 1e-3, 200 warm-up steps, cosine decay,
EMA 0.999; PFGM also draws its 2048-point large batch), same data (recipes.toy_data(name): 100 000 points), 3 seeds.
Methods:
  pfgm          our PFGM recipe (notebooks 04-05); sampled on the grid and start height chosen by the tuning
  pfgm-paper    the paper's recipe (PFGM.paper: the official code's choices, its sampler included), not tuned
  pfgmpp-D<D>   PFGM++ with D extra dimensions, D in 1, 8, 64, 2048, with EDM's tuned settings (the paper's transfer)
  edm           EDM (Karras et al. 2022), tuned: training noise (P_mean, P_std, sigma_data) and sampler (sigma_max, rho)
  ddpm          DDPM's ancestral sampler (1000 steps, and respaced to fewer) on the edm network
On ring and spiral (held out: never tuned on) one seed of pfgm, pfgm-paper, pfgmpp-D8 and edm (budget).
Tuning (seed 0, moons and checkerboard only; the other data sets are never tuned on): EDM's training variants
TUNE_EDM_TRAIN x sampler grid TUNE_EDM_SAMPLER, and PFGM's sampler grid TUNE_PFGM_SAMPLER (start height, time
grid), each scored at Heun 10 steps (NFE 20); the setting with the lowest mean SW / floor over the two data sets wins.
Samplers: Euler (NFE 5 ... 100), Heun (NFE 6 ... 100), RK45 (rtol = atol = 1e-4; given up after --max-nfe), and for ddpm
the ancestral chain with 100, 250, 1000 steps. Scores on --samples samples: SW / noise floor (as notebooks 04-05: 1.0
= as good as a second sample of the data), the share of samples farther than 2 max ||y|| out, and on 8gaussians the RMS
distance to the nearest mode and the modes holding >= 5% of the samples.
Networks are cached under --runs (the pfgm networks of seeds on moons and 8gaussians are the ablation's own,
runs/ablation, when present); finished (data, seed) results are written at once, so a run resumes where it stopped.
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
from common import RESULTS, Scorer, TooManyEvaluations, capped, git_commit, sampler_method, write_json  # noqa: E402

from pfgm_lite import data, methods, nets, perturb, recipes, sampling, train  # noqa: E402
from pfgm_lite.methods import EDM, PFGMpp  # noqa: E402
from pfgm_lite.sampling import ancestral_sample  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# the committed results were trained before the EMA warm-up existed (after 8000 steps the fixed 0.999 decay leaves
# 0.999^8000 = 3e-4 of the EMA on the initial weights): ema_warmup=False keeps a rerun on the networks they came from
TRAIN = train.TrainConfig(steps=8000, batch_size=256, large_batch_size=2048, lr=1e-3, warmup=200, ema_decay=0.999,
                          ema_warmup=False)
QUICK_TRAIN = train.TrainConfig(steps=40, batch_size=64, large_batch_size=256, lr=1e-3, warmup=5, ema_decay=0.9)
DATA = ("moons", "checkerboard", "8gaussians", "ring", "spiral")
TUNE_DATA = ("moons", "checkerboard")
METHODS = ("pfgm", "pfgm-paper", "pfgmpp-D1", "pfgmpp-D8", "pfgmpp-D64", "pfgmpp-D2048", "edm")
HELD_OUT_METHODS = ("pfgm", "pfgm-paper", "pfgmpp-D8", "edm")     # on ring and spiral (budget: one seed, 4 methods)
EULER_STEPS = (5, 10, 20, 35, 50, 100)
HEUN_STEPS = (3, 5, 10, 18, 25, 50)
DDPM_STEPS = (100, 250, 1000)
TUNE_EDM_TRAIN = {   # name -> (P_mean, P_std, sigma_data: None = the data's std per coordinate)
    "default": (-1.2, 1.2, None),
    "image sigma_data": (-1.2, 1.2, 0.5),
    "low noise": (-2.0, 1.5, None),
    "high noise": (-0.5, 1.2, None),
}
TUNE_EDM_SAMPLER = [dict(sigma_max=s, rho=r) for s in (2.5, 5.0, 10.0, 20.0, 80.0) for r in (3.0, 5.0, 7.0)]
TUNE_PFGM_SAMPLER = [dict(start=s, rho=r) for s in (0.5, 1.0, 2.0) for r in (None, 3.0, 7.0)]


def data_std(train_data: torch.Tensor) -> float:
    return train_data.std().item()


def edm_options(train_data: torch.Tensor, tuned: dict) -> dict:
    """EDM / PFGM++ settings from the tuning result (sigma_data None -> the data's std)."""
    p_mean, p_std, sigma_data = TUNE_EDM_TRAIN[tuned["train"]]
    return dict(sigma_data=sigma_data or data_std(train_data), p_mean=p_mean, p_std=p_std,
                sigma_max=tuned["sigma_max"], rho=tuned["rho"])


def build(method_name: str, train_data: torch.Tensor, tuned: dict, config: train.TrainConfig):
    """(method to train, method to sample, cache folder name, train config) for a method name."""
    hp = perturb.hyperparameters_for(train_data)
    if method_name == "pfgm":
        m = methods.PFGM(hp, (2,))
        return m, m, "gscaled-cin-noRM", config
    if method_name == "pfgm-paper":
        trained = methods.PFGM(hp, (2,), gamma=5.0, precondition=False, restrict_M=True)   # the ablation's key
        return trained, methods.PFGM.paper(hp, (2,)), "g5-raw-rM", config
    no_large_batch = replace(config, large_batch_size=config.batch_size)     # only PFGM's target needs one
    options = edm_options(train_data, tuned["edm"])
    if method_name == "edm":
        m = EDM((2,), **options)
        return m, m, "edm", no_large_batch
    if method_name.startswith("pfgmpp-D"):
        m = PFGMpp((2,), D=float(method_name[len("pfgmpp-D"):]), **options)
        return m, m, method_name, no_large_batch
    raise ValueError(f"unknown method {method_name!r}; known: {METHODS}")


def train_cached(method, train_data, config, seed: int, folder: Path, progress: bool):
    torch.manual_seed(seed)
    net = nets.MLP(2, extra=method.extra_outputs)
    return train.train_or_load(method, net, train_data, replace(config, seed=seed), out_dir=folder,
                               progress=progress).ema


def run_samplers(method, net, score: Scorer, n: int, seed: int, max_nfe: int, rho, samplers) -> list[dict]:
    rows = []
    for solver, steps in samplers:
        predict = capped(method.predictor(net), max_nfe)
        start = time.perf_counter()
        try:
            if solver == "ancestral":
                x, nfe = ancestral_sample(method, predict, n, steps=steps, generator=torch.Generator().manual_seed(seed))
            else:
                out = sampling.sample(method, predict, n, solver=solver, steps=steps, rho=rho,
                                      generator=torch.Generator().manual_seed(seed))
                x, nfe = out.x, out.nfe
            row = dict(nfe=nfe, **score(x))
        except (TooManyEvaluations, RuntimeError) as err:
            row = dict(nfe=None, sw=math.inf, far=math.nan, failed=str(err)[:120])
        rows.append(dict(solver=solver, steps=steps, seconds=round(time.perf_counter() - start, 2), **row))
    return rows


def tune(args, config_train, n_samples: int, runs: Path, out_dir: Path) -> dict:
    """Seed 0 on TUNE_DATA: EDM's training variants x sampler grid, PFGM's sampler grid; returns the winners."""
    path = out_dir / "tuning.json"
    results = json.loads(path.read_text()) if path.exists() else dict(rows=[])
    done = {(r["data"], r["method"], r["train"]) for r in results["rows"]}
    for name in TUNE_DATA:
        train_data = recipes.toy_data(name)
        hp = perturb.hyperparameters_for(train_data)
        score = Scorer(name, n_samples, hp.max_norm, 0)
        for variant, (p_mean, p_std, sigma_data) in TUNE_EDM_TRAIN.items():
            if (name, "edm", variant) in done:
                continue
            method = EDM((2,), sigma_data=sigma_data or data_std(train_data), p_mean=p_mean, p_std=p_std)
            net = train_cached(method, train_data, replace(config_train, large_batch_size=config_train.batch_size),
                               0, runs / f"tune-{name}-edm-{variant.replace(' ', '_')}-s0", not args.quick)
            for settings in TUNE_EDM_SAMPLER:
                m = sampler_method(method, settings)
                for row in run_samplers(m, net, score, n_samples, 0, args.max_nfe, settings["rho"], [("heun", 10)]):
                    results["rows"].append(dict(data=name, method="edm", train=variant, **settings, **row))
            write_json(path, results)
        if (name, "pfgm", "ours") not in done:
            method = methods.PFGM(hp, (2,))
            net = train_cached(method, train_data, config_train, 0, runs_for(name, "gscaled-cin-noRM", 0, runs),
                               not args.quick)
            for settings in TUNE_PFGM_SAMPLER:
                m = sampler_method(method, settings)
                for row in run_samplers(m, net, score, n_samples, 0, args.max_nfe, settings["rho"], [("heun", 10)]):
                    results["rows"].append(dict(data=name, method="pfgm", train="ours", **settings, **row))
            write_json(path, results)
    best = {}
    for method_name, keys in (("edm", ("train", "sigma_max", "rho")), ("pfgm", ("start", "rho"))):
        scores: dict = {}
        for r in results["rows"]:
            if r["method"] == method_name:
                scores.setdefault(tuple(r[k] for k in keys), []).append(r["sw"])
        key = min(scores, key=lambda k: sum(scores[k]) / len(scores[k]))
        best[method_name] = dict(zip(keys, key), mean_sw=sum(scores[key]) / len(scores[key]))
    results["best"] = best
    results["meta"] = dict(command="python benchmarks/quality_vs_nfe.py --tune", train_config=asdict(config_train),
                           samples=n_samples, data=list(TUNE_DATA), seed=0, criterion="mean SW / floor at Heun NFE 20",
                           edm_train=TUNE_EDM_TRAIN, edm_sampler=TUNE_EDM_SAMPLER, pfgm_sampler=TUNE_PFGM_SAMPLER)
    write_json(path, results)
    print("tuned:", json.dumps(best), flush=True)
    return best


def runs_for(name: str, key: str, seed: int, runs: Path) -> Path:
    """Cache folder of a network; the pfgm networks are shared with benchmarks/ablation.py (runs/ablation)."""
    if key in ("gscaled-cin-noRM", "g5-raw-rM") and runs.name == "quality_vs_nfe":
        return runs.parent / "ablation" / f"{name}-{key}-s{seed}"
    return runs / f"{name}-{key}-s{seed}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tune", action="store_true", help="run the tuning (seed 0, moons and checkerboard)")
    parser.add_argument("--data", nargs="+", default=list(DATA), choices=data.toy_names())
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--held-out-seeds", nargs="+", type=int, default=[0],
                        help="seeds for the data sets outside moons, checkerboard, 8gaussians (budget)")
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--max-nfe", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out-dir", default=str(RESULTS))
    parser.add_argument("--runs", default=str(ROOT / "runs" / "quality_vs_nfe"))
    parser.add_argument("--quick", action="store_true", help="tiny: 40 steps, 200 samples, one seed")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out_dir = Path(args.out_dir)
    if args.quick:
        config_train, n_samples, runs = QUICK_TRAIN, 200, Path(args.runs + "-quick")
        global TUNE_EDM_SAMPLER, TUNE_PFGM_SAMPLER, EULER_STEPS, HEUN_STEPS, DDPM_STEPS
        TUNE_EDM_SAMPLER, TUNE_PFGM_SAMPLER = TUNE_EDM_SAMPLER[:2], TUNE_PFGM_SAMPLER[:2]
        EULER_STEPS, HEUN_STEPS, DDPM_STEPS = (5,), (3,), (10,)
    else:
        config_train, n_samples, runs = TRAIN, args.samples, Path(args.runs)
    if args.tune:
        tune(args, config_train, n_samples, runs, out_dir)
        return 0
    tuning = out_dir / "tuning.json"
    if not tuning.exists():
        raise SystemExit(f"{tuning} is missing: run with --tune first")
    tuned = json.loads(tuning.read_text())["best"]
    samplers = ([("euler", s) for s in EULER_STEPS] + [("heun", s) for s in HEUN_STEPS] + [("rk45", 1)])
    for name in args.data:
        path = out_dir / f"quality_vs_nfe-{name}.json"
        results = json.loads(path.read_text()) if path.exists() else dict(rows=[])
        results["meta"] = dict(command="python benchmarks/quality_vs_nfe.py", train_config=asdict(config_train),
                               samples=n_samples, tuned=tuned, torch=torch.__version__, threads=args.threads,
                               machine=platform.processor() or platform.machine(), data=name,
                               commit=git_commit())
        train_data = recipes.toy_data(name)
        hp = perturb.hyperparameters_for(train_data)
        main_set = name in ("moons", "checkerboard", "8gaussians")
        seeds = args.seeds if main_set else args.held_out_seeds
        method_names = args.methods if main_set else [m for m in args.methods if m in HELD_OUT_METHODS]
        for seed in seeds:
            score = Scorer(name, n_samples, hp.max_norm, seed)
            done = {r["method"] for r in results["rows"] if r["seed"] == seed}
            for method_name in method_names:
                if method_name in done:
                    continue
                trained, sampled, key, config = build(method_name, train_data, tuned, config_train)
                start = time.perf_counter()
                net = train_cached(trained, train_data, config, seed, runs_for(name, key, seed, runs), not args.quick)
                train_seconds = round(time.perf_counter() - start, 1)
                rows = []
                if method_name == "pfgm":
                    sampled = sampler_method(sampled, tuned["pfgm"])
                    rows += run_samplers(sampled, net, score, n_samples, seed, args.max_nfe, tuned["pfgm"]["rho"],
                                         samplers)
                else:
                    rows += run_samplers(sampled, net, score, n_samples, seed, args.max_nfe, None, samplers)
                if method_name == "edm":
                    rows += [dict(r, method_override="ddpm") for r in
                             run_samplers(sampled, net, score, n_samples, seed, args.max_nfe, None,
                                          [("ancestral", s) for s in DDPM_STEPS])]
                for r in rows:
                    label = r.pop("method_override", method_name)
                    results["rows"].append(dict(data=name, seed=seed, method=label, train_seconds=train_seconds, **r))
                write_json(path, results)
                best = min((r["sw"] for r in rows if r["solver"] == "heun"), default=math.nan)
                print(f"{name} s{seed} {method_name}: best Heun SW/floor {best:.3g} (train {train_seconds:.0f} s)",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""PFGM against diffusion (EDM, DDPM) and flow matching on 2D toys, with paired statistics over training seeds.

    python benchmarks/compare.py --phase tune [--worker K --workers W]   # 1. seed 0 on the tuning sets -> tuning
    python benchmarks/compare.py --phase main [--worker K --workers W]   # 2. every (data, seed, method)
    python benchmarks/compare.py --phase main --data ring spiral           # 2b. the held-out sets (5 seeds)
    python benchmarks/compare.py --phase summary                         # 3. -> results/summary.json
    python benchmarks/compare.py --quick --out-dir /tmp/c                # all three, tiny (seconds): for the tests

Every method trains the same network (nets.MLP, 3 x 256) with the same trainer and budget (TRAIN: 8000 steps, batch
256, Adam 1e-3 with 200 warm-up steps and cosine decay, EMA 0.999 with its warm-up); PFGM alone also draws its
2048-point large batch every step (its target; the cost table counts it). Methods, each by what runs:
  pfgm           PFGM, the package's recipe (methods.PFGM with hyperparameters_for(data): notebooks 04-05)
  edm            EDM (methods.EDM) with recipes.TOY_EDM's training noise (chosen by quality_vs_nfe.py --tune on moons
                 and checkerboard, the tuning sets here too)
  pfgmpp         PFGM++ (methods.PFGMpp) with EDM's toy settings and D = (D/N) N, D/N picked by the tuning
  flow_matching  conditional flow matching / rectified flow, linear interpolant (methods.FlowMatching)
  ddpm           DDPM trained as DDPM: eps-prediction, linear beta 1e-4 to 0.02, T = 1000 (methods.DDPM)
Samplers ("families"), each given the same budget of 9 settings, tuned on seed 0 of the tuning sets (moons,
checkerboard) against a validation sample (its own true draws and prior draws, never the test sample), criterion:
the mean over the two sets of log(SW / floor) at 20 NFE (Euler 20 steps and Heun 10 steps for the ODE families):
  pfgm  geometric   the ODE on PFGM's own grid (equal steps in log z), start height x z_max in {0.5, 1, 2}
        rho         the ODE on EDM's rho grid in z, rho in {3, 7} x start in {0.5, 1, 2}
  edm   ode         the ODE (Heun: EDM's sampler), sigma_max in {2.5, 5, 10} x rho in {3, 5, 7}
        churn       EDM's stochastic sampler (Algorithm 2) on TOY_EDM's grid (sigma_max 5, rho 3), S_churn in CHURN
  pfgmpp ode        D / N in {0.5, 4, 32} (a training each) x rho in {3, 5, 7}, sigma_max 5
  flow_matching ode the ODE on the grid t = (1 - u)^rho, rho in FM_RHO (rho 1: equal steps in t)
  ddpm  ddim        DDIM (eta = 0), level spacing power in POWERS (1: evenly spaced; 2: DDIM's quadratic)
        ancestral   the ancestral chain, spacing power in POWERS
Test (per data set, seed k = 0..4 on moons, checkerboard, 8gaussians and the held-out ring and spiral): training data
toy_data(name, seed=k), network seed k, samples drawn with generator k, scored against test draws from Scorer(seed=k)'s
generator: paired by
training data and initialization, while the test draws are fresh for every score (reproducible, but not the same
sample for two methods, so the evaluation's noise is not paired away). ODE families at Euler NFE 2 ... 100 and
Heun NFE 4 ... 100 (equal NFE), RK45 (rtol = atol = 1e-4, given up after 1000 NFE, its NFE counted for the whole
batch of samples); DDIM at 2 ... 100 steps, the chain at 4 ... 1000, EDM's stochastic sampler at 2 ... 50 steps
(NFE 2n - 1). Scores: SW / noise floor (metric "sw"), energy distance / its floor (metric "energy", on the first
2000 samples) and on eight Gaussians the RMS distance to the nearest mode ("rms_mode"). On seed 0 the Heun / DDIM
point at 20 NFE is also re-drawn 4 times (new prior draws and new test draws, the same network): the evaluation's share of the spread.
Each task writes its own file (results/compare/...), so a run resumes where it stopped; --workers splits the tasks.
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
os.environ.setdefault("OMP_NUM_THREADS", "1")            # see quality_vs_nfe.py: one thread per worker

import torch  # noqa: E402
from common import RESULTS, Scorer, TooManyEvaluations, capped, git_commit, sampler_method, write_json  # noqa: E402

from pfgm_lite import metrics, perturb, recipes, sampling, stats, train  # noqa: E402
from pfgm_lite.methods import DDPM, PFGM, FlowMatching, Method, method_from_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TRAIN = train.TrainConfig(steps=8000, batch_size=256, large_batch_size=2048, lr=1e-3, warmup=200, ema_decay=0.999)
QUICK_TRAIN = train.TrainConfig(steps=40, batch_size=64, large_batch_size=256, lr=1e-3, warmup=5, ema_decay=0.9)
MAIN_DATA = ("moons", "checkerboard", "8gaussians")
TUNE_DATA = ("moons", "checkerboard")
SEEDS = (0, 1, 2, 3, 4)
HELD_OUT = ("ring", "spiral")                        # no method's setting was chosen on these
HELD_OUT_SEEDS = SEEDS
METHODS = ("pfgm", "edm", "pfgmpp", "flow_matching", "ddpm")
PFGMPP_RATIOS = (0.5, 4.0, 32.0)                     # D / N
CHURN = (0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 40.0)
FM_RHO = (1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0, 5.0)
POWERS = (1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0, 5.0)
EULER_NFE = (2, 4, 6, 10, 20, 50, 100)
HEUN_STEPS = (2, 3, 5, 10, 25, 50)                   # NFE 4 ... 100
DDIM_STEPS = (2, 4, 6, 10, 20, 50, 100)
ANCESTRAL_STEPS = (4, 6, 10, 20, 50, 100, 1000)
CHURN_STEPS = (2, 3, 5, 10, 25, 50)
ENERGY_SAMPLES = 2000
VALIDATION_SEED = 5000                               # the validation sample's true draws and prior draws
MAX_NFE = 1000


def families(method_name: str) -> dict[str, list[dict]]:
    """The sampler families of a method and each one's 9 settings (see the module doc)."""
    if method_name == "pfgm":
        return {"geometric": [dict(start=s, rho=None) for s in (0.5, 1.0, 2.0)],
                "rho": [dict(start=s, rho=r) for r in (3.0, 7.0) for s in (0.5, 1.0, 2.0)]}
    if method_name == "edm":
        return {"ode": [dict(sigma_max=s, rho=r) for s in (2.5, 5.0, 10.0) for r in (3.0, 5.0, 7.0)],
                "churn": [dict(churn=c, sigma_max=recipes.TOY_EDM["sigma_max"], rho=recipes.TOY_EDM["rho"])
                          for c in CHURN]}
    if method_name == "pfgmpp":
        return {"ode": [dict(ratio=q, sigma_max=recipes.TOY_EDM["sigma_max"], rho=r)
                        for q in PFGMPP_RATIOS for r in (3.0, 5.0, 7.0)]}
    if method_name == "flow_matching":
        return {"ode": [dict(rho=r) for r in FM_RHO]}
    if method_name == "ddpm":
        return {"ddim": [dict(power=p) for p in POWERS], "ancestral": [dict(power=p) for p in POWERS]}
    raise ValueError(f"unknown method {method_name!r}; known: {METHODS}")


def training_key(method_name: str, setting: dict | None = None) -> str:
    """The cache key of a trained network (PFGM++ trains one per D / N)."""
    if method_name == "pfgmpp":
        return f"pfgmpp-DN{setting['ratio']:g}"
    return method_name


def build_method(method_name: str, train_data: torch.Tensor, setting: dict | None = None) -> Method:
    """The method trained for a name (PFGM++: at the setting's D / N)."""
    if method_name == "pfgm":
        return PFGM(perturb.hyperparameters_for(train_data), (2,))
    if method_name == "edm":
        return recipes.toy_edm(train_data)
    if method_name == "pfgmpp":
        return recipes.toy_pfgmpp(train_data, D=setting["ratio"] * 2)
    if method_name == "flow_matching":
        return FlowMatching((2,))
    if method_name == "ddpm":
        return DDPM((2,))
    raise ValueError(f"unknown method {method_name!r}; known: {METHODS}")


def trained_network(method_name: str, setting: dict | None, name: str, seed: int, config: train.TrainConfig,
                    runs: Path, progress: bool, load_only: bool = False):
    """(method, EMA network, train seconds, train config): trained on toy_data(name, seed), or loaded from runs/
    (load_only: only loaded; a missing or unfinished network raises instead of being trained)."""
    train_data = recipes.toy_data(name, seed=seed)
    method = build_method(method_name, train_data, setting)
    if not isinstance(method, PFGM):
        config = replace(config, large_batch_size=config.batch_size)        # only PFGM's target needs one
    folder = runs / f"{name}-{training_key(method_name, setting)}-s{seed}"
    timing = folder / "train_seconds.json"            # the time of the training itself, kept for later loads
    start = time.perf_counter()
    net = recipes.toy_network(extra=method.extra_outputs, seed=seed)
    if load_only:
        result = train.load_trained(method, net, train_data, replace(config, seed=seed), out_dir=folder)
    else:
        result = train.train_or_load(method, net, train_data, replace(config, seed=seed), out_dir=folder,
                                     progress=progress)
    seconds = time.perf_counter() - start
    if timing.exists():
        seconds = json.loads(timing.read_text())["seconds"]
    elif load_only:
        seconds = None                                # a load's time is not a training time
    else:
        write_json(timing, dict(seconds=seconds, steps=config.steps, threads=torch.get_num_threads()))
    return method, result.ema, seconds, config


class Scores(Scorer):
    """Scorer's SW / floor (and far share, 8gaussians' modes) plus the energy distance / its floor."""

    def __init__(self, name: str, n: int, max_norm: float, seed: int):
        super().__init__(name, n, max_norm, seed)
        m = min(n, ENERGY_SAMPLES)
        self.energy_floor = metrics.noise_floor(metrics.energy_distance, self.true, m, repeats=3)

    def __call__(self, x: torch.Tensor) -> dict:
        out = super().__call__(x)
        if math.isfinite(out["sw"]):
            m = min(len(x), ENERGY_SAMPLES)
            out["energy"] = metrics.energy_distance(x[:m], self.true(m)) / self.energy_floor
        else:
            out["energy"] = math.inf
        return out


def sampler_runs(family: str, quick: bool) -> list[tuple[str, int]]:
    """(solver, steps) of a family on the test grid."""
    if family == "ddim":
        return [("ddim", s) for s in (DDIM_STEPS[:2] if quick else DDIM_STEPS)]
    if family == "ancestral":
        return [("ancestral", s) for s in (ANCESTRAL_STEPS[:2] if quick else ANCESTRAL_STEPS)]
    if family == "churn":
        return [("churn", s) for s in (CHURN_STEPS[:2] if quick else CHURN_STEPS)]
    euler, heun = (EULER_NFE[:2], HEUN_STEPS[:1]) if quick else (EULER_NFE, HEUN_STEPS)
    return [("euler", s) for s in euler] + [("heun", s) for s in heun] + [("rk45", 1)]


def tuning_runs(family: str) -> list[tuple[str, int]]:
    """(solver, steps) at 20 NFE, the tuning criterion's points."""
    return {"ddim": [("ddim", 20)], "ancestral": [("ancestral", 20)], "churn": [("churn", 10)]}.get(
        family, [("euler", 20), ("heun", 10)])


def sampling_method(method: Method, family: str, setting: dict) -> Method:
    """The method as a setting samples it: PFGM's start height, EDM's / PFGM++'s sigma_max."""
    if isinstance(method, PFGM):
        return sampler_method(method, dict(start=setting["start"]))
    if "sigma_max" in setting:
        return sampler_method(method, dict(sigma_max=setting["sigma_max"]))
    return method


def draw(method: Method, net, family: str, setting: dict, solver: str, steps: int, n: int, seed: int
         ) -> tuple[torch.Tensor, int]:
    """n samples with one sampler: (samples (n, 2), NFE); RK45 gives up after MAX_NFE evaluations."""
    g = torch.Generator().manual_seed(seed)
    if family == "churn":
        m = method_from_config({**method.to_config(), "sigma_max": setting["sigma_max"], "rho": setting["rho"]})
        return sampling.stochastic_sample(m, m.predictor(net), n, steps=steps, churn=setting["churn"], generator=g)
    if family == "ddim":
        return sampling.ddim_sample(method, method.predictor(net), n, steps=steps, power=setting["power"], generator=g)
    if family == "ancestral":
        return sampling.ancestral_sample(method, method.predictor(net), n, steps=steps, power=setting["power"],
                                         generator=g)
    m = sampling_method(method, family, setting)
    rho = setting.get("rho")
    if isinstance(m, FlowMatching) and rho == 1.0:
        rho = None                                   # t = 1 - u: equal steps in t
    predict = capped(m.predictor(net), MAX_NFE)
    out = sampling.sample(m, predict, n, solver=solver, steps=steps, rho=rho, generator=g)
    return out.x, out.nfe


def score_runs(method, net, family, setting, runs, n, seed, score) -> list[dict]:
    rows = []
    for solver, steps in runs:
        start = time.perf_counter()
        try:
            x, nfe = draw(method, net, family, setting, solver, steps, n, seed)
            row = dict(nfe=nfe, **score(x))
        except (TooManyEvaluations, RuntimeError) as err:
            row = dict(nfe=None, sw=math.inf, energy=math.inf, far=math.nan, failed=str(err)[:120])
        rows.append(dict(solver=solver, steps=steps, seconds=round(time.perf_counter() - start, 3),
                         seconds_per_sample=(time.perf_counter() - start) / n, samples=n, **row))
    return rows


def tune_task(method_name: str, name: str, args, config, n: int, out: Path, runs: Path) -> None:
    """Seed 0 of one tuning set: every family's settings at 20 NFE on the validation sample."""
    path = out / "tuning" / f"{name}-{method_name}.json"
    if path.exists():
        return
    train_data = recipes.toy_data(name, seed=0)
    score = Scores(name, n, perturb.hyperparameters_for(train_data).max_norm, VALIDATION_SEED)
    rows, nets_cache = [], {}
    for family, settings in families(method_name).items():
        for setting in settings:
            key = training_key(method_name, setting)
            if key not in nets_cache:
                nets_cache[key] = trained_network(method_name, setting, name, 0, config, runs, not args.quick)[:2]
            method, net = nets_cache[key]
            for r in score_runs(method, net, family, setting, tuning_runs(family), n, VALIDATION_SEED + 2000,
                                score):
                rows.append(dict(data=name, method=method_name, family=family, setting=setting, **r))
    write_json(path, dict(rows=rows, meta=dict(samples=n, validation_seed=VALIDATION_SEED, commit=git_commit())))
    print(f"tuned {method_name} on {name}", flush=True)


def best_of(rows: list[dict], family: str) -> dict:
    """The family's setting with the lowest mean log(SW / floor) over its rows (data sets and the 20-NFE points)."""
    scores: dict = {}
    for r in rows:
        if r["family"] == family:
            key = json.dumps(r["setting"], sort_keys=True)
            scores.setdefault(key, []).append(math.log(r["sw"]) if math.isfinite(r["sw"]) else math.inf)
    if not scores:
        raise ValueError(f"no tuning rows for family {family!r}")
    return json.loads(min(scores, key=lambda k: sum(scores[k]) / len(scores[k])))


def tuned(out: Path) -> dict:
    """{method: {family: best setting}} from the tuning files of both tuning sets (all must exist)."""
    result = {}
    for method_name in METHODS:
        rows = []
        for name in TUNE_DATA:
            path = out / "tuning" / f"{name}-{method_name}.json"
            if not path.exists():
                raise SystemExit(f"{path} is missing: run --phase tune first")
            rows += json.loads(path.read_text())["rows"]
        result[method_name] = {f: best_of(rows, f) for f in families(method_name)}
    return result


def main_task(method_name: str, name: str, seed: int, args, config, n: int, out: Path, runs: Path,
              best: dict) -> None:
    path = out / "runs" / f"{name}-{method_name}-s{seed}.json"
    if path.exists():
        return
    train_data = recipes.toy_data(name, seed=seed)
    score = Scores(name, n, perturb.hyperparameters_for(train_data).max_norm, seed)
    settings = best[method_name]
    training_setting = settings.get("ode")
    method, net, seconds, used = trained_network(method_name, training_setting, name, seed, config, runs,
                                                 not args.quick)
    large = recipes.toy_data(name, used.large_batch_size, seed=seed)
    flops = train.step_flops(method, recipes.toy_network(extra=method.extra_outputs), large, used.batch_size)
    rows = []
    for family, setting in settings.items():
        for r in score_runs(method, net, family, setting, sampler_runs(family, args.quick), n, seed, score):
            rows.append(dict(family=family, setting=setting, **r))
        if seed == 0:                     # the evaluation's own spread: new prior and test draws, same network
            grid = sampler_runs(family, args.quick)
            solver, steps = tuning_runs(family)[-1] if tuning_runs(family)[-1] in grid else grid[-2]
            for redraw in range(1, 5):
                again = Scores(name, n, score.max_norm, 100 + redraw)
                for r in score_runs(method, net, family, setting, [(solver, steps)], n, 100 + redraw, again):
                    rows.append(dict(family=family, setting=setting, redraw=redraw, **r))
    write_json(path, dict(data=name, method=method_name, seed=seed, train_seconds=round(seconds, 1),
                          train_steps=used.steps, train_flops_per_step=flops, rows=rows,
                          threads=torch.get_num_threads(), commit=git_commit()))
    heun = [r["sw"] for r in rows if r["solver"] in ("heun", "ddim") and r.get("redraw") is None]
    print(f"{name} s{seed} {method_name}: best SW/floor {min(heun, default=math.nan):.3g} "
          f"(train {seconds:.0f} s)", flush=True)


def tasks(phase: str, seeds, data_sets) -> list[tuple]:
    if phase == "tune":     # PFGM first: its training is the longest
        return [(m, d) for m in METHODS for d in TUNE_DATA]
    return [(m, d, s) for s in seeds for d in data_sets for m in METHODS]


def summarize(out: Path, n_seeds_main: int) -> dict:
    """results/summary.json from the task files: rows (mean and t-interval per cell), pairs (PFGM against each
    method at equal solver and NFE), nfe_to_bar, spread (evaluation against training seeds), cost."""
    files = sorted((out / "runs").glob("*.json"))
    tasks_ = [json.loads(p.read_text()) for p in files]
    best = tuned(out)
    cells: dict = {}
    for t in tasks_:
        for r in t["rows"]:
            if r.get("redraw") is not None:
                continue
            key = (t["data"], t["method"], r["family"], r["solver"], r["steps"])
            cells.setdefault(key, {})[t["seed"]] = r
    rows = []
    for (name, method_name, family, solver, steps), by_seed in sorted(cells.items(), key=str):
        seeds = sorted(by_seed)
        extra = ["rms_mode"] if all("rms_mode" in by_seed[s] for s in seeds) else []     # eight Gaussians
        for metric in ["sw", "energy"] + extra:
            values = [by_seed[s][metric] for s in seeds]
            nfes = [by_seed[s]["nfe"] for s in seeds]
            row = dict(data=name, method=method_name, family=family, sampler=solver, steps=steps,
                       nfe=(nfes[0] if len(set(nfes)) == 1 else (sum(x for x in nfes if x) / max(1, sum(1 for x in nfes if x)))),
                       metric=metric, n_seeds=len(values), values=values, seeds=seeds,
                       seconds_per_sample=sum(by_seed[s]["seconds_per_sample"] for s in seeds) / len(seeds),
                       samples=by_seed[seeds[0]]["samples"])
            if len(values) >= 2 and all(math.isfinite(v) for v in values):
                row["mean"], row["ci_low"], row["ci_high"] = stats.t_interval(values)
            else:
                row["mean"] = sum(values) / len(values) if all(math.isfinite(v) for v in values) else math.inf
                row["ci_low"] = row["ci_high"] = None
            rows.append(row)
    # PFGM's family for the pairs: the grid that won on validation (lower mean criterion)
    pairs = []
    partner = {"euler": {"ddpm": ("ddim", "ddim")}, "heun": {}}
    for name in MAIN_DATA + HELD_OUT:
        for pfgm_family in ("geometric", "rho"):
            for solver in ("euler", "heun"):
                for other in METHODS[1:]:
                    fam, osolver = partner[solver].get(other, ("ode", solver))
                    if other == "ddpm" and solver == "heun":
                        continue
                    for key_a, a in cells.items():
                        if key_a[:4] != (name, "pfgm", pfgm_family, solver):
                            continue
                        nfe_a = next(iter(a.values()))["nfe"]
                        for key_b, b in cells.items():
                            if key_b[:4] != (name, other, fam, osolver):
                                continue
                            if next(iter(b.values()))["nfe"] != nfe_a:
                                continue
                            common = sorted(set(a) & set(b))
                            for metric in ("sw", "energy"):
                                va, vb = [a[s][metric] for s in common], [b[s][metric] for s in common]
                                if len(common) < 2 or not all(math.isfinite(v) for v in va + vb):
                                    continue
                                d = stats.paired_difference([math.log(v) for v in va], [math.log(v) for v in vb])
                                pairs.append(dict(data=name, a=f"pfgm-{pfgm_family}", b=f"{other}-{fam}",
                                                  sampler=solver, b_sampler=osolver, nfe=nfe_a, metric=metric,
                                                  scale="log", n_seeds=len(common), **{k: d[k] for k in (
                                                      "diff_mean", "ci_low", "ci_high", "verdict")}))
    # NFE to reach a bar, per seed, on each family's Euler / Heun / DDIM / chain curve
    reach = []
    curves: dict = {}
    for (name, method_name, family, solver, steps), by_seed in cells.items():
        if solver == "rk45":
            continue
        for s, r in by_seed.items():
            if r["nfe"]:
                curves.setdefault((name, method_name, family, solver), {}).setdefault(s, []).append((r["nfe"], r["sw"]))
    for key, by_seed in sorted(curves.items()):
        for bar in (2.0, 1.5):
            per_seed = []
            for s in sorted(by_seed):
                nfe, sw = zip(*by_seed[s])
                hit = stats.nfe_to_reach(nfe, sw, bar)
                per_seed.append(math.inf if hit is None else hit)
            med, low, high, coverage = stats.median_interval(per_seed)
            reach.append(dict(data=key[0], method=key[1], family=key[2], sampler=key[3], metric="sw", bar=bar,
                              per_seed=per_seed, median=med, low=low, high=high, coverage=coverage))
    # the evaluation's share of the spread (seed 0 redrawn) against the spread over training seeds
    spread = []
    for t in tasks_:
        if t["seed"] != 0:
            continue
        for r in [r for r in t["rows"] if r.get("redraw")]:
            key = (t["data"], t["method"], r["family"], r["solver"], r["steps"])
            redraws = [x["sw"] for x in t["rows"] if x.get("redraw") and x["family"] == r["family"]]
            first = cells.get(key, {}).get(0)
            seeds_values = [v["sw"] for v in cells.get(key, {}).values()]
            if r["redraw"] != 1 or first is None or len(seeds_values) < 2:
                continue
            evaluation = [first["sw"]] + redraws
            sd = lambda v: (sum((x - sum(v) / len(v)) ** 2 for x in v) / (len(v) - 1)) ** 0.5  # noqa: E731
            spread.append(dict(data=t["data"], method=t["method"], family=r["family"], sampler=r["solver"],
                               steps=r["steps"], evaluation_sd=sd(evaluation), evaluation_n=len(evaluation),
                               training_sd=sd(seeds_values), training_n=len(seeds_values)))
    cost = {}
    for t in tasks_:
        c = cost.setdefault(t["method"], dict(method=t["method"], flops=[], seconds=[]))
        c["flops"].append(t["train_flops_per_step"]["total"])
        c["seconds"].append(t["train_seconds"] / t["train_steps"])
    cost_rows = [dict(method=m, train_flops_per_step=max(c["flops"]), train_seconds_per_step=min(c["seconds"]),
                      trainings=len(c["seconds"])) for m, c in cost.items()]
    seeds_per = {}
    for t in tasks_:
        seeds_per.setdefault((t["data"], t["method"]), set()).add(t["seed"])
    summary = dict(
        rows=rows, pairs=pairs, nfe_to_bar=reach, spread=spread, cost=cost_rows, tuned=best,
        seeds={f"{d}/{m}": sorted(s) for (d, m), s in sorted(seeds_per.items())},
        meta=dict(command="python benchmarks/compare.py", train_config=asdict(TRAIN),
                  data=[d for d in MAIN_DATA + HELD_OUT if any(k[0] == d for k in seeds_per)],
                  main_data=list(MAIN_DATA), held_out=list(HELD_OUT), tuning_data=list(TUNE_DATA),
                  methods=list(METHODS), families={m: families(m) for m in METHODS},
                  criterion="mean over the tuning sets of log(SW / floor) at 20 NFE, on a validation sample",
                  pairs="a - b of log(score) seed by seed, Student-t 95% interval over seeds (n - 1 dof); "
                        "'ahead' = a lower (better), 'tie' = the interval contains 0; many verdicts at once, "
                        "no correction for multiplicity",
                  device="CPU (" + (platform.processor() or platform.machine()) + "), 2 workers, 1 thread each",
                  torch=torch.__version__, commit=git_commit(), complete_main=all(
                      len(seeds_per.get((d, m), ())) >= n_seeds_main for d in MAIN_DATA for m in METHODS),
                  complete_held_out=all(len(seeds_per.get((d, m), ())) >= len(HELD_OUT_SEEDS)
                                        for d in HELD_OUT for m in METHODS)))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--phase", choices=("tune", "main", "summary", "all"), default="all")
    parser.add_argument("--worker", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument("--data", nargs="+", default=list(MAIN_DATA), choices=MAIN_DATA + HELD_OUT,
                        help="the main sets or the held-out ring and spiral (both with the 5 seeds of --seeds)")
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out-dir", default=str(RESULTS / "compare"))
    parser.add_argument("--summary", default=str(RESULTS / "summary.json"))
    parser.add_argument("--runs", default=str(ROOT / "runs" / "compare"))
    parser.add_argument("--quick", action="store_true", help="tiny: 40 steps, 300 samples, few grid points")
    args = parser.parse_args(argv)
    if not 0 <= args.worker < args.workers:
        parser.error(f"--worker must be in 0..{args.workers - 1}, got {args.worker}")
    torch.set_num_threads(args.threads)
    out, runs = Path(args.out_dir), Path(args.runs)
    config, n = (QUICK_TRAIN, 300) if args.quick else (TRAIN, args.samples)
    if args.quick:
        global CHURN, FM_RHO, POWERS, PFGMPP_RATIOS
        CHURN, FM_RHO, POWERS, PFGMPP_RATIOS = CHURN[:2], FM_RHO[:2], POWERS[:2], PFGMPP_RATIOS[:2]
    if args.phase in ("tune", "all"):
        for k, (m, d) in enumerate(tasks("tune", args.seeds, args.data)):
            if k % args.workers == args.worker:
                tune_task(m, d, args, config, n, out, runs)
    if args.phase in ("main", "all"):
        best = tuned(out)
        for k, (m, d, s) in enumerate(tasks("main", args.seeds, args.data)):
            if k % args.workers == args.worker:
                main_task(m, d, s, args, config, n, out, runs, best)
    if args.phase in ("summary", "all"):
        write_json(Path(args.summary), summarize(out, len(SEEDS)))
        print(f"wrote {args.summary}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

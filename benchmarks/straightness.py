"""Why one flow is easier to integrate than another: how straight each method's ODE paths are, and how large the
error of one Euler step is along them, on the networks that benchmarks/compare.py trained (loaded from its runs
folder, never retrained; run compare.py first).

    python benchmarks/straightness.py                 # main sets, seeds 0-4 -> results/straightness.json
    python benchmarks/straightness.py --quick --compare-runs DIR --out FILE   # tiny, for the tests

Every sampler integrates in a normalized time u in [0, 1] (sampling.integrate: u = 0 at the prior, u = 1 at t_min),
on its method's own time variable (PFGM: ln z, EDM and PFGM++: ln sigma, flow matching: t) and its tuned grid
(results/summary.json's "tuned"). For each data set, configuration and seed k: n prior draws from generator k,
a reference path by Heun with REF_STEPS steps in u, and along it
  straightness   path length / chord in data space (x in R^N; PFGM's z is not counted), per sample; reported: the
                 median over the samples (1: a straight line)
  local error    at the nodes u_j = j / 20 of a 20-step Euler grid, || x(u_j) + v(x(u_j), u_j) / 20 - x(u_{j+1}) ||
                 on the reference path, mean over the samples, in units of the data's standard deviation; "local sum"
                 adds the 20 steps' errors
  global error   || Euler 20-step end point - reference end point || / data std, from the same start points
  sw_ref, sw_euler20   SW / noise floor of the reference's end points (what the network gives with a near-exact
                 solver: the learning error) and of Euler's 20-step end points (plus the integration error), every
                 configuration of a seed against the same test draws (Scorer re-seeded), so they pair within a seed
  sw_euler20_to_ref    SW between Euler's 20-step end points and the reference's / the floor: the integration
                 error as a distance between distributions, with no test draws in it
  ref_check      the reference's own error (first seed only): || Heun(REF_STEPS) - Heun(2 REF_STEPS) || at the end,
                 mean / data std
Configurations: each method's tuned ODE sampler (PFGM on both grids), and PFGM's own levers on the same networks:
its grid (geometric in ln z, rho 3, rho 7), its start height (0.5, 1, 2 x z_max) and its prior's tail (the ray clip
of notebook 05 against the official radius clip). DDPM is not here: its deterministic sampler is DDIM, not
sampling.integrate. Seeds are paired (the same training data, network seed and prior generator per k), so the
summary gives t-intervals over seeds; the sampler cost is small (about a minute per data set and seed on one core).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
from common import RESULTS, Scorer, git_commit, write_json  # noqa: E402
from compare import HELD_OUT, MAIN_DATA, QUICK_TRAIN, ROOT, SEEDS, TRAIN, sampling_method, trained_network, training_key  # noqa: E402

from pfgm_lite import perturb, recipes, sampling, stats  # noqa: E402
from pfgm_lite.methods import FlowMatching, method_from_config  # noqa: E402
from pfgm_lite.sampling import time_grid  # noqa: E402

REF_STEPS = 400
EULER_STEPS = 20


def configurations(tuned: dict) -> list[tuple[str, str, dict, str]]:
    """(label, method name, sampler setting, what it varies) for every path measured."""
    pfgm = tuned["pfgm"]["rho"]
    out = [("pfgm rho (tuned)", "pfgm", dict(pfgm), "tuned"),
           ("pfgm geometric (tuned)", "pfgm", dict(tuned["pfgm"]["geometric"]), "tuned"),
           ("edm", "edm", dict(tuned["edm"]["ode"]), "tuned"),
           ("pfgmpp", "pfgmpp", dict(tuned["pfgmpp"]["ode"]), "tuned"),
           ("flow matching", "flow_matching", dict(tuned["flow_matching"]["ode"]), "tuned")]
    for rho in (None, 3.0, 7.0):
        setting = dict(pfgm, rho=rho)
        if setting != pfgm:
            out.append((f"pfgm grid {'geometric' if rho is None else f'rho {rho:g}'}", "pfgm", setting, "grid"))
    for start in (0.5, 1.0, 2.0):
        setting = dict(pfgm, start=start)
        if setting != pfgm:
            out.append((f"pfgm start {start:g}", "pfgm", setting, "start height"))
    out.append(("pfgm radius clip", "pfgm", dict(pfgm, clip="radius"), "prior's tail"))
    unique, seen = [], []
    for entry in out:                                   # a lever equal to a tuned setting is measured once
        if (entry[1], entry[2]) not in seen:
            seen.append((entry[1], entry[2]))
            unique.append(entry)
    return unique


def sampler(method, setting: dict):
    """(the method as the setting samples it, the grid's rho for sampling.integrate)."""
    m = sampling_method(method, "ode", setting)
    if "clip" in setting:
        m = method_from_config({**m.to_config(), "clip": setting["clip"]})
    rho = setting.get("rho")
    if isinstance(m, FlowMatching) and rho == 1.0:
        rho = None
    return m, rho


def measure(method, predictor_of, setting: dict, n: int, seed: int, scorer: Scorer | None, scale: float,
            ref_steps: int, check: bool, dtype: torch.dtype = torch.float32, t_min: float | None = None) -> dict:
    """The path statistics of one configuration on one seed (see the module doc).

    predictor_of: the sampled method -> its predictor (a trained network's, or an exact one in the tests)
    scorer: the SW scores (None: none); check: also ref_check; dtype: of the paths; t_min: where the paths end
    (default: the method's own; the tests' exact velocity of a single point is 0 / 0 at t = 0 and needs t_min > 0)
    """
    m, rho = sampler(method, setting)
    predict = predictor_of(m)
    x0, t0 = m.sample_prior(n, generator=torch.Generator().manual_seed(seed))
    x0, t0 = x0.to(dtype), t0.to(dtype)
    t1 = m.t_min if t_min is None else t_min
    with torch.no_grad():
        ref = sampling.integrate(m, predict, x0, t0, t1, solver="heun", steps=ref_steps, rho=rho,
                                 return_trajectory=True)
        finer = sampling.integrate(m, predict, x0, t0, t1, solver="heun", steps=2 * ref_steps, rho=rho) if check else None
        euler = sampling.integrate(m, predict, x0, t0, t1, solver="euler", steps=EULER_STEPS, rho=rho)
        path = torch.stack([x for x, _ in ref.trajectory])                      # (ref_steps + 1, n, N)
        length = (path[1:] - path[:-1]).norm(dim=-1).sum(0)
        chord = (path[-1] - path[0]).norm(dim=-1)
        t_at, rate = time_grid(t0, t1, m.rho if rho is None else rho, m.time)
        every = ref_steps // EULER_STEPS
        local = []
        for j in range(EULER_STEPS):
            u = j / EULER_STEPS
            x = path[j * every]
            t = t_at(u)
            v = rate(u)[:, None] * m.velocity(predict(x, t), x, t)
            local.append(((x + v / EULER_STEPS - path[(j + 1) * every]).norm(dim=-1).mean() / scale).item())
    return dict(straightness=(length / chord.clamp_min(1e-12)).median().item(), local=local,
                local_sum=sum(local), global_error=((euler.x - ref.x).norm(dim=-1).mean() / scale).item(),
                ref_check=((finer.x - ref.x).norm(dim=-1).mean() / scale).item() if check else None,
                sw_ref=scorer(ref.x)["sw"] if scorer else None, sw_euler20=scorer(euler.x)["sw"] if scorer else None,
                sw_euler20_to_ref=scorer.sw(euler.x, ref.x) / scorer.floor if scorer else None)


def summarize(rows: list[dict]) -> list[dict]:
    """Mean and 95% t-interval over seeds of every statistic, per data set and configuration."""
    out = []
    keys = sorted({(r["data"], r["label"]) for r in rows}, key=lambda k: (k[0], k[1]))
    for name, label in keys:
        sel = sorted((r for r in rows if r["data"] == name and r["label"] == label), key=lambda r: r["seed"])
        entry = dict(data=name, label=label, method=sel[0]["method"], lever=sel[0]["lever"],
                     setting=sel[0]["setting"], seeds=[r["seed"] for r in sel])
        for stat in ("straightness", "local_sum", "global_error", "ref_check", "sw_ref", "sw_euler20",
                     "sw_euler20_to_ref"):
            values = [r[stat] for r in sel if r[stat] is not None]
            entry[stat] = values
            if len(values) >= 2 and all(math.isfinite(v) for v in values):
                mean, low, high = stats.t_interval(values)
                entry[stat + "_mean"], entry[stat + "_ci"] = mean, [low, high]
            else:
                entry[stat + "_mean"], entry[stat + "_ci"] = sum(values) / len(values), None
        entry["local_mean"] = [sum(r["local"][j] for r in sel) / len(sel) for j in range(EULER_STEPS)]
        out.append(entry)
    return out


def pairs(rows: list[dict], reference: str = "pfgm rho (tuned)") -> list[dict]:
    """Every configuration against the reference, seed by seed, on the log of local_sum, global_error and
    sw_euler20: stats.paired_difference (a = the configuration; "ahead" = lower than the reference's)."""
    out = []
    for name in sorted({r["data"] for r in rows}):
        base = {r["seed"]: r for r in rows if r["data"] == name and r["label"] == reference}
        for label in sorted({r["label"] for r in rows if r["data"] == name} - {reference}):
            other = {r["seed"]: r for r in rows if r["data"] == name and r["label"] == label}
            common = sorted(set(base) & set(other))
            for stat in ("local_sum", "global_error", "sw_euler20", "sw_euler20_to_ref"):
                a, b = [other[k][stat] for k in common], [base[k][stat] for k in common]
                if len(common) < 2 or not all(math.isfinite(v) and v > 0 for v in a + b):
                    continue
                d = stats.paired_difference([math.log(v) for v in a], [math.log(v) for v in b])
                out.append(dict(data=name, a=label, b=reference, stat=stat, scale="log", n_seeds=len(common),
                                **{k: d[k] for k in ("diff_mean", "ci_low", "ci_high", "verdict")}))
    return out


def network_folder(runs: Path, data: str, method: str, tuned: dict, seed: int) -> Path:
    """The folder where compare.py trained `method` on `data` with `seed` (PFGM++ at its tuned D/N)."""
    training = tuned["pfgmpp"]["ode"] if method == "pfgmpp" else None
    return runs / f"{data}-{training_key(method, training)}-s{seed}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", default=list(MAIN_DATA), choices=MAIN_DATA + HELD_OUT)
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--summary", default=str(RESULTS / "summary.json"), help="compare.py's summary (tuned settings)")
    parser.add_argument("--compare-runs", default=str(ROOT / "runs" / "compare"), help="compare.py's trained networks")
    parser.add_argument("--out", default=str(RESULTS / "straightness.json"))
    parser.add_argument("--quick", action="store_true", help="compare.py --quick's networks, few samples and steps")
    args = parser.parse_args(argv)
    summary_path, runs = Path(args.summary), Path(args.compare_runs)
    if not summary_path.exists():
        parser.error(f"--summary: {summary_path} does not exist; run benchmarks/compare.py first")
    if not runs.is_dir():
        parser.error(f"--compare-runs: {runs} is not a folder; run benchmarks/compare.py first")
    if args.samples < 10:
        parser.error(f"--samples: expected at least 10 samples per measurement, got {args.samples}")
    for flag, values in (("--data", args.data), ("--seeds", args.seeds)):
        if len(set(values)) != len(values):
            parser.error(f"{flag}: each value once, got {' '.join(map(str, values))}")
    out = Path(args.out)
    if out.is_dir() or not out.parent.is_dir() or not os.access(out.parent, os.W_OK):
        parser.error(f"--out: expected a file to write in an existing, writable folder, got {out}")
    try:
        tuned = json.loads(summary_path.read_text())["tuned"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        parser.error(f"--summary: {summary_path} is not compare.py's summary (no 'tuned' settings: {error!r})")
    missing = [str(folder / "checkpoint.pt") for name in args.data for seed in args.seeds
               for folder in {network_folder(runs, name, method, tuned, seed) for _, method, _, _ in configurations(tuned)}
               if not (folder / "checkpoint.pt").exists()]
    if missing:           # before any work: a later set's missing network must not cost the earlier sets' hours
        parser.error(f"--compare-runs: {len(missing)} trained networks are missing, first {missing[0]}; train them "
                     f"with benchmarks/compare.py --phase main --data {' '.join(args.data)}")
    config, n, ref_steps = (QUICK_TRAIN, 100, 40) if args.quick else (TRAIN, args.samples, REF_STEPS)
    torch.set_num_threads(1)
    rows, start = [], time.perf_counter()
    for name in args.data:
        for seed in args.seeds:
            train_data = recipes.toy_data(name, seed=seed)
            scale = train_data.std(dim=0).mean().item()
            max_norm, cache = perturb.hyperparameters_for(train_data).max_norm, {}
            for label, method_name, setting, lever in configurations(tuned):
                training = tuned["pfgmpp"]["ode"] if method_name == "pfgmpp" else None
                if method_name not in cache:
                    cache[method_name] = trained_network(method_name, training, name, seed, config, runs, False,
                                                        load_only=True)[:2]
                method, net = cache[method_name]
                scorer = Scorer(name, n, max_norm, seed)      # re-seeded: every configuration meets the same test draws
                row = measure(method, lambda m, net=net: m.predictor(net), setting, n, seed, scorer, scale, ref_steps,
                              check=seed == args.seeds[0])
                rows.append(dict(data=name, seed=seed, label=label, method=method_name, lever=lever,
                                 setting=setting, **row))
                print(f"{name} s{seed} {label:>24}: straightness {row['straightness']:.3f}, local sum "
                      f"{row['local_sum']:.3f}, global {row['global_error']:.3f}, SW ref {row['sw_ref']:.2f}, "
                      f"Euler-20 {row['sw_euler20']:.2f}", flush=True)
    write_json(Path(args.out), dict(
        meta=dict(command="python benchmarks/straightness.py" + (" --quick" if args.quick else ""),
                  commit=git_commit(), device=f"CPU ({platform.machine()}), 1 thread", samples=n,
                  ref_steps=ref_steps, euler_steps=EULER_STEPS, seconds=round(time.perf_counter() - start, 1),
                  data=args.data, seeds=args.seeds, scale="the training data's standard deviation per coordinate, "
                  "averaged over coordinates", intervals="Student-t 95% over seeds (n - 1 dof)"),
        rows=summarize(rows), pairs=pairs(rows)))
    print(f"wrote {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

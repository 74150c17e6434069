"""Digits benchmark: quality and speed of one trained digits model against NFE, for Euler, Heun and RK45.

    python benchmarks/digits.py [--checkpoint checkpoints/pfgm_digits.pt] [--n 500]
    python benchmarks/digits.py --checkpoint uniform.pt --label "uniform m" --out benchmarks/results/digits.json
    python benchmarks/digits.py --rho 3 --samplers euler:10,heun:10 ...     # any method on another step grid

Any checkpoint of `python -m pfgm_lite train --data digits` is scored the same way, whatever its method (PFGM,
PFGM++ with --method pfgmpp, EDM with --method edm): the same samplers, samples, classifier and held-out digits.

Prints, per sampler: NFE, seconds per 100 images on this machine, the classifier's mean confidence, the number of
classes covered (>= 1% of samples), and the Frechet distance in the digit classifier's 128-d feature space
(FID-in-classifier-space) against the 1000 held-out real digits, next to the real-vs-real floor.
With --out, the rows are also stored in a JSON file under --label (other labels in the file are kept), with the
command, the checkpoint's method and training config: notebook 06 reads benchmarks/results/digits.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from pfgm_lite import data, digits, recipes, sampling, train  # noqa: E402
from pfgm_lite.checks import check_positive  # noqa: E402
from pfgm_lite.methods import Denoiser  # noqa: E402


def samplers_of(item: str) -> tuple[str, int]:
    """'heun:10' -> ('heun', 10); 'rk45' -> ('rk45', 1)."""
    solver, _, steps = item.strip().partition(":")
    if solver not in ("euler", "heun", "rk45") or (solver != "rk45" and not steps.isdigit()):
        raise SystemExit(f"error: --samplers takes euler:STEPS, heun:STEPS or rk45, got {item!r}")
    return solver, int(steps or 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default=str(recipes.shipped_digits_path()))
    parser.add_argument("--n", type=int, default=500, help="samples per sampler")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="also store the rows in this JSON file")
    parser.add_argument("--label", default=None, help="name of this model in --out (default: the checkpoint path)")
    parser.add_argument("--sigma-max", type=float, default=None,
                        help="EDM / PFGM++ only: start the sampler at this sigma instead of the checkpoint's")
    parser.add_argument("--rho", type=float, default=None,
                        help="the fixed-step solvers' grid t^(1/rho) instead of the method's own (PFGM: z, "
                             "whose own grid is geometric; EDM / PFGM++: sigma)")
    parser.add_argument("--samplers", default="euler:10,euler:20,euler:50,heun:5,heun:10,heun:20,rk45",
                        help="comma-separated solver:steps (rk45 without steps); default: the table of notebook 06")
    args = parser.parse_args()
    runs = [samplers_of(item) for item in args.samplers.split(",")]      # a bad list fails before any work
    for flag, value in (("--rho", args.rho), ("--sigma-max", args.sigma_max)):
        if value is not None:
            try:
                check_positive(flag, value)
            except ValueError as error:
                parser.error(str(error))
    if args.rho is not None and all(solver == "rk45" for solver, _ in runs):
        parser.error("--rho sets the fixed-step solvers' grid (euler, heun); --samplers holds only rk45, which "
                     "chooses its own steps")

    method, net, ckpt = train.load_model(args.checkpoint, device="cpu")
    if args.sigma_max is not None:               # sampler settings: the network stays the same
        if not isinstance(method, Denoiser):
            parser.error(f"--sigma-max is a sampler setting of EDM and PFGM++, the checkpoint holds "
                         f"{ckpt['method']['name']}")
        method.sigma_max = args.sigma_max
    if args.rho is not None:
        method.rho = args.rho
    if args.sigma_max is not None or args.rho is not None:
        settings = (f"sigma_max {method.sigma_max:g}, " if isinstance(method, Denoiser) else "") + f"rho {method.rho:g}"
        trained = ", ".join(f"{k} {ckpt['method'][k]:g}" for k in ("sigma_max", "rho") if k in ckpt["method"])
        print(f"sampler: {settings}" + (f" (trained with {trained})" if trained else f" ({ckpt['method']['name']}: "
                                        "its own grid is geometric in z)"))
    predict = method.predictor(net)
    classifier = digits.digit_classifier()
    train_images, _, test_images, _ = data.digit_split()
    floor = digits.digit_sample_quality(classifier, train_images[: args.n], test_images)
    print(f"model: {args.checkpoint} ({ckpt['method']['name']}, {ckpt['step']} training steps); {args.n} samples "
          f"per row; torch threads: {torch.get_num_threads()}")
    print(f"real-vs-real floor ({args.n} training digits vs 1000 held-out): FID {floor['fid']:.1f}, "
          f"confidence {floor['confidence']:.3f}, confident (> 0.9) {floor['confident']:.0%}, "
          f"coverage {floor['coverage']}/10")
    print(f"{'sampler':>10} | {'NFE':>4} | {'s / 100 img':>11} | {'confidence':>10} | {'> 0.9':>5} | {'coverage':>8} | "
          f"{'FID':>7}")
    rows = []
    for solver, steps in runs:
        g = torch.Generator().manual_seed(args.seed)
        start = time.perf_counter()
        out = sampling.sample(method, predict, args.n, solver=solver, steps=steps, generator=g)
        seconds = (time.perf_counter() - start) * 100 / args.n
        q = digits.digit_sample_quality(classifier, out.x, test_images)
        name = solver if solver == "rk45" else f"{solver} {steps}"
        print(f"{name:>10} | {out.nfe:4d} | {seconds:11.2f} | {q['confidence']:10.3f} | {q['confident']:5.0%} | "
              f"{q['coverage']:5d}/10 | {q['fid']:7.1f}")
        rows.append(dict(sampler=name, nfe=out.nfe, seconds_per_100=round(seconds, 2), **q))
    if args.out:
        path = Path(args.out)
        results = json.loads(path.read_text()) if path.exists() else {"floor": None, "models": {}}
        results["floor"] = dict(n=args.n, **floor)
        results["models"][args.label or args.checkpoint] = dict(
            command="python benchmarks/digits.py " + " ".join(sys.argv[1:]), checkpoint=args.checkpoint,
            steps=int(ckpt["step"]), method=ckpt["method"], sampler=dict(method.to_config(), rho=method.rho),
            train_config=ckpt.get("train_config"), n=args.n, seed=args.seed,
            machine_threads=torch.get_num_threads(), rows=rows)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.with_suffix(".tmp").write_text(json.dumps(results, indent=1))
        path.with_suffix(".tmp").replace(path)
        print(f"stored under {args.label or args.checkpoint!r} in {path}")


if __name__ == "__main__":
    main()

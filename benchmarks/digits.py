"""Digits benchmark: quality and speed of one trained digits PFGM against NFE, for Euler, Heun and RK45.

    python benchmarks/digits.py [--checkpoint checkpoints/pfgm_digits.pt] [--n 500]

Prints, per sampler: NFE, seconds per 100 images on this machine, the classifier's mean confidence, the number of
classes covered (>= 1% of samples), and the Frechet distance in the digit classifier's 128-d feature space
(FID-in-classifier-space) against the 1000 held-out real digits, next to the real-vs-real floor.
"""
from __future__ import annotations

import argparse
import time

import torch

from pfgm_lite import metrics, recipes, sampling, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default=str(recipes.shipped_digits_path()))
    parser.add_argument("--n", type=int, default=500, help="samples per sampler")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    method, net, ckpt = train.load_model(args.checkpoint, device="cpu")
    predict = method.predictor(net)
    classifier = metrics.digit_classifier()
    train_images, _, test_images, _ = metrics.digit_split()
    floor = metrics.digit_sample_quality(classifier, train_images[: args.n], test_images)
    print(f"model: {args.checkpoint} ({ckpt['step']} training steps); {args.n} samples per row; "
          f"torch threads: {torch.get_num_threads()}")
    print(f"real-vs-real floor ({args.n} training digits vs 1000 held-out): FID {floor['fid']:.1f}, "
          f"confidence {floor['confidence']:.3f}, confident (> 0.9) {floor['confident']:.0%}, "
          f"coverage {floor['coverage']}/10")
    print(f"{'sampler':>10} | {'NFE':>4} | {'s / 100 img':>11} | {'confidence':>10} | {'> 0.9':>5} | {'coverage':>8} | "
          f"{'FID':>7}")
    runs = [("euler", 10), ("euler", 20), ("euler", 50), ("heun", 5), ("heun", 10), ("heun", 20), ("rk45", 1)]
    for solver, steps in runs:
        g = torch.Generator().manual_seed(args.seed)
        start = time.perf_counter()
        out = sampling.sample(method, predict, args.n, solver=solver, steps=steps, generator=g)
        seconds = (time.perf_counter() - start) * 100 / args.n
        q = metrics.digit_sample_quality(classifier, out.x, test_images)
        name = solver if solver == "rk45" else f"{solver} {steps}"
        print(f"{name:>10} | {out.nfe:4d} | {seconds:11.2f} | {q['confidence']:10.3f} | {q['confident']:5.0%} | "
              f"{q['coverage']:5d}/10 | {q['fid']:7.1f}")


if __name__ == "__main__":
    main()

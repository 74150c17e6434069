"""Command line: train a PFGM on a toy dataset and sample from it, without a notebook.

    python -m pfgm_lite train --data moons --steps 2000 --out runs/moons
    python -m pfgm_lite sample --run runs/moons --n 5000 --solver rk45 --out samples.png
    python -m pfgm_lite train --data digits --out runs/digits --export checkpoints/pfgm_digits.pt
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch


def _parser() -> argparse.ArgumentParser:
    from .data import toy_names
    from .recipes import DIGITS_EMPHASIS, digits_train_config
    from .train import TrainConfig

    toy, digits = TrainConfig(), digits_train_config()
    parser = argparse.ArgumentParser(prog="python -m pfgm_lite", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    tr = sub.add_parser("train", help="train a PFGM on a 2D toy dataset; writes OUT/checkpoint.pt")
    tr.add_argument("--data", required=True, choices=toy_names() + ["digits"],
                    help="toy dataset name, or 'digits' (the 4000 offline MNIST training digits, U-Net)")
    tr.add_argument("--out", required=True, help="run folder for the checkpoint")
    tr.add_argument("--steps", type=int, default=None,
                    help=f"training steps (default {toy.steps} for toys, {digits.steps} for digits)")
    tr.add_argument("--n-data", type=int, default=100_000, help="dataset size drawn from the toy (default 100000)")
    tr.add_argument("--batch-size", type=int, default=None, help="default 256 (toys), 64 (digits)")
    tr.add_argument("--large-batch-size", type=int, default=2048)
    tr.add_argument("--lr", type=float, default=None, help=f"default {toy.lr:g} (toys), {digits.lr:g} (digits)")
    tr.add_argument("--emphasis", type=float, default=None,
                    help=f"share of training points drawn where the digit takes shape (default 0 for toys, "
                         f"{DIGITS_EMPHASIS:g} for digits; the paper's uniform m is 0)")
    tr.add_argument("--export", default=None, help="also write a slim copy (no optimizer state) to this file")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--recipe", choices=["lite", "paper"], default="lite",
                    help="'lite': our low-dimension fixes (default); 'paper': the official recipe")
    tr.add_argument("--device", default="auto", help="auto, cpu or cuda")
    tr.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")

    sa = sub.add_parser("sample", help="sample from a trained run and save a picture (and the points)")
    sa.add_argument("--run", required=True, help="run folder or checkpoint file")
    sa.add_argument("--out", required=True, help="output image (.png); the samples go to the same name .pt")
    sa.add_argument("--n", type=int, default=5000, help="number of samples")
    sa.add_argument("--solver", choices=["euler", "heun", "rk45"], default="rk45")
    sa.add_argument("--steps", type=int, default=50, help="steps for euler/heun")
    sa.add_argument("--seed", type=int, default=0)
    sa.add_argument("--device", default="auto")
    return parser


def _train(args) -> int:
    from .data import sample_toy
    from .methods import PFGM
    from .nets import MLP
    from .perturb import hyperparameters_for
    from .train import TrainConfig, save_checkpoint, train

    if args.data == "digits":
        from .metrics import digit_split
        from .recipes import digits_method, digits_network, digits_train_config

        data = digit_split()[0]
        net = digits_network()
        config = digits_train_config() if args.steps is None else digits_train_config(args.steps)
    else:
        data = sample_toy(args.data, args.n_data, torch.Generator().manual_seed(args.seed))
        net = MLP(2)
        config = TrainConfig() if args.steps is None else TrainConfig(steps=args.steps)
    hp = hyperparameters_for(data)
    shape = tuple(data.shape[1:])
    if args.recipe == "paper":
        if args.emphasis:
            raise ValueError(f"--emphasis {args.emphasis:g} belongs to the lite recipe; the paper draws m uniformly")
        method = PFGM.paper(hp, shape)
    elif args.data == "digits":
        method = digits_method(data) if args.emphasis is None else digits_method(data, emphasis=args.emphasis)
    else:
        method = PFGM(hp, shape, emphasis=args.emphasis or 0.0)
    config.batch_size = args.batch_size or config.batch_size
    config.large_batch_size, config.seed = args.large_batch_size, args.seed
    config.lr = config.lr if args.lr is None else args.lr
    config.device = args.device
    out = Path(args.out)
    resume = out / "checkpoint.pt" if args.resume else None
    result = train(method, net, data, config, out_dir=out, resume=resume)
    if args.export:
        save_checkpoint(args.export, method, result.net, result.ema, None, None, result.losses, result.step, config)
        print(f"exported a slim checkpoint to {args.export}")
    tail = result.losses[-100:]
    print(f"trained {result.step} steps in {result.seconds:.1f} s; final loss {sum(tail) / len(tail):.4f}; "
          f"checkpoint: {out / 'checkpoint.pt'}")
    return 0


def _sample(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .sampling import sample
    from .train import load_model

    method, net, _ = load_model(args.run, device=args.device)
    generator = torch.Generator().manual_seed(args.seed)
    result = sample(method, method.predictor(net), args.n, solver=args.solver, steps=args.steps,
                    generator=generator)
    x = result.x.cpu()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(x, out.with_suffix(".pt"))
    fig, ax = plt.subplots(figsize=(5, 5))
    if x.dim() == 2 and x.shape[1] == 2:
        ax.scatter(x[:, 0], x[:, 1], s=1, alpha=0.5)
        ax.set_aspect("equal")
    else:
        from .plotting import show_images

        show_images(x[:64], nrow=8, ax=ax)
    ax.set_title(f"{args.n} samples, {args.solver}, NFE = {result.nfe}")
    fig.savefig(out, dpi=120, bbox_inches="tight")
    print(f"{args.n} samples with {args.solver} (NFE = {result.nfe}) -> {out} and {out.with_suffix('.pt')}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m pfgm_lite` and the `pfgm-lite` script."""
    args = _parser().parse_args(argv)
    try:
        return _train(args) if args.command == "train" else _sample(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""Command line: train a model on a toy set, the digits or CIFAR-10, and sample from it, without a notebook.

    python -m pfgm_lite train --data moons --steps 2000 --out runs/moons
    python -m pfgm_lite train --data moons --method edm --out runs/moons_edm       # or pfgmpp [--D 8], flow_matching, ddpm
    python -m pfgm_lite sample --run runs/moons --n 5000 --solver rk45 --out samples.png
    python -m pfgm_lite train --data digits --out runs/digits --export runs/pfgm_digits_10min.pt
    python -m pfgm_lite train --data digits --method edm --out runs/digits_edm     # or --method pfgmpp [--D 512]
    python -m pfgm_lite train --data cifar10-random --steps 300 --out runs/timing  # CIFAR-10's recipe on noise
    torchrun --nnodes=1 --nproc_per_node=2 --master_addr=127.0.0.1 --master_port=29500 -m pfgm_lite train ...
Every setting is checked before any work: a bad one exits with status 2 and a message that names it.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from . import distributed
from .checkpoint import check_writable_folder, load_model, save_checkpoint
from .checks import check_int, check_positive
from .data import digit_split, sample_toy, toy_names
from .distributed import BACKENDS, PRECISIONS
from .methods import DDPM, PFGM, Denoiser, FlowMatching
from .perturb import hyperparameters_for
from .recipes import (
    DIGITS_EMPHASIS,
    DIGITS_PFGMPP_D,
    TOY_PFGMPP_D,
    cifar10_images,
    cifar10_method,
    cifar10_network,
    cifar10_random_images,
    cifar10_train_config,
    digits_edm,
    digits_method,
    digits_network,
    digits_pfgmpp,
    digits_train_config,
    toy_edm,
    toy_network,
    toy_pfgmpp,
)
from .runtime import pick_device
from .sampling import ODEResult, ancestral_sample, ddim_sample, sample
from .train import TrainConfig, train

IMAGE_SETS = ("digits", "cifar10", "cifar10-random")
METHOD_CHOICES = ("pfgm", "pfgmpp", "edm", "flow_matching", "ddpm")


def _parser() -> argparse.ArgumentParser:
    toy, digits, cifar = TrainConfig(), digits_train_config(), cifar10_train_config()
    parser = argparse.ArgumentParser(prog="python -m pfgm_lite", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    tr = sub.add_parser("train", help="train PFGM, PFGM++ or EDM (2D toys, digits or CIFAR-10); writes "
                                      "OUT/checkpoint.pt")
    tr.add_argument("--data", required=True, choices=toy_names() + list(IMAGE_SETS),
                    help="toy dataset name, or 'digits' (the 4000 offline MNIST training digits, U-Net), or "
                         "'cifar10' (torchvision's files under --data-root; the paper's recipe, for GPUs), or "
                         "'cifar10-random' (50000 random images of CIFAR-10's shape with the cifar10 recipe: its "
                         "speed and memory without the files, nothing to learn)")
    tr.add_argument("--out", required=True, help="run folder for the checkpoint")
    tr.add_argument("--steps", type=int, default=None,
                    help=f"training steps (default {toy.steps} for toys, {digits.steps} for digits, "
                         f"{cifar.steps} for cifar10)")
    tr.add_argument("--n-data", type=int, default=100_000, help="dataset size drawn from the toy (default 100000)")
    tr.add_argument("--batch-size", type=int, default=None,
                    help=f"the global mini-batch, split over the processes (default {toy.batch_size} (toys), "
                         f"{digits.batch_size} (digits), {cifar.batch_size} (cifar10))")
    tr.add_argument("--large-batch-size", type=int, default=None,
                    help=f"the large batch of PFGM's field target (default {toy.large_batch_size}; "
                         f"{cifar.large_batch_size} for cifar10; for EDM and PFGM++ on toys the batch size, as only "
                         f"PFGM's target needs one)")
    tr.add_argument("--lr", type=float, default=None,
                    help=f"default {toy.lr:g} (toys), {digits.lr:g} (digits), {cifar.lr:g} (cifar10)")
    tr.add_argument("--emphasis", type=float, default=None,
                    help=f"share of training points drawn where the digit takes shape (default 0 for toys, "
                         f"{DIGITS_EMPHASIS:g} for digits; the paper's uniform m is 0)")
    tr.add_argument("--ema-decay", type=float, default=None,
                    help=f"the EMA's decay per step (default {toy.ema_decay:g}; {cifar.ema_decay:g} for cifar10)")
    tr.add_argument("--ema-warmup", action=argparse.BooleanOptionalAction, default=True,
                    help="let the EMA's decay grow as min(decay, (1 + k) / (10 + k)) over the steps k, so the random "
                         "initial weights are forgotten at once (default: on; --no-ema-warmup for a fixed decay)")
    tr.add_argument("--export", default=None, help="also write a slim copy (no optimizer state) to this file")
    tr.add_argument("--seed", type=int, default=0,
                    help="seeds the toy data, the initial weights and the training draws (default 0)")
    tr.add_argument("--recipe", choices=["lite", "paper"], default=None,
                    help="'lite': our low-dimension fixes (default for toys and digits); 'paper': the official "
                         "recipe (default for cifar10, with the shipped M = 291, z_max = 40, upper_norm = 3000; "
                         "cifar10 with 'lite' takes M, z_max, upper_norm from the data-driven rule)")
    tr.add_argument("--method", choices=METHOD_CHOICES, default="pfgm",
                    help="'pfgm' (default), 'pfgmpp' (PFGM++ with --D extra dimensions), 'edm' (diffusion, Karras "
                         "et al. 2022) or 'flow_matching' (the linear interpolant, Lipman et al. 2023), on toys and "
                         "digits: the same network and training settings for all of them; "
                         "on toys EDM and PFGM++ take the settings benchmarks/quality_vs_nfe.py tuned (recipes.TOY_EDM)")
    tr.add_argument("--D", type=float, default=None,
                    help=f"PFGM++'s extra dimensions with --method pfgmpp (default {TOY_PFGMPP_D:g} for toys, "
                         f"{DIGITS_PFGMPP_D:g} for digits)")
    tr.add_argument("--device", default="auto", help="auto, cpu or cuda (under torchrun: each process's own GPU)")
    tr.add_argument("--resume", action="store_true",
                    help="continue from OUT/checkpoint.pt (any number of processes); --steps may grow, the other "
                         "training settings must be those of the checkpoint")
    tr.add_argument("--checkpoint-every", type=int, default=500,
                    help="also write OUT/checkpoint.pt every this many steps, so an interrupted run can --resume "
                         "(default 500; 0: only at the end)")
    tr.add_argument("--data-root", default="data", help="folder of torchvision's CIFAR-10 files (default: data)")
    tr.add_argument("--download", action="store_true",
                    help="download CIFAR-10 into --data-root when it is missing (needs the internet)")
    tr.add_argument("--backend", choices=BACKENDS, default="auto",
                    help="torch.distributed backend under torchrun: auto (nccl on GPUs, gloo on CPUs), gloo, nccl")
    tr.add_argument("--precision", choices=PRECISIONS, default="auto",
                    help="the network's precision: auto (bf16 autocast on GPUs, float32 on CPUs), bf16 or fp32; "
                         "the field target is always float32")

    sa = sub.add_parser("sample", help="sample from a trained run and save a picture (and the points)")
    sa.add_argument("--run", required=True, help="run folder or checkpoint file")
    sa.add_argument("--out", required=True, help="output image (.png); the samples go to the same name .pt")
    sa.add_argument("--n", type=int, default=5000, help="number of samples")
    sa.add_argument("--solver", choices=["euler", "heun", "rk45", "ddim", "ancestral"], default="rk45",
                    help="the ODE solvers, or DDPM's samplers (ddim, ancestral: for a ddpm, edm or pfgmpp run)")
    sa.add_argument("--steps", type=int, default=50, help="steps for euler/heun")
    sa.add_argument("--rho", type=float, default=None,
                    help="euler/heun only: step on the grid t^(1/rho) instead of the method's own (PFGM: geometric in "
                         "z; EDM, PFGM++: rho 7); notebook 08's tuning on 2D sets picked rho 3 for PFGM")
    sa.add_argument("--seed", type=int, default=0)
    sa.add_argument("--device", default="auto")
    return parser


def _check_flags(args) -> None:
    """The flags' values that need no data, checked before anything is loaded (exit 2 with a message)."""
    for name in ("steps", "batch_size", "large_batch_size", "n_data"):
        value = getattr(args, name)
        if value is not None:
            check_int("--" + name.replace("_", "-"), value)
    check_int("--checkpoint-every", args.checkpoint_every, minimum=0)
    check_int("--seed", args.seed, minimum=0)
    if args.method != "pfgm" and args.data not in toy_names() + ["digits"]:
        raise ValueError(f"--method {args.method} is for the toy sets and --data digits, got --data {args.data}")
    if args.method != "pfgm" and (args.recipe or args.emphasis is not None):
        raise ValueError(f"--method {args.method} is for --data digits and the toys, without --recipe or --emphasis "
                         f"(PFGM's options), got --recipe {args.recipe}, --emphasis {args.emphasis}")
    if args.D is not None and args.method != "pfgmpp":
        raise ValueError(f"--D {args.D:g} belongs to --method pfgmpp, got --method {args.method}")
    if (args.recipe or ("paper" if args.data.startswith("cifar10") else "lite")) == "paper" and args.emphasis:
        raise ValueError(f"--emphasis {args.emphasis:g} belongs to the lite recipe; the paper draws m uniformly")
    distributed.resolve_backend(args.backend, args.device)
    distributed.autocast_dtype(args.precision, pick_device(args.device))


def _train_config(args) -> TrainConfig:
    """The dataset's TrainConfig with the flags that were given applied (a flag set to 0 is 0, not the default)."""
    recipe = {"digits": digits_train_config, "cifar10": cifar10_train_config,
              "cifar10-random": cifar10_train_config}.get(args.data, TrainConfig)
    config = recipe() if args.steps is None else recipe(steps=args.steps)
    if args.batch_size is not None:
        config.batch_size = args.batch_size
    if args.large_batch_size is not None:
        config.large_batch_size = args.large_batch_size
    elif args.method != "pfgm" and args.data in toy_names():
        config.large_batch_size = config.batch_size     # only PFGM's target needs a large batch (as the benchmark)
    config.seed = args.seed
    config.lr = config.lr if args.lr is None else args.lr
    config.ema_decay = config.ema_decay if args.ema_decay is None else args.ema_decay
    config.ema_warmup = args.ema_warmup
    config.device = args.device
    config.checkpoint_every = args.checkpoint_every
    return config


def _model(args, parallel):
    """(data, network, method) for the run; CIFAR-10 is downloaded (if asked) by one process per machine."""
    recipe = args.recipe or ("paper" if args.data.startswith("cifar10") else "lite")
    extra = 1 if args.method == "pfgm" else 0       # PFGM's z-component; EDM and PFGM++ predict the data only
    if args.data == "cifar10":
        # one process per machine downloads (when asked); the others wait, then read the files
        data = cifar10_images(args.data_root, download=True) if args.download and parallel.local_rank == 0 else None
        distributed.barrier(parallel)
        data, build = cifar10_images(args.data_root) if data is None else data, cifar10_network
    elif args.data == "cifar10-random":
        data, build = cifar10_random_images(seed=args.seed), cifar10_network
    elif args.data == "digits":
        data, build = digit_split()[0], lambda: digits_network(extra=extra)
    else:
        data = sample_toy(args.data, args.n_data, torch.Generator().manual_seed(args.seed))
        build = None
    # initial weights from --seed, without touching the caller's generator: a run is reproducible, and one
    # process starts from the weights that K processes start from (rank 0's, copied by DistributedDataParallel)
    if build is None:
        net = toy_network(extra=extra, seed=args.seed)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(args.seed)
            net = build()
    shape = tuple(data.shape[1:])
    toy = args.data in toy_names()
    if args.data.startswith("cifar10"):
        method = cifar10_method(data, recipe=recipe, emphasis=args.emphasis or 0.0)
    elif recipe == "paper":
        method = PFGM.paper(hyperparameters_for(data), shape)
    elif args.method == "edm":
        method = toy_edm(data) if toy else digits_edm()
    elif args.method == "flow_matching":
        method = FlowMatching(shape)
    elif args.method == "ddpm":
        method = DDPM(shape)
    elif args.method == "pfgmpp":
        method = (toy_pfgmpp(data, TOY_PFGMPP_D if args.D is None else args.D) if toy else
                  digits_pfgmpp(DIGITS_PFGMPP_D if args.D is None else args.D))
    elif args.data == "digits":
        method = digits_method(data) if args.emphasis is None else digits_method(data, emphasis=args.emphasis)
    else:
        method = PFGM(hyperparameters_for(data), shape, emphasis=args.emphasis or 0.0)
    return data, net, method


def _train(args) -> int:
    _check_flags(args)
    config = _train_config(args)
    # settings that need no other process are checked before joining: a bad one fails at once on every process
    distributed.check_batch_split(config.batch_size, config.large_batch_size, distributed.launched_world_size())
    out = Path(args.out)
    if os.environ.get("RANK", "0") == "0":
        check_writable_folder(out)
        if args.export:
            check_writable_folder(Path(args.export).parent)
    resume = out / "checkpoint.pt" if args.resume else None
    if resume is not None and not resume.exists():
        raise FileNotFoundError(f"no checkpoint at {resume} to --resume from")
    with distributed.process_group(args.backend, args.device) as parallel:
        data, net, method = _model(args, parallel)
        config.validate(data.shape[0])
        result = train(method, net, data, config, out_dir=out, resume=resume, parallel=parallel,
                       precision=args.precision)
        if not parallel.is_main:
            return 0
        if args.export:
            save_checkpoint(args.export, method, result.net, result.ema, None, None, result.losses, result.step,
                            config)
            print(f"exported a slim checkpoint to {args.export}")
        tail = result.losses[-100:]
        on = f" on {parallel.world_size} processes" if parallel.world_size > 1 else ""
        print(f"trained {result.step} steps{on} in {result.seconds:.1f} s; final loss {sum(tail) / len(tail):.4f}; "
              f"checkpoint: {out / 'checkpoint.pt'}")
    return 0


def _sample(args) -> int:
    check_int("--n", args.n)
    check_int("--steps", args.steps)
    check_int("--seed", args.seed, minimum=0)
    if args.rho is not None:
        if args.solver not in ("euler", "heun"):
            raise ValueError(f"--rho sets the step grid of euler and heun, got --solver {args.solver}")
        check_positive("--rho", args.rho)
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise ValueError(f"--out must name a .png file (the samples go beside it as .pt), got {args.out!r}")
    check_writable_folder(out.parent)
    method, net, _ = load_model(args.run, device=args.device)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if args.solver in ("ddim", "ancestral") and not isinstance(method, (DDPM, Denoiser)):
        raise ValueError(f"--solver {args.solver} is DDPM's sampler, for a ddpm, edm or pfgmpp run; {args.run} holds "
                         f"a {method.name} model: use --solver euler, heun or rk45")
    generator = torch.Generator().manual_seed(args.seed)
    if args.solver in ("ddim", "ancestral"):
        sampler = ddim_sample if args.solver == "ddim" else ancestral_sample
        x, nfe = sampler(method, method.predictor(net), args.n, steps=args.steps, generator=generator,
                         device=next(net.parameters()).device)
        result = ODEResult(x=x, nfe=nfe)
    else:
        result = sample(method, method.predictor(net), args.n, solver=args.solver, steps=args.steps,
                        generator=generator, rho=args.rho)
    x = result.x.cpu()
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(x, out.with_suffix(".pt"))
    fig, ax = plt.subplots(figsize=(5, 5))
    if x.dim() == 2 and x.shape[1] == 2:
        ax.scatter(x[:, 0], x[:, 1], s=1, alpha=0.5)
        ax.set_aspect("equal")
    else:
        from .teaching.plotting import show_images

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
    except (ValueError, OSError) as exc:     # bad settings, missing or unwritable files
        where = os.environ.get("RANK") if os.environ.get("WORLD_SIZE", "1") != "1" else None
        print(f"error: {exc}" if where is None else f"error (rank {where}): {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

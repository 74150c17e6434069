"""The recipes the notebooks and the command line share: data, methods, networks and training settings.

Notebook 04 builds and explains the toy model; later notebooks call toy_model() to load the same checkpoint
(or retrain it when it is missing), so no notebook copies another's setup. The digits recipes are notebook 06's,
the CIFAR-10 ones the README's "Scaling up".
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from .data import load_torchvision, sample_toy
from .methods import EDM, EDM_IMAGE_DEFAULTS, PFGM, PFGMpp
from .nets import MLP, UNet
from .perturb import PFGMHyperparameters, hyperparameters_for
from .runtime import is_quick, pick
from .train import TrainConfig, TrainResult, train_or_load
from .weights import weights_path

#: the environment variable that moves every run folder of the recipes (the tests point it at a scratch folder)
RUNS_ENV = "PFGM_LITE_RUNS"


def toy_data(name: str = "moons", n: int = 100_000, seed: int = 0) -> torch.Tensor:
    """The training set: n points of the named toy distribution, drawn with torch.Generator().manual_seed(seed)."""
    return sample_toy(name, n, torch.Generator().manual_seed(seed))


def toy_train_config() -> TrainConfig:
    """Notebook 04's training config: 8000 steps (full; ~2.4 min on 2 idle cores), or 400 steps with a short
    warm-up (quick); the EMA warms up in either (TrainConfig.ema_warmup)."""
    return TrainConfig(steps=pick(8000, 400), batch_size=256, large_batch_size=2048, lr=1e-3,
                       warmup=pick(200, 20), ema_decay=0.999, seed=0)


def runs_root() -> Path:
    """The folder of the recipes' runs: $PFGM_LITE_RUNS when set, else runs/ (relative to the working folder, the
    notebook's)."""
    return Path(os.environ.get(RUNS_ENV, "").strip() or "runs")


def run_dir(name: str = "moons") -> Path:
    """Where the toy model's checkpoint lives: <runs_root()>/<name>-full or <name>-quick."""
    return runs_root() / f"{name}-{'quick' if is_quick() else 'full'}"


def toy_network(extra: int = 1, seed: int = 0) -> MLP:
    """The toy MLP (3 x 256) with its initial weights drawn from `seed`, leaving the caller's random state alone."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MLP(2, extra=extra)


def toy_model(name: str = "moons", progress: bool = True, overwrite: bool = False
              ) -> tuple[PFGM, TrainResult, torch.Tensor]:
    """The PFGM of notebook 04 on a toy set: (method, training result with .ema, training data).

    Loads run_dir(name)/checkpoint.pt when it matches this recipe, otherwise trains it (minutes in full mode); a
    checkpoint there of another recipe is an error unless overwrite=True (train.train_or_load).
    """
    data = toy_data(name)
    method = PFGM(hyperparameters_for(data), data_shape=(2,))
    config = toy_train_config()
    result = train_or_load(method, toy_network(seed=config.seed), data, config, out_dir=run_dir(name),
                           progress=progress, overwrite=overwrite)
    return method, result, data


#: EDM's settings for the 2D toys that benchmarks/quality_vs_nfe.py --tune chose on moons and checkerboard (seed 0,
#: Heun 10 steps; benchmarks/results/tuning.json): its "high noise" training (P_mean -0.5, P_std 1.2, sigma_data =
#: the data's std) and sampler (sigma_max 5, rho 3)
TOY_EDM = dict(p_mean=-0.5, p_std=1.2, sigma_max=5.0, rho=3.0)
#: PFGM++'s extra dimensions for the toys on the command line (benchmarks/quality_vs_nfe.py's main PFGM++)
TOY_PFGMPP_D = 8.0


def toy_edm(data: torch.Tensor) -> EDM:
    """EDM for a 2D toy with the tuned settings TOY_EDM, sigma_data = the data's std."""
    return EDM(tuple(data.shape[1:]), sigma_data=data.std().item(), **TOY_EDM)


def toy_pfgmpp(data: torch.Tensor, D: float = TOY_PFGMPP_D) -> PFGMpp:
    """PFGM++ for a 2D toy with D extra dimensions and EDM's tuned toy settings (the paper's transfer)."""
    return PFGMpp(tuple(data.shape[1:]), D=D, sigma_data=data.std().item(), **TOY_EDM)


# --------------------------------------------------------------------------------------------------
# Digits (notebook 06): the U-Net PFGM on the 4000 training digits of metrics.digit_split()
# --------------------------------------------------------------------------------------------------

DIGITS_STEPS = 3500
#: steps of the shipped digits model: the ten-minute recipe, trained longer (its cosine decay spans all of them)
DIGITS_SHIPPED_STEPS = 8000
DIGITS_EMPHASIS = 0.5


def digits_train_config(steps: int = DIGITS_STEPS) -> TrainConfig:
    """Training config of the digits models: 3500 steps (the ten-minute recipe) took 582 s on 2 idle CPU cores; the
    shipped model is the same config with steps=DIGITS_SHIPPED_STEPS.

    lr = 3e-3: at 3000 steps it reached FID 64 (Heun, 20 steps) against 93 for lr = 1e-3.
    """
    return TrainConfig(steps=steps, batch_size=64, large_batch_size=2048, lr=3e-3, warmup=100,
                       ema_decay=0.999, seed=0)


def digits_method(images: torch.Tensor, emphasis: float = DIGITS_EMPHASIS) -> PFGM:
    """PFGM for 1x28x28 digits with the hyper-parameter rule applied to the images; half of the training points
    (emphasis = 0.5) have noise 0.1 to 3 times the pixel scale, where the digit takes shape.

    At 3500 steps: 56% confident samples, FID 30 (RK45, 500 samples) against 48% and 45 with emphasis = 0.
    """
    return PFGM(hyperparameters_for(images), data_shape=tuple(images.shape[1:]), emphasis=emphasis)


#: PFGM++'s extra dimensions for digits: D / N of CIFAR-10's best setting (2048 / 3072) applied to N = 784
DIGITS_PFGMPP_D = 512.0


def digits_edm() -> EDM:
    """EDM for 1x28x28 digits in [-1, 1] with Karras et al.'s image settings unchanged (EDM_IMAGE_DEFAULTS: sigma_data
    0.5, sigma 0.002 to 80, rho 7, ln sigma ~ N(-1.2, 1.2^2)); notebook 06, section 10, tunes its sampler."""
    return EDM((1, 28, 28), **EDM_IMAGE_DEFAULTS)


def digits_pfgmpp(D: float = DIGITS_PFGMPP_D) -> PFGMpp:
    """PFGM++ for 1x28x28 digits with D extra dimensions and EDM's image settings (r = sigma sqrt(D))."""
    return PFGMpp((1, 28, 28), D=D, **EDM_IMAGE_DEFAULTS)


def digits_network(extra: int = 1) -> UNet:
    """The compact U-Net of the digits model: 28 -> 14 -> 7, channels 16/32/64, self-attention at 7x7.

    extra: scalar outputs besides the 784 pixels (PFGM: 1, the z-component; EDM and PFGM++: 0).
    """
    return UNet(image_channels=1, image_size=28, channels=(16, 32, 64), extra=extra)


def shipped_digits_path() -> Path:
    """pfgm_lite/weights/pfgm_digits.pt (package data): the digits model shipped with the package,
    digits_train_config(steps=DIGITS_SHIPPED_STEPS), the same recipe trained longer than a student's ten minutes."""
    return weights_path("pfgm_digits.pt")


def ten_minute_digits_path() -> Path:
    """pfgm_lite/weights/pfgm_digits_10min.pt (package data): the ten-minute recipe (digits_train_config(),
    DIGITS_STEPS steps), what `python -m pfgm_lite train --data digits` makes."""
    return weights_path("pfgm_digits_10min.pt")


# --------------------------------------------------------------------------------------------------
# CIFAR-10 (README "Scaling up"): the paper's configuration, for one GPU or several (torchrun)
# --------------------------------------------------------------------------------------------------

CIFAR10_SHAPE = (3, 32, 32)
CIFAR10_STEPS = 1_300_000


def cifar10_images(root: str | Path = "data", download: bool = False) -> torch.Tensor:
    """The 50,000 CIFAR-10 training images, (50000, 3, 32, 32) float32 in [-1, 1] (data.load_torchvision).

    Nothing downloads unless download=True; without the files the error says how to get them.
    """
    try:
        return load_torchvision("CIFAR10", str(root), download=download)[0]
    except FileNotFoundError:
        raise FileNotFoundError(f"CIFAR-10 is not under {str(root)!r} (torchvision's cifar-10-batches-py folder): "
                                f"download it once with download=True (command line: --download, needs the "
                                f"internet), or point --data-root at a folder that holds it") from None


def cifar10_paper_hyperparameters() -> PFGMHyperparameters:
    """The values the official CIFAR-10 configs ship (configs/poisson/cifar10_ddpmpp.py): sigma = 0.01, tau = 0.03,
    M = 291, z_max = 40, upper_norm = 3000; mean_norm = 30 is the n_bar the official hyper-parameters.py assumes
    for CIFAR-10 (perturb.hyperparameter_rule(3072, 30) gives 287 / 38.6 / 2679)."""
    return PFGMHyperparameters(N=3072, sigma=0.01, tau=0.03, M=291, z_max=40.0, upper_norm=3000.0, mean_norm=30.0)


def cifar10_hyperparameters(images: torch.Tensor) -> dict[str, PFGMHyperparameters]:
    """Side by side: {"paper": the shipped values, "rule": perturb.hyperparameters_for(images), the data-driven rule
    applied to these images (their own n_bar)}."""
    return {"paper": cifar10_paper_hyperparameters(), "rule": hyperparameters_for(images)}


def cifar10_method(images: torch.Tensor | None = None, recipe: str = "paper", emphasis: float = 0.0) -> PFGM:
    """PFGM for CIFAR-10. recipe 'paper': PFGM.paper with the shipped hyper-parameters (gamma = 5, restrict_M,
    radius clipping, v_z substituted below z_exp = 5; images not needed); 'lite': our defaults with the
    data-driven rule on `images` (and `emphasis`)."""
    if recipe == "paper":
        if emphasis:
            raise ValueError(f"emphasis {emphasis:g} belongs to the lite recipe; the paper draws m uniformly")
        return PFGM.paper(cifar10_paper_hyperparameters(), CIFAR10_SHAPE, z_exp=5.0)
    if recipe != "lite":
        raise ValueError(f"recipe must be 'paper' or 'lite', got {recipe!r}")
    if images is None:
        raise ValueError("recipe 'lite' derives M, z_max and upper_norm from the images: pass images")
    return PFGM(hyperparameters_for(images), CIFAR10_SHAPE, emphasis=emphasis)


def cifar10_train_config(steps: int = CIFAR10_STEPS) -> TrainConfig:
    """The paper's CIFAR-10 training settings: large batch 4096 / mini-batch 128, Adam lr 2e-4 after a 5000-step
    linear warm-up and constant after it, gradient clipping at 1, EMA 0.9999, 1.3M steps (official configs);
    a checkpoint every 5000 steps. Not reproduced: the official random horizontal flips."""
    return TrainConfig(steps=steps, batch_size=128, large_batch_size=4096, lr=2e-4, warmup=5000, cosine=False,
                       grad_clip=1.0, ema_decay=0.9999, seed=0, checkpoint_every=5000)


def cifar10_random_images(n: int = 50_000, seed: int = 0) -> torch.Tensor:
    """n random images of CIFAR-10's shape, (n, 3, 32, 32) float32 uniform in [-1, 1]: the CIFAR-10 recipe's cost
    (steps/s, memory) without the files, e.g. on a GPU machine with no internet. Not a data set to learn."""
    return torch.rand(n, *CIFAR10_SHAPE, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def cifar10_network() -> UNet:
    """The U-Net of nets.UNet widened for 32x32x3: 32 -> 16 -> 8, channels 64/128/256, self-attention at 8x8
    (3.5M parameters; far smaller than the paper's DDPM++: 128 base channels, 4 levels of 4 residual blocks)."""
    return UNet(image_channels=3, image_size=32, channels=(64, 128, 256), extra=1)

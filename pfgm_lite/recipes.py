"""The recipes the notebooks share: the toy dataset, training config and trained model of notebooks 04-05.

Notebook 04 builds and explains the model; later notebooks call toy_model() to load the same checkpoint
(or retrain it when it is missing), so no notebook copies another's setup.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .data import sample_toy
from .methods import PFGM
from .nets import MLP
from .perturb import hyperparameters_for
from .runtime import is_quick, pick
from .train import TrainConfig, TrainResult, train_or_load


def toy_data(name: str = "moons", n: int = 100_000, seed: int = 0) -> torch.Tensor:
    """The training set: n points of the named toy distribution, drawn with torch.Generator().manual_seed(seed)."""
    return sample_toy(name, n, torch.Generator().manual_seed(seed))


def toy_train_config() -> TrainConfig:
    """Notebook 04's training config: 8000 steps (full; ~2.4 min on 2 idle cores), or 400 steps with a short
    warm-up and a fast EMA (quick)."""
    return TrainConfig(steps=pick(8000, 400), batch_size=256, large_batch_size=2048, lr=1e-3,
                       warmup=pick(200, 20), ema_decay=pick(0.999, 0.98), seed=0)


def run_dir(name: str = "moons") -> Path:
    """Where the toy model's checkpoint lives (relative to the notebook): runs/<name>-full or runs/<name>-quick."""
    return Path("runs") / f"{name}-{'quick' if is_quick() else 'full'}"


def toy_model(name: str = "moons", progress: bool = True) -> tuple[PFGM, TrainResult, torch.Tensor]:
    """The PFGM of notebook 04 on a toy set: (method, training result with .ema, training data).

    Loads run_dir(name)/checkpoint.pt when it matches this recipe, otherwise trains it (minutes in full mode).
    """
    data = toy_data(name)
    method = PFGM(hyperparameters_for(data), data_shape=(2,))
    config = toy_train_config()
    torch.manual_seed(config.seed)
    result = train_or_load(method, MLP(2), data, config, out_dir=run_dir(name), progress=progress)
    return method, result, data


# --------------------------------------------------------------------------------------------------
# Digits (notebook 06): the U-Net PFGM on the 4000 training digits of metrics.digit_split()
# --------------------------------------------------------------------------------------------------

DIGITS_STEPS = 3500
DIGITS_EMPHASIS = 0.5


def digits_train_config(steps: int = DIGITS_STEPS) -> TrainConfig:
    """Training config of the shipped digits model: 3500 steps took 582 s on 2 idle CPU cores.

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


def digits_network():
    """The compact U-Net of the digits model: 28 -> 14 -> 7, channels 16/32/64, self-attention at 7x7."""
    from .nets import UNet

    return UNet(image_channels=1, image_size=28, channels=(16, 32, 64), extra=1)


def shipped_digits_path() -> Path:
    """<repo>/checkpoints/pfgm_digits.pt: the digits model shipped with the repository."""
    return Path(__file__).resolve().parent.parent / "checkpoints" / "pfgm_digits.pt"

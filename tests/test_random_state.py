"""The package leaves the reader's random state alone: every public call that draws numbers, given its generator or
seed, leaves torch's, NumPy's and Python's global random state as it found it (a notebook's seed_everything at the
top then decides every later draw of the reader's own code)."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from pfgm_lite import data, digits, flows, methods, metrics, prior, recipes, sampling, train
from pfgm_lite.cli import main
from pfgm_lite.perturb import hyperparameters_for
from pfgm_lite.teaching import exercises


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def loss_by_hand(method, net, large, batch_size, generator):
    """Exercise 04.1's right answer."""
    x, z = method.perturb(large[:batch_size], generator)
    v = method.target(x, z, methods.Batch(large))
    return 0.5 * ((net(*method.network_input(x, z)) - v) ** 2).sum(dim=1).mean()


def global_state():
    return torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()


def same(a, b) -> bool:
    return torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


TOY = data.sample_toy("moons", 600, gen(0))
PFGM = methods.PFGM(hyperparameters_for(TOY), (2,))


CALLS = {
    "exercises.check 04.1": lambda tmp: exercises.check("04.1", loss_by_hand),
    "recipes.toy_network": lambda tmp: recipes.toy_network(seed=3),
    "digits.train_digit_classifier": lambda tmp: digits.train_digit_classifier(
        data.digit_split()[0][:64], data.digit_split()[1][:64], epochs=1),
    "train.train": lambda tmp: train.train(PFGM, recipes.toy_network(), TOY, train.TrainConfig(
        steps=3, batch_size=16, large_batch_size=64, device="cpu"), progress=False),
    "sampling.sample": lambda tmp: sampling.sample(PFGM, PFGM.exact_predictor(TOY[:100]), 20, solver="heun", steps=3,
                                                   generator=gen(1)),
    "flows.flux_start_points": lambda tmp: flows.flux_start_points(TOY, 50, 0.1, generator=gen(2)),
    "prior.sample_prior": lambda tmp: prior.sample_prior(50, 2, 1.0, clip="none", generator=gen(3)),
    "metrics.sliced_wasserstein": lambda tmp: metrics.sliced_wasserstein(TOY[:100], TOY[100:200], generator=gen(4)),
    "command line train": lambda tmp: main(["train", "--data", "moons", "--n-data", "300", "--steps", "2",
                                            "--batch-size", "8", "--large-batch-size", "16", "--device", "cpu",
                                            "--out", str(tmp / "run")]),
}


@pytest.mark.parametrize("name", list(CALLS))
def test_a_public_call_leaves_the_global_random_state_alone(name, tmp_path):
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    before = global_state()
    CALLS[name](tmp_path)
    assert same(global_state(), before), f"{name} changed the global random state"


def test_the_comparison_catches_a_reseeding():
    torch.manual_seed(123)
    before = global_state()
    torch.manual_seed(0)                          # what exercises.check("04.1", ...) did to the reader's state
    assert not same(global_state(), before)

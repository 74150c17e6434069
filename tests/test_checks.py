"""Facts about pfgm_lite/checks.py: numbers of any of the usual kinds are accepted, the wrong kinds are refused with
a message that names the argument."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pfgm_lite.checks import batch_view, check_int, check_positive
from pfgm_lite.perturb import hyperparameter_rule


@pytest.mark.parametrize("value", [3, np.int64(3), np.int32(3), np.uint8(3), torch.tensor(3)])
def test_integers_of_every_kind_are_ints(value):
    assert check_int("n", value) == 3 and type(check_int("n", value)) is int


@pytest.mark.parametrize("value, kind", [(3.0, "float"), (True, "bool"), (np.float64(3), "float64"), ("3", "str"),
                                         (torch.tensor(3.0), "Tensor"), (torch.tensor([3]), "Tensor")])
def test_what_is_not_an_integer_is_refused(value, kind):
    with pytest.raises(TypeError, match=f"n must be an int, got {kind}"):
        check_int("n", value)


@pytest.mark.parametrize("value", [0.5, np.float32(0.5), np.float64(0.5), torch.tensor(0.5), 1, np.int64(1)])
def test_numbers_of_every_kind_are_positive_numbers(value):
    assert check_positive("x", value) == float(value)


def test_positive_refuses_what_is_not_a_positive_number():
    with pytest.raises(TypeError, match="x must be a number, got bool"):
        check_positive("x", True)
    with pytest.raises(ValueError, match="x must be finite and > 0, got 0"):
        check_positive("x", np.int64(0))
    with pytest.raises(ValueError, match="x must be finite and >= 0"):
        check_positive("x", float("nan"), allow_zero=True)


def test_a_numpy_dimension_goes_through_the_rule():
    # the read that found it: hyperparameter_rule(np.prod(shape), ...) said "N must be an int, got int64"
    assert hyperparameter_rule(np.prod((1, 28, 28)), 9.0) == hyperparameter_rule(784, 9.0)


def test_batch_view_broadcasts_a_scalar_per_sample():
    v, like = torch.arange(3.0), torch.ones(3, 1, 2, 2)
    assert batch_view(v, like).shape == (3, 1, 1, 1) and torch.equal((batch_view(v, like) * like)[:, 0, 1, 1], v)

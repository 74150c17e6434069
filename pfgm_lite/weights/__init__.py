"""The weights that ship inside the package (package data, so `pip install` brings them):

    digit_classifier.pt    digits.DigitClassifier, the classifier behind the digits metrics (97% held-out accuracy)
    pfgm_digits.pt         the digits PFGM of notebook 06 (recipes.digits_train_config, 8000 steps)
    pfgm_digits_10min.pt   the ten-minute digits recipe (3500 steps)
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

SHIPPED = ("digit_classifier.pt", "pfgm_digits.pt", "pfgm_digits_10min.pt")


def weights_path(name: str) -> Path:
    """The file of a shipped weight, wherever pfgm_lite is installed (read through importlib.resources)."""
    if name not in SHIPPED:
        raise ValueError(f"no shipped weights named {name!r}; shipped: {', '.join(SHIPPED)}")
    return Path(str(resources.files(__name__).joinpath(name)))

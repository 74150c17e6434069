"""Notebook 01's checks of Gauss's law and superposition, run from the notebook's own cells.

Each check passes on the true field and fails on a wrong answer: the flux through a sphere through a charge is the
count inside plus one half (not the count), one run's standard error is honest off the charges but not through one,
and the field of several charges is free of divergence away from them (a field with the wrong power is not).
"""
from __future__ import annotations

import json
import math
import types
from pathlib import Path

import pytest
import torch

from pfgm_lite import physics

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "01_poisson_equation.ipynb"
FLUX_THROUGH_SPHERE = "81e501cc"   # def flux_through_sphere(...)
REPEATED_FLUX = "1441026d"         # def repeated_flux(...)
ON_SURFACE_CHECK = "2c7e5a1d"      # spheres through, inside and outside each charge
ONE_RUN_ERROR_BAR = "7d3b9e40"     # 400 runs: is one run's standard error honest?
DIVERGENCE = "9e1d4b27"            # def divergence(...)
DIVERGENCE_CHECK = "11eb1aca"      # div E = 0 away from 6 charges


def cell(cell_id: str) -> str:
    cells = json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
    (source,) = ["".join(c["source"]) for c in cells if c.get("id") == cell_id]
    return source


def run(source: str, namespace: dict) -> None:
    exec(compile(source, NOTEBOOK.name, "exec"), namespace)


@pytest.fixture(autouse=True)
def like_the_notebook():
    """The notebook's first cell: float64 throughout, one thread for its small tensors."""
    dtype, threads = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    yield
    torch.set_default_dtype(dtype)
    torch.set_num_threads(threads)


def wrong_power(p):
    """A 'physics' whose poisson_field is sum (x - y) / |x - y|^p: the Coulomb law only for p = D."""
    def poisson_field(points, charges):
        return sum((points - y) / (points - y).norm(dim=1, keepdim=True) ** p for y in charges) / 4 / math.pi
    return types.SimpleNamespace(poisson_field=poisson_field, sphere_area=physics.sphere_area)


def staircase(physics_module=physics):
    """The namespace of the notebook's staircase: four charges at distances 0.3, 0.9, 1.6, 2.6 from the centre."""
    ns = {"torch": torch, "math": math, "physics": physics_module}
    u = torch.randn(4, 3, generator=torch.Generator().manual_seed(4))
    ns["distances"] = torch.tensor([0.3, 0.9, 1.6, 2.6])
    ns["charges"] = ns["distances"][:, None] * u / u.norm(dim=1, keepdim=True)
    ns["centre"] = torch.zeros(3)
    run(cell(FLUX_THROUGH_SPHERE), ns)
    run(cell(REPEATED_FLUX), ns)
    return ns


def test_on_surface_check_passes_with_the_half():
    run(cell(ON_SURFACE_CHECK), staircase())


def test_on_surface_check_fails_without_the_half():
    source = cell(ON_SURFACE_CHECK)
    assert "(r, i + 0.5)" in source
    with pytest.raises(AssertionError):
        run(source.replace("(r, i + 0.5)", "(r, i)"), staircase())


@pytest.mark.parametrize("p", [2, 4])
def test_on_surface_check_fails_for_a_field_of_the_wrong_power(p):
    with pytest.raises(AssertionError):
        run(cell(ON_SURFACE_CHECK), staircase(wrong_power(p)))


def test_one_run_error_bar_check_holds_around_the_charge_and_fails_through_it():
    source = cell(ONE_RUN_ERROR_BAR)
    run(source, staircase())                                       # around the charge: honest, passes
    assert 'if label == "around it":' in source
    with pytest.raises(AssertionError):                            # the same test through the charge fails
        run(source.replace('if label == "around it":', 'if label == "through it":'), staircase())


def divergence_namespace(physics_module):
    ns = {"torch": torch, "physics": physics_module, "generator": torch.Generator().manual_seed(0)}
    run(cell(DIVERGENCE), ns)
    return ns


def test_divergence_check_passes_for_the_poisson_field():
    run(cell(DIVERGENCE_CHECK), divergence_namespace(physics))


@pytest.mark.parametrize("p", [2, 4])     # in R^3: the 1/r law of the plane, the 1/r^3 law of R^4
def test_divergence_check_fails_for_a_field_of_the_wrong_power(p):
    with pytest.raises(AssertionError):
        run(cell(DIVERGENCE_CHECK), divergence_namespace(wrong_power(p)))


@pytest.mark.parametrize("d", [2, 3, 5])
def test_divergence_helper_tells_the_right_power_from_a_wrong_one(d):
    """The notebook's finite differences in other dimensions: (D - p) / r^p vanishes only for p = D."""
    ns = divergence_namespace(physics)
    gen = torch.Generator().manual_seed(d)
    charges, points = torch.randn(6, d, generator=gen), 2 * torch.randn(200, d, generator=gen)
    points = points[torch.cdist(points, charges).min(dim=1).values > 0.3]
    for p, small in ((d, True), (d - 1, False), (d + 1, False)):
        div, largest = ns["divergence"](lambda x: wrong_power(p).poisson_field(x, charges), points)
        assert ((div.abs() / largest).max() < 1e-6) == small, (d, p)

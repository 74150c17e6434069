"""ipywidgets explorers for the notebooks (they need a live kernel; the figures are drawn with pfgm_lite.plotting)."""
from __future__ import annotations

import math

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch
from scipy import stats

from .plotting import plot_field_lines_2d, plot_polar_angle_histogram

#: charge positions on the line (N = 1) offered by field_line_explorer
PRESETS = {
    "one charge": "0",
    "two equal charges": "-1, 1",
    "a lopsided pair": "-1.5, -1.2, -0.9, 1.2",
    "three in a row": "-1.5, 0, 1.5",
    "five, clustered": "-2, -1.8, -1.6, 0.5, 2",
}
MAX_CHARGES = 5


def parse_charges(text: str) -> torch.Tensor:
    """Charge positions from comma-separated numbers: "-1, 0.5" -> tensor (M, 1), 1 <= M <= 5 (float64)."""
    if not isinstance(text, str):
        raise TypeError(f"charges must be a string of comma-separated numbers, got {type(text).__name__}")
    parts = [p.strip() for p in text.replace(";", ",").split(",") if p.strip()]
    if not parts:
        raise ValueError("charges: give at least one position, e.g. '-1, 1'")
    if len(parts) > MAX_CHARGES:
        raise ValueError(f"charges: at most {MAX_CHARGES} positions, got {len(parts)}")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"charges: could not read {text!r} as comma-separated numbers") from None
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"charges must be finite, got {text!r}")
    return torch.tensor(values, dtype=torch.float64)[:, None]


def draw_field_lines_and_angles(charges: torch.Tensor, n_lines: int, radius: float, z0: float = 1e-2):
    """The explorer's figure: field lines up to a semicircle (left), crossing angles against the uniform law (right).

    charges: (M, 1); returns (figure, D) with D = sup |F_B(theta) - (theta + pi/2) / pi|, the Kolmogorov
    distance between the signed crossing angles and the uniform law (the lines are launched evenly,
    not at random, so D measures the deviation itself, ~ 1 / (2B) when the crossings are uniform)
    """
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [1.7, 1]})
    crossings = plot_field_lines_2d(ax0, charges, n_lines=n_lines, radius=radius, z0=z0)
    ax0.set_title(f"{len(charges)} charge(s), {len(crossings.polar_angle)} lines")
    signed = torch.atan2(crossings.points[:, 0], crossings.points[:, 1]).numpy()
    plot_polar_angle_histogram(ax1, signed, 1, bins=16, signed=True)
    distance = stats.kstest((signed + math.pi / 2) / math.pi, "uniform").statistic
    ax1.set_title(f"crossing angles at r = {radius:.3g}; largest CDF gap {distance:.3f}")
    ax1.legend(loc="lower center", fontsize=8)
    fig.tight_layout()
    return fig, distance


def field_line_explorer(charges: str = PRESETS["a lopsided pair"], n_lines: int = 60, radius: float = 4.0,
                        z0: float = 1e-2) -> widgets.VBox:
    """Explore the field lines of up to 5 charges on a line (N = 1) in the (x, z) half-plane.

    Controls: a preset, the charge positions (comma-separated, press Enter), the number of lines and
    the radius of the semicircle. The lines are launched with equal flux; the right panel compares
    their crossing angles with the uniform law, which holds as the radius grows.
    returns: a VBox to display (the figure is redrawn inside an Output widget)
    """
    preset = widgets.Dropdown(options=["(custom)"] + list(PRESETS), value="(custom)", description="preset")
    text = widgets.Text(value=charges, description="charges", continuous_update=False,
                        layout=widgets.Layout(width="320px"))
    lines = widgets.IntSlider(value=n_lines, min=8, max=200, step=4, description="lines", continuous_update=False)
    radius_slider = widgets.FloatLogSlider(value=radius, base=10, min=0.0, max=2.0, step=0.05,
                                           description="radius", continuous_update=False)

    def use_preset(change):
        if change["new"] in PRESETS:
            text.value = PRESETS[change["new"]]

    preset.observe(use_preset, names="value")

    def draw(text, n_lines, radius):
        try:
            positions = parse_charges(text)
        except ValueError as error:
            print(error)
            return
        if radius <= positions.abs().max().item() + 0.2:
            print(f"radius {radius:.3g} is too small: make it larger than max |charge| + 0.2 = "
                  f"{positions.abs().max().item() + 0.2:.3g}")
            return
        try:
            draw_field_lines_and_angles(positions, n_lines, radius, z0)
        except ValueError as error:
            plt.close("all")
            print(error)
            return
        plt.show()

    out = widgets.interactive_output(draw, {"text": text, "n_lines": lines, "radius": radius_slider})
    return widgets.VBox([widgets.HBox([preset, text]), widgets.HBox([lines, radius_slider]), out])

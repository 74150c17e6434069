"""Facts about pfgm_lite/widgets.py: parsing, the explorer's figure and its controls."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import ipywidgets  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from pfgm_lite.teaching import widgets  # noqa: E402


def test_parse_charges():
    torch.testing.assert_close(widgets.parse_charges(" -1, 0.5;2 "), torch.tensor([[-1.0], [0.5], [2.0]], dtype=torch.float64))
    with pytest.raises(ValueError, match="give at least one position"):
        widgets.parse_charges(" , ")
    with pytest.raises(ValueError, match="at most 5 positions, got 6"):
        widgets.parse_charges("1, 2, 3, 4, 5, 6")
    with pytest.raises(ValueError, match="could not read 'a, 1' as comma-separated numbers"):
        widgets.parse_charges("a, 1")
    with pytest.raises(ValueError, match="charges must be finite"):
        widgets.parse_charges("nan")
    with pytest.raises(TypeError, match="charges must be a string"):
        widgets.parse_charges([1.0])


def test_presets_parse():
    for text in widgets.PRESETS.values():
        assert 1 <= len(widgets.parse_charges(text)) <= widgets.MAX_CHARGES


def test_crossing_angles_approach_the_uniform_law_far_away():
    charges = widgets.parse_charges(widgets.PRESETS["a lopsided pair"])
    fig_near, near = widgets.draw_field_lines_and_angles(charges, 60, 1.8)
    fig_far, far = widgets.draw_field_lines_and_angles(charges, 60, 40.0)
    plt.close(fig_near)
    plt.close(fig_far)
    assert far < 0.03 < 0.1 < near


def test_explorer_controls():
    box = widgets.field_line_explorer()
    assert isinstance(box, ipywidgets.VBox)
    (preset, text), (lines, radius), out = box.children[0].children, box.children[1].children, box.children[2]
    assert isinstance(out, ipywidgets.Output)
    assert lines.value == 60 and radius.value == 4.0
    preset.value = "three in a row"
    assert text.value == widgets.PRESETS["three in a row"]
    plt.close("all")

"""The notebooks' widgets work in a real JupyterLab, driven in headless Chromium (`make test-browser`).

For every notebook that displays ipywidgets (found by reading its code cells, see `widget_cells`):
open it in JupyterLab (served in quick mode), clear the outputs, run all cells from the Run menu and
wait until every code cell has run; then, for each widget, drag its first slider and pick another
entry of its dropdown (a preset), and check that the widget's output (the figure) changed each time.
Anywhere on the page, "Error displaying widget" must not show, nor JupyterLab's news pop-up (the
project's lab settings turn it off). In the same notebooks, every 3D view (teaching.view3d) is drawn by plotly's
renderer with WebGL and turns when dragged (the camera moves and the picture changes), and every animation
(teaching.animation) shows as a GIF image of more than 10 frames. Screenshots, before and after each action: build/screens/.
"""
from __future__ import annotations

import ast
import base64
import contextlib
import hashlib
import io
import json
import re
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from conftest import ROOT, http_get, wait_until

NOTEBOOKS = ROOT / "notebooks"
WIDGET_MODULES = ("ipywidgets", "pfgm_lite.teaching.widgets", "pfgm_lite.widgets")   # the last: its old name
NEWS_TEXT = "official Jupyter news"
WIDGET_ERROR = "Error displaying widget"
# the top-level view of a widget shown by a cell (not the output areas nested inside widgets)
WIDGET_ROOT = ".jp-Cell-outputArea > .jp-OutputArea-child > .jp-OutputArea-output > .jupyter-widgets"


# ---------------------------------------------------------------------------------------------
# Which notebooks show widgets: read the code
# ---------------------------------------------------------------------------------------------

def _parse(source: str) -> ast.Module | None:
    """The cell as Python, IPython magics and shell lines blanked; None when it still does not parse."""
    lines = ["" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()]
    try:
        return ast.parse("\n".join(lines))
    except SyntaxError:
        return None


def _root_name(node: ast.AST) -> str | None:
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


DISPLAYING = {"interact", "interact_manual"}  # ipywidgets functions that display what they build


def widget_cells(notebook: dict) -> list[int]:
    """Indices (in notebook["cells"]) of the code cells that display a widget.

    Read from the code: under the names the notebook imported ipywidgets or pfgm_lite.teaching.widgets as
    (`import ipywidgets as widgets`, `from pfgm_lite.teaching.widgets import field_line_explorer`), a cell
    displays a widget when its last statement is a call into them (`field_line_explorer()`,
    `widgets.interactive(f, ...)`), when it calls `display()` on such a call or on a name it assigned
    one to, or when it uses `interact` (as a call or a decorator). Importing (to print
    `ipywidgets.__version__`) or calling a plain helper (`widgets.draw_field_lines_and_angles(...)`;
    `plt.show()` last) does not count. (Saved widget views are no guide: tqdm.auto's progress bars
    are widgets too.)
    """
    modules: set[str] = set()   # local names bound to a widget module
    functions: set[str] = set()  # local names bound to something imported from one
    found = []

    def widget_call(node) -> bool:
        if not isinstance(node, ast.Call):
            return False
        func = node.func
        return ((isinstance(func, ast.Name) and func.id in functions)
                or (isinstance(func, ast.Attribute) and _root_name(func) in modules))

    def interact_name(func) -> bool:
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
        return name in DISPLAYING and (
            (isinstance(func, ast.Name) and func.id in functions)
            or (isinstance(func, ast.Attribute) and _root_name(func) in modules))

    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        tree = _parse(source)
        if tree is None:  # not Python even without magics: fall back on the text
            if re.search(r"\b(ipy)?widgets\.\w+\(|\binteract(ive)?\(", source):
                found.append(index)
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in WIDGET_MODULES:
                        modules.add(alias.asname or alias.name.split(".")[0])
            elif isinstance(node, ast.ImportFrom) and node.module:
                for alias in node.names:
                    if f"{node.module}.{alias.name}" in WIDGET_MODULES:
                        modules.add(alias.asname or alias.name)
                    elif node.module in WIDGET_MODULES:
                        functions.add(alias.asname or alias.name)
        assigned = {target.id for node in ast.walk(tree) if isinstance(node, ast.Assign) and widget_call(node.value)
                    for target in node.targets if isinstance(target, ast.Name)}
        shows = bool(tree.body and isinstance(tree.body[-1], ast.Expr) and widget_call(tree.body[-1].value))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                if interact_name(node.func):
                    shows = True
                elif isinstance(node.func, ast.Name) and node.func.id == "display":
                    shows |= any(widget_call(a) or (isinstance(a, ast.Name) and a.id in assigned) for a in node.args)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                shows |= any(interact_name(d.func if isinstance(d, ast.Call) else d) for d in node.decorator_list)
        if shows:
            found.append(index)
    return found


def widget_notebooks() -> list[Path]:
    return [path for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
            if widget_cells(json.loads(path.read_text()))]


def test_widget_notebooks_are_found():
    names = [path.name for path in widget_notebooks()]
    assert "02_charges_to_hemisphere.ipynb" in names, names   # field_line_explorer()
    assert "05_sampling.ipynb" in names, names                 # widgets.interactive(show_frame, ...)
    assert "00_welcome.ipynb" not in names, names              # imports ipywidgets only for its version


def test_the_3d_views_and_animations_sit_in_notebooks_that_the_browser_test_runs():
    """_check_3d_views runs inside the widget notebooks' test: every 3D view and animation of 02 and 05 is in one."""
    run = {p.name for p in widget_notebooks()}
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        if cells_calling(cells, "view3d.show_scene(") or cells_calling(cells, "animation.show_gif("):
            assert path.name in run or path.name == "06_digits.ipynb", path.name   # 06's GIF: checked in the book
    assert cells_calling(json.loads((NOTEBOOKS / "02_charges_to_hemisphere.ipynb").read_text())["cells"],
                         "view3d.show_scene(")


def test_widget_cells_reads_imports_and_calls():
    def nb(*sources):
        return {"cells": [{"cell_type": "code", "source": s, "outputs": []} for s in sources]}

    assert widget_cells(nb("import ipywidgets as w", "w.IntSlider()")) == [1]
    assert widget_cells(nb("from pfgm_lite import widgets", "x = 1", "widgets.field_line_explorer()")) == [2]
    assert widget_cells(nb("from pfgm_lite.widgets import field_line_explorer as fle", "fle(n_lines=8)")) == [1]
    assert widget_cells(nb("from pfgm_lite.teaching import widgets", "widgets.field_line_explorer()")) == [1]
    assert widget_cells(nb("from pfgm_lite.teaching.widgets import field_line_explorer", "field_line_explorer()")) == [1]
    assert widget_cells(nb("from ipywidgets import interact", "@interact(k=(1, 5))\ndef f(k):\n    pass")) == [1]
    assert widget_cells(nb("import ipywidgets as w", "w.interact(print, x=3)\ny = 1")) == [1]
    assert widget_cells(nb("import ipywidgets as w", "s = w.IntSlider()\ndisplay(s)\nprint(1)")) == [1]
    assert widget_cells(nb("%matplotlib inline\nimport ipywidgets\nipywidgets.Dropdown(options=[1])")) == [0]
    # a helper of pfgm_lite.teaching.widgets that draws a static figure, an import for the version: no widget
    assert widget_cells(nb("from pfgm_lite import widgets",
                           "fig, d = widgets.draw_field_lines_and_angles(c, 60, 4.0)\nplt.show()")) == []
    assert widget_cells(nb("import ipywidgets", "print(ipywidgets.__version__)")) == []
    assert widget_cells(nb("s = w.IntSlider()\ns")) == []  # w is not known as ipywidgets here
    assert widget_cells(nb("from tqdm.auto import tqdm", "for i in tqdm(range(3)):\n    pass")) == []


# ---------------------------------------------------------------------------------------------
# In the browser
# ---------------------------------------------------------------------------------------------

def _fail_on_dialog(page, what: str) -> None:
    """A modal dialog (kernel choice, error) would block the run: fail with its text at once."""
    dialog = page.locator(".jp-Dialog")
    if dialog.count() and dialog.first.is_visible():
        raise AssertionError(f"unexpected dialog while {what}: {dialog.first.inner_text()!r}")


def _news_toasts(page) -> list[str]:
    return [t for t in page.locator(".Toastify__toast").all_inner_texts() if NEWS_TEXT in t]


def _menu(page, menu: str, item: str) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(rf"^{re.escape(menu)}$")).first.click()
    entry = page.locator(".lm-Menu-itemLabel", has_text=re.compile(rf"^{re.escape(item)}$")).first
    entry.wait_for(state="visible")
    entry.click()


def _prompts(page) -> list[str]:
    return [p.strip() for p in page.locator(".jp-Notebook .jp-CodeCell .jp-InputArea-prompt").all_inner_texts()]


def _kernel_status(page) -> str | None:
    indicator = page.locator(".jp-Notebook-ExecutionIndicator")
    return indicator.first.get_attribute("data-status") if indicator.count() else None


def _tracebacks(page) -> list[str]:
    """The text of every output that shows a raised exception (warnings on stderr are left out)."""
    texts = page.locator(".jp-Notebook .jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
                         ).all_inner_texts()
    return [t for t in texts if "Traceback" in t or re.search(r"^\w+(Error|Exception)\b", t, re.M)]


def _signature(root) -> str:
    """A hash of what the widget's output areas show (the figure's PNG, printed text)."""
    html = root.evaluate(
        "el => Array.from(el.querySelectorAll('.widget-output')).map(o => o.innerHTML).join('\\n')")
    return hashlib.sha256(html.encode()).hexdigest()[:16]


def _has_figure(root) -> bool:
    return root.locator(".widget-output img").count() > 0


def _check_widget_text(page, root, where: str) -> None:
    text = root.inner_text()
    assert "Traceback" not in text, f"{where}: the widget's output shows an error:\n{text}"
    body = page.evaluate("document.body.textContent")
    assert WIDGET_ERROR not in body, f"{where}: {WIDGET_ERROR!r} shows on the page"


def _wait_redrawn(page, root, before: str, figure: bool, timeout: float, what: str) -> str:
    """Poll until the widget's output differs from `before`, stays the same twice (the kernel idle)
    and, when it showed a figure before (`figure`), shows one again."""
    state = {"last": None}

    def settled():
        _fail_on_dialog(page, what)
        if _kernel_status(page) not in ("idle", None):
            state["last"] = None
            return False
        sig = _signature(root)
        stable = sig == state["last"]
        state["last"] = sig
        return sig != before and stable and (_has_figure(root) or not figure) and sig

    sig = wait_until(settled, timeout, interval=0.5)
    assert sig, (f"{what}: the widget's output did not change within {timeout:g} s "
                 f"(PFGM_LITE_BROWSER_TIMEOUT); it shows:\n{root.inner_text()[:2000]}")
    return sig


def _drag_slider(page, root, index: int) -> tuple[str, str]:
    """Drag the handle of slider `index` a third of its track to the right (left when near the end)."""
    slider = root.locator(".widget-slider").nth(index)
    handle = slider.locator(".noUi-handle").first
    track = slider.locator(".noUi-base").first
    handle.scroll_into_view_if_needed()
    before = handle.get_attribute("aria-valuenow")
    hb, tb = handle.bounding_box(), track.bounding_box()
    x, y = hb["x"] + hb["width"] / 2, hb["y"] + hb["height"] / 2
    step = tb["width"] / 3
    target = x + step if x + step <= tb["x"] + tb["width"] else x - step
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(target, y, steps=8)
    page.mouse.up()
    return before, handle.get_attribute("aria-valuenow")


def cells_calling(cells: list[dict], call: str) -> list[int]:
    """Indices (among all cells) of the code cells whose source calls `call`, e.g. "view3d.show_scene(" ."""
    return [i for i, c in enumerate(cells) if c["cell_type"] == "code" and call in "".join(c["source"])]


def _camera(plot) -> str:
    """The eye of the camera that draws the scene now (plotly writes layout.scene.camera only on relayout)."""
    return plot.evaluate("el => JSON.stringify(el._fullLayout.scene._scene.getCamera().eye)")


def _rotate_3d(page, plot, name: str, screens: Path) -> str:
    """Drag across a plotly 3D scene; the camera must move and the picture change. Returns a description."""
    plot.scroll_into_view_if_needed()
    page.wait_for_timeout(500)                                          # let the first WebGL frame settle
    eye, before = _camera(plot), plot.screenshot(path=str(screens / f"{name}-before.png"))
    box = plot.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + box["width"] / 4, y + 20, steps=10)
    page.mouse.up()
    page.wait_for_timeout(500)
    after = plot.screenshot(path=str(screens / f"{name}-after.png"))
    assert _camera(plot) != eye, f"{name}: dragging did not turn the camera ({eye})"
    assert after != before, f"{name}: the camera moved but the picture did not change"
    return f"camera eye {eye} -> {_camera(plot)}"


def _check_3d_views(page, cells: list[dict], stem: str, screens: Path, timeout: float) -> None:
    all_cells = page.locator(".jp-Notebook .jp-Cell")
    views = cells_calling(cells, "view3d.show_scene(")
    for index in views:
        cell, name = all_cells.nth(index), f"{stem}-cell{index}-3d"
        # plotly's JupyterLab renderer shows the bundle's still (img.plot-img) first and builds the WebGL figure
        # when the pointer enters the still: the test moves the pointer over it as a reader would
        still = cell.locator(".jp-RenderedPlotly img.plot-img")
        assert wait_until(lambda: still.count(), timeout), f"{name}: plotly's renderer shows nothing"
        still.first.scroll_into_view_if_needed()
        box = still.first.bounding_box()              # None once the graph is built (the renderer hides the still)
        if box is not None:
            page.mouse.move(box["x"] + box["width"] / 3, box["y"] + box["height"] / 3, steps=5)  # a mouse enters
        plot = cell.locator(".js-plotly-plot")
        drawn = wait_until(lambda: plot.count() and plot.first.locator("canvas").count(), timeout)
        assert drawn, (f"{name}: no plotly 3D view in the output (JupyterLab showed the still instead?); it reads:\n"
                       f"{cell.locator('.jp-Cell-outputArea').inner_text()[:1000]}")
        text = cell.locator(".jp-Cell-outputArea").inner_text()
        assert "WebGL" not in text, f"{name}: {text[:500]}"
        print(f"{name}: " + _rotate_3d(page, plot.first, name, screens))
    for index in cells_calling(cells, "animation.show_gif("):
        img = all_cells.nth(index).locator(".jp-OutputArea-output img")
        assert wait_until(lambda: img.count(), timeout), f"{stem}, cell {index}: the animation shows no image"
        width, src = img.first.evaluate("i => [i.naturalWidth, i.src]")
        assert width > 0 and src.startswith("data:image/png;base64,R0lGOD"), \
            f"{stem}, cell {index}: not a GIF that loaded ({width}, {src[:40]})"
        frames = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).n_frames
        assert frames > 10, f"{stem}, cell {index}: the GIF has {frames} frames, too few to be an animation"
        print(f"{stem}, cell {index}: a GIF of {frames} frames, {width} px wide")


def _exercise(page, root, name: str, timeout: float, screens: Path, label: str, act) -> str:
    """Screenshot, act, wait for the output to change, screenshot; returns the action's description."""
    root.scroll_into_view_if_needed()
    before, figure = _signature(root), _has_figure(root)
    root.screenshot(path=str(screens / f"{name}-{label}-before.png"))
    description = act()
    _wait_redrawn(page, root, before, figure, timeout, f"{name}: {description}")
    root.screenshot(path=str(screens / f"{name}-{label}-after.png"))
    _check_widget_text(page, root, f"{name}: after {description}")
    return description


@pytest.mark.parametrize("notebook", widget_notebooks(), ids=lambda p: p.stem)
def test_widgets_redraw_in_jupyterlab(notebook, browser, lab, timeout, screens):
    # the served copy (taken when the server started) is what the page shows
    cells = json.loads((lab["served"] / notebook.name).read_text())["cells"]
    expected = widget_cells({"cells": cells})
    n_code = sum(c["cell_type"] == "code" for c in cells)
    stem = notebook.stem

    # the project's settings reach JupyterLab: the news default is "false" (lab-settings/overrides.json)
    status, body = http_get(f"{lab['base']}/lab/api/settings/@jupyterlab/apputils-extension:notification"
                            f"?token={lab['token']}")
    assert status == 200, status
    fetch_news = json.loads(body)["schema"]["properties"]["fetchNews"]["default"]
    assert fetch_news == "false", (
        f"JupyterLab's fetchNews default is {fetch_news!r}: lab-settings/overrides.json is not installed in "
        ".venv/share/jupyter/lab/settings/ (`make lab` and `make test-browser` install it)")

    page = browser.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    try:
        # a workspace of its own, reset: only this notebook is open (not the ones of earlier tests)
        page.goto(f"{lab['base']}/lab/workspaces/{stem}/tree/{notebook.name}?reset&token={lab['token']}",
                  timeout=timeout * 1000)
        ready = wait_until(lambda: (_fail_on_dialog(page, f"opening {notebook.name}")
                                    or (_kernel_status(page) == "idle"
                                        and page.locator(".jp-Notebook .jp-CodeCell").count() == n_code)),
                           timeout)
        assert ready, (f"{notebook.name} did not open with an idle kernel within {timeout:g} s; kernel status "
                       f"{_kernel_status(page)!r}, {page.locator('.jp-Notebook .jp-CodeCell').count()} code cells "
                       f"shown of {n_code}; server log:\n{lab['log'].read_text()[-3000:]}")
        assert page.locator(".jp-NotebookPanel").count() == 1, "another notebook is open too"

        # Clear the saved outputs, so that every prompt is empty until this run fills it, then run all.
        _menu(page, "Edit", "Clear Outputs of All Cells")
        assert wait_until(lambda: all(p in ("[ ]:", "") for p in _prompts(page)), timeout), _prompts(page)
        t0 = time.monotonic()
        _menu(page, "Run", "Run All Cells")

        def all_ran_or_raised():
            _fail_on_dialog(page, f"running {notebook.name}")
            prompts = _prompts(page)
            idle = _kernel_status(page) == "idle"
            return idle and (bool(_tracebacks(page)) or (
                len(prompts) == n_code and all(re.fullmatch(r"\[\d+\]:", p) for p in prompts)))

        ran = wait_until(all_ran_or_raised, timeout, interval=1.0)
        page.screenshot(path=str(screens / f"{stem}-lab.png"))
        raised = _tracebacks(page)
        assert not raised, (f"{notebook.name}: a cell raised in JupyterLab (Run All stops there); its output:\n"
                            f"{raised[0][-3000:]}")
        if not ran:
            prompts = _prompts(page)
            stopped = [i for i, p in enumerate(prompts) if not re.fullmatch(r"\[\d+\]:", p)]
            raise AssertionError(
                f"{notebook.name}: not every code cell ran within {timeout:g} s (PFGM_LITE_BROWSER_TIMEOUT); "
                f"kernel {_kernel_status(page)!r}; code cells without a count: {stopped[:10]} "
                "(a cell that raised stops Run All; see the screenshot "
                f"build/screens/{stem}-lab.png)")
        print(f"\n{notebook.name}: all {n_code} code cells ran in {time.monotonic() - t0:.1f} s")

        # No news pop-up (it shows at once on a first visit without the project's settings).
        assert not _news_toasts(page), f"JupyterLab's news pop-up shows: {_news_toasts(page)}"
        body = page.evaluate("document.body.textContent")
        assert WIDGET_ERROR not in body, f"{notebook.name}: {WIDGET_ERROR!r} shows on the page"

        # Every cell that builds a widget shows it, drawn by the widget manager (not as text).
        code_cells = page.locator(".jp-Notebook .jp-Cell")
        roots = []
        for index in expected:
            cell = code_cells.nth(index)
            views = cell.locator(WIDGET_ROOT)
            assert views.count() >= 1, (
                f"{notebook.name}, cell {index}: builds a widget but shows none; its output reads:\n"
                f"{cell.locator('.jp-Cell-outputArea').inner_text()[:1000]}")
            # tqdm.auto's progress bars are widgets too, with nothing to move: leave them out
            roots += [(index, views.nth(k)) for k in range(views.count())
                      if views.nth(k).locator(".widget-slider, .widget-dropdown, .widget-text, .widget-button").count()
                      or not views.nth(k).locator(".widget-progress").count()]

        for number, (index, root) in enumerate(roots):
            name = f"{stem}-cell{index}-widget{number}"
            # the first drawing: something in the widget's output area (its figure, here)
            assert wait_until(lambda: root.locator(".widget-output .jp-OutputArea-output").count(), timeout), \
                f"{name}: the widget showed no output within {timeout:g} s:\n{root.inner_text()[:2000]}"
            _check_widget_text(page, root, name)
            actions = 0
            if root.locator(".widget-slider .noUi-handle").count():
                def drag():
                    label = root.locator(".widget-slider .widget-label").first.inner_text()
                    old, new = _drag_slider(page, root, 0)
                    assert old != new, f"{name}: dragging the slider {label!r} did not move it (value {old})"
                    return f"slider {label!r} {old} -> {new}"
                print(f"{name}: " + _exercise(page, root, name, timeout, screens, "slider", drag))
                actions += 1
            dropdowns = root.locator(".widget-dropdown select")
            if dropdowns.count():
                def pick():
                    select = dropdowns.first
                    current = select.input_value()
                    options = [o for o in select.locator("option").evaluate_all(
                        "os => os.map(o => o.value)") if o != current]
                    assert options, f"{name}: the dropdown has nothing else to pick"
                    select.select_option(options[-1])
                    return f"dropdown {current!r} -> {options[-1]!r}"
                print(f"{name}: " + _exercise(page, root, name, timeout, screens, "dropdown", pick))
                actions += 1
            assert actions, f"{name}: the widget has no slider or dropdown to exercise:\n{root.inner_text()[:500]}"

        _check_3d_views(page, cells, stem, screens, timeout)

        assert not _news_toasts(page), f"JupyterLab's news pop-up shows: {_news_toasts(page)}"
        page.screenshot(path=str(screens / f"{stem}-lab-end.png"))
        assert not problems, f"{notebook.name}: errors in the page: {problems}"
    finally:
        page.close()
        # shut the notebook's kernel down (the server would at its end; this frees the memory now)
        status, body = http_get(f"{lab['base']}/api/sessions?token={lab['token']}")
        for session in json.loads(body) if status == 200 else []:
            if session.get("path", "").endswith(notebook.name):
                request = urllib.request.Request(
                    f"{lab['base']}/api/sessions/{session['id']}?token={lab['token']}", method="DELETE")
                with contextlib.suppress(OSError):
                    urllib.request.urlopen(request, timeout=30).close()

"""The book's sources (book/prepare.py) and the links written from one URL (book/repository.py).

The built site itself is tested in a real browser by `make test-book` (tests/browser/test_book.py).
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book"))
import prepare  # noqa: E402
import repository as repo_mod  # noqa: E402

REAL_RUN = subprocess.run
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
PNG = "iVBORw0KGgo="                                  # any base64 payload: prepare.py copies it, never decodes it


# ---- one URL: pyproject's [project.urls] Repository ------------------------------------------------------------

def test_the_repository_comes_from_pyproject():
    repo = repo_mod.repository()
    assert repo.url == __import__("tomllib").loads((ROOT / "pyproject.toml").read_text())["project"]["urls"][
        "Repository"].rstrip("/")
    assert repo.binder("notebooks/05_sampling.ipynb") == (
        f"https://mybinder.org/v2/gh/{repo.owner}/{repo.name}/main?urlpath=lab/tree/notebooks/05_sampling.ipynb")
    assert repo.colab("notebooks/05_sampling.ipynb") == (
        f"https://colab.research.google.com/github/{repo.owner}/{repo.name}/blob/main/notebooks/05_sampling.ipynb")


@pytest.mark.parametrize("url", ["https://gitlab.com/a/b", "github.com/a/b", "https://github.com/a", None])
def test_a_repository_url_that_is_not_github_owner_name_is_refused(tmp_path, url):
    urls = "" if url is None else f'[project.urls]\nRepository = "{url}"\n'
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n' + urls)
    with pytest.raises(ValueError, match=r"\[project.urls\] Repository must be https://github.com/OWNER/NAME, got"):
        repo_mod.repository(tmp_path / "pyproject.toml")


def test_the_readme_badges_are_the_ones_written_from_pyproject():
    readme = (ROOT / "README.md").read_text()
    repo = repo_mod.repository()
    assert repo_mod.readme_binder_badge(repo) in readme, "run `python book/repository.py` (README, Forking it)"
    assert repo_mod.readme_colab_badge(repo) in readme, "run `python book/repository.py` (README, Forking it)"
    assert "OWNER" not in readme


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_starts_with_the_set_up_cell_written_from_pyproject(path):
    code = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    assert "".join(code[0]["source"]) == repo_mod.setup_cell(repo_mod.repository()), (
        f"{path.name}: its first code cell is not the set-up cell; run `python book/repository.py`")
    assert code[0]["outputs"] == [], f"{path.name}: the set-up cell printed something locally"


def copy_of_the_repository(tmp_path: Path, url: str) -> Path:
    """README, notebooks and a pyproject naming `url`: what write_links reads and writes."""
    root = tmp_path / "repo"
    (root / "notebooks").mkdir(parents=True)
    for path in NOTEBOOKS[:2]:
        shutil.copy(path, root / "notebooks" / path.name)
    shutil.copy(ROOT / "README.md", root / "README.md")
    (root / "pyproject.toml").write_text(f'[project]\nname = "x"\n[project.urls]\nRepository = "{url}"\n')
    return root


def test_write_links_follows_a_new_url_and_then_changes_nothing(tmp_path):
    root = copy_of_the_repository(tmp_path, "https://github.com/a-lecturer/pfgm-course")
    before = {p.name: json.loads(p.read_text()) for p in (root / "notebooks").glob("*.ipynb")}
    changed = repo_mod.write_links(root)
    assert sorted(changed) == sorted([f"notebooks/{n}" for n in before] + ["README.md"])
    readme = (root / "README.md").read_text()
    assert "mybinder.org/v2/gh/a-lecturer/pfgm-course/main" in readme
    assert "colab.research.google.com/github/a-lecturer/pfgm-course/blob/main/notebooks/00_welcome.ipynb" in readme
    assert "github.com/pfgm-lite/pfgm-lite" not in readme.split("## The notebooks")[0]
    for name, old in before.items():
        new = json.loads((root / "notebooks" / name).read_text())
        assert len(new["cells"]) == len(old["cells"])              # replaced in place, not inserted again
        first = next(c for c in new["cells"] if c["cell_type"] == "code")
        assert '"https://github.com/a-lecturer/pfgm-course"], check=True' in "".join(first["source"])
        assert [c for c in new["cells"] if c["cell_type"] == "code"][1:] == \
            [c for c in old["cells"] if c["cell_type"] == "code"][1:]
    assert repo_mod.write_links(root) == []


def test_write_links_inserts_the_set_up_cell_before_the_first_code_cell(tmp_path):
    root = copy_of_the_repository(tmp_path, "https://github.com/pfgm-lite/pfgm-lite")
    path = next((root / "notebooks").glob("*.ipynb"))
    nb = json.loads(path.read_text())
    first = next(i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code")
    del nb["cells"][first]                                      # a notebook written before the set-up cell existed
    path.write_text(json.dumps(nb))
    assert f"notebooks/{path.name}" in repo_mod.write_links(root)
    cells = json.loads(path.read_text())["cells"]
    assert cells[:first] == nb["cells"][:first]                 # the markdown above it stays above it
    assert "".join(cells[first]["source"]).startswith(repo_mod.SETUP_MARK)
    assert cells[first + 1:] == nb["cells"][first:]


# ---- the set-up cell, both branches -----------------------------------------------------------------------------

class Recorder:
    """subprocess.run for the set-up cell: git runs for real (the URL redirected to this repository), pip is only
    recorded (installing would change this environment)."""

    def __init__(self, url: str):
        self.calls: list[list[str]] = []
        self.env = dict(os.environ, GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0=f"url.file://{ROOT}.insteadOf",
                        GIT_CONFIG_VALUE_0=url, GIT_TERMINAL_PROMPT="0")

    def __call__(self, cmd, check=False, **kwargs):
        self.calls.append(list(cmd))
        if cmd[0] == "git":
            return REAL_RUN(cmd, check=check, env=self.env, capture_output=True, timeout=300, **kwargs)
        return subprocess.CompletedProcess(cmd, 0)


def run_set_up_cell(monkeypatch, cwd: Path, installed: bool) -> tuple[Recorder, dict]:
    repo = repo_mod.repository()
    recorder = Recorder(repo.url)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "pfgm_lite" and not installed else real_find_spec(name, *a))
    monkeypatch.setattr(subprocess, "run", recorder)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(cwd)
    namespace: dict = {}
    exec(repo_mod.setup_cell(repo), namespace)
    return recorder, namespace


def test_the_set_up_cell_does_nothing_where_pfgm_lite_is_installed(monkeypatch):
    path_before = list(sys.path)
    recorder, _ = run_set_up_cell(monkeypatch, ROOT / "notebooks", installed=True)
    assert recorder.calls == []
    assert Path.cwd() == ROOT / "notebooks"
    assert sys.path == path_before


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="needs this repository's git history to clone from "
                    "(a download without .git has none)")
def test_the_set_up_cell_clones_and_installs_on_a_bare_colab(monkeypatch, tmp_path):
    repo = repo_mod.repository()
    if subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", "--quiet", f"refs/heads/{repo.branch}"],
                      capture_output=True).returncode:       # a detached checkout (CI): give the clone its branch
        subprocess.run(["git", "-C", str(ROOT), "branch", repo.branch, "HEAD"], check=True, capture_output=True)
    recorder, _ = run_set_up_cell(monkeypatch, tmp_path, installed=False)
    assert recorder.calls[0] == ["git", "clone", "--depth", "1", "--branch", repo.branch, repo.url]
    assert recorder.calls[1] == [sys.executable, "-m", "pip", "install", "--quiet", "--editable", repo.name]
    assert len(recorder.calls) == 2
    clone = tmp_path / repo.name
    assert (clone / "pyproject.toml").is_file() and (clone / "benchmarks" / "results" / "summary.json").is_file()
    assert sys.path[0] == str(clone)
    assert Path.cwd() == clone / "notebooks"                    # where ../benchmarks/results is found


def test_the_set_up_cell_in_a_checkout_whose_kernel_lacks_the_package_uses_the_checkout(monkeypatch):
    """A kernel of another environment (VS Code, a system Jupyter) in notebooks/: no second copy is cloned."""
    recorder, _ = run_set_up_cell(monkeypatch, ROOT / "notebooks", installed=False)
    assert recorder.calls == []
    assert sys.path[0] == str(ROOT) and Path.cwd() == ROOT / "notebooks"


def test_the_set_up_cell_run_again_after_a_failed_install_does_not_clone_again(monkeypatch, tmp_path):
    repo = repo_mod.repository()
    (tmp_path / repo.name / "notebooks").mkdir(parents=True)       # the clone of the first run is there
    recorder, _ = run_set_up_cell(monkeypatch, tmp_path, installed=False)
    assert recorder.calls == [[sys.executable, "-m", "pip", "install", "--quiet", "--editable", repo.name]]
    assert Path.cwd() == tmp_path / repo.name / "notebooks"


def test_the_set_up_cell_after_a_restart_on_colab_only_changes_folder(monkeypatch, tmp_path):
    """Colab keeps the clone and the install over a kernel restart; the new kernel starts in /content again."""
    repo = repo_mod.repository()
    (tmp_path / repo.name / "notebooks").mkdir(parents=True)
    recorder, _ = run_set_up_cell(monkeypatch, tmp_path, installed=True)
    assert recorder.calls == []
    assert Path.cwd() == tmp_path / repo.name / "notebooks"


# ---- the book's sources -----------------------------------------------------------------------------------------

def widget_notebook() -> dict:
    """A notebook with two widget outputs: a VBox whose Output child holds a figure, and one without a still."""
    view = "application/vnd.jupyter.widget-view+json"
    state = {
        "box": {"model_name": "VBoxModel", "state": {"children": ["IPY_MODEL_slider", "IPY_MODEL_out"]}},
        "slider": {"model_name": "FloatSliderModel", "state": {"value": 1.0}},
        "out": {"model_name": "OutputModel", "state": {"outputs": [
            {"output_type": "display_data", "data": {"image/png": PNG, "text/plain": "<Figure>"}}]}},
        "lonely": {"model_name": "FloatSliderModel", "state": {}},
    }
    return {"metadata": {"kernelspec": {"name": "python3"},
                         "widgets": {"application/vnd.jupyter.widget-state+json": {"state": state}}},
            "cells": [
                {"cell_type": "markdown", "source": "# A title"},
                {"cell_type": "code", "outputs": [
                    {"output_type": "stream", "name": "stdout", "text": "before\n"},
                    {"output_type": "display_data", "data": {view: {"model_id": "box"}, "text/plain": "VBox()"}}]},
                {"cell_type": "code", "outputs": [
                    {"output_type": "display_data", "data": {view: {"model_id": "lonely"}, "text/plain": "x"}}]},
            ]}


def test_static_notebook_puts_the_saved_still_where_the_widget_was():
    nb = widget_notebook()
    static = prepare.static_notebook(nb)
    assert "widgets" not in static["metadata"] and "widgets" in nb["metadata"]      # the input is not changed
    first, second = static["cells"][1]["outputs"], static["cells"][2]["outputs"]
    assert first[0] == nb["cells"][1]["outputs"][0]                                  # other outputs stay
    assert "the figure it showed when the notebook was run" in first[1]["data"]["text/markdown"]
    assert first[2]["data"]["image/png"] == PNG and len(first) == 3
    assert "no still was saved" in second[0]["data"]["text/markdown"] and len(second) == 1
    assert "widget-view" not in json.dumps(static)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_book_shows_no_live_widget_and_keeps_every_figure(path):
    nb = json.loads(path.read_text())
    static = prepare.static_notebook(nb)
    assert "application/vnd.jupyter.widget" not in json.dumps(static)
    def outputs(book):
        return [o for c in book["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    def images(book):
        return sum("image/png" in o.get("data", {}) for o in outputs(book))
    views = [o["data"]["application/vnd.jupyter.widget-view+json"]["model_id"] for o in outputs(nb)
             if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    state = nb["metadata"].get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    bars = [v for v in views if prepare.is_progress_bar(v, state)]
    assert images(static) >= images(nb) + len(views) - len(bars)  # each interactive widget left its figure
    lines = [o["text"] for o in outputs(static) if o.get("output_type") == "stream" and "█" in o["text"]]
    assert len(lines) == len(bars)                                # each progress bar left its last line
    assert all("&lt;" not in line and "<" not in line.split("[")[0] for line in lines)


def test_a_progress_bar_becomes_its_last_line_of_text():
    state = {"bar": {"model_name": "HBoxModel", "state": {"children": ["IPY_MODEL_l", "IPY_MODEL_p", "IPY_MODEL_r"]}},
             "l": {"model_name": "HTMLModel", "state": {"value": "training:&nbsp;50%"}},
             "p": {"model_name": "FloatProgressModel", "state": {"value": 5, "max": 10}},
             "r": {"model_name": "HTMLModel", "state": {"value": "5/10 [00:01&lt;00:01]"}}}
    assert prepare.is_progress_bar("bar", state)
    assert prepare.progress_line("bar", state) == "training:\xa050% |" + "█" * 10 + " " * 10 + "| 5/10 [00:01<00:01]"
    state["p"]["model_name"] = "FloatSliderModel"                 # a slider is interactive: not a progress bar
    assert not prepare.is_progress_bar("bar", state)


def test_the_set_up_cell_is_folded_in_the_book():
    nb = prepare.static_notebook(json.loads(NOTEBOOKS[0].read_text()))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code[0]["metadata"]["tags"] == ["hide-input"]
    assert all("hide-input" not in c["metadata"].get("tags", []) for c in code[1:])


def test_the_landing_page_shows_the_badges_as_links_without_fetching_their_images():
    readme = (ROOT / "README.md").read_text()
    repo = repo_mod.repository()
    page = prepare.readme_page(readme, f"{repo.url}/blob/main")
    assert f"[Launch on Binder]({repo.binder('notebooks')})" in page
    assert f"[Open in Colab]({repo.colab('notebooks/00_welcome.ipynb')})" in page
    assert "badge_logo.svg" not in page and "colab-badge.svg" not in page


def test_the_landing_page_links_notebooks_to_their_pages_and_other_files_to_github():
    readme = "See `05_sampling.ipynb`, [the licence](LICENSE), [memory](#memory), [a doc](docs/x.png), " \
             "[PyTorch](https://pytorch.org) and [06](notebooks/06_digits.ipynb)."
    page = prepare.readme_page(readme, "https://github.com/o/n/blob/main")
    assert "[`05_sampling.ipynb`](notebooks/05_sampling.ipynb)" in page
    assert "[the licence](https://github.com/o/n/blob/main/LICENSE)" in page
    for kept in ("[memory](#memory)", "[a doc](docs/x.png)", "[PyTorch](https://pytorch.org)",
                 "[06](notebooks/06_digits.ipynb)"):
        assert kept in page
    assert page.count("notebooks/0") >= len(NOTEBOOKS)          # the hidden table of contents lists every notebook
    for path in NOTEBOOKS:
        assert f"\nnotebooks/{path.stem}\n" in page


def test_the_benchmarks_page_names_every_results_file_with_what_wrote_it():
    page = prepare.benchmarks_page((ROOT / "README.md").read_text())
    for path in (ROOT / "benchmarks" / "results").glob("*.json"):
        assert f"| `{path.name}` |" in page
    summary = json.loads((ROOT / "benchmarks" / "results" / "summary.json").read_text())["meta"]
    assert f"`{summary['command']}`" in page and str(summary["commit"])[:10] in page

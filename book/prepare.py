"""Prepare the book's sources in build/book/src: a mirror of the repository's layout that Sphinx reads.

- index.md: the README (the story of the series), its links rewritten to the book's pages;
- notebooks/NN_*.ipynb: the committed notebooks, not executed; every live widget is replaced by the still that its
  saved state holds (the figure it showed when the notebook was run; a progress bar becomes its last line of text),
  and the widget state is dropped, so no page loads widget JavaScript from a CDN;
- api.md: one section per module of pfgm_lite, from its docstrings;
- benchmarks.md: the README's benchmarks section and, for every results file, the command, commit and device that
  wrote it.
Usage: python book/prepare.py [--out build/book/src]
"""
from __future__ import annotations

import argparse
import html
import importlib
import json
import pkgutil
import re
import shutil
import sys
from pathlib import Path

from repository import SETUP_MARK, repository

ROOT = Path(__file__).resolve().parents[1]
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def widget_stills(model_id: str, state: dict) -> list[dict]:
    """The outputs that the Output widgets under `model_id` held when the notebook was saved (depth first)."""
    model = state.get(model_id)
    if model is None:
        return []
    if model["model_name"] == "OutputModel":
        return [dict(o) for o in model["state"].get("outputs", [])]
    stills = []
    for child in model["state"].get("children", []):
        stills += widget_stills(child.removeprefix("IPY_MODEL_"), state)
    return stills


def progress_line(model_id: str, state: dict) -> str:
    """A text still of a progress bar (tqdm's HBox of HTML, progress, HTML): its labels and a bar of 20 cells."""
    model = state.get(model_id)
    if model is None:
        return ""
    name, own = model["model_name"], model["state"]
    if name == "HTMLModel":
        return html.unescape(re.sub(r"<[^>]+>", "", own.get("value", ""))).strip()
    if name in ("FloatProgressModel", "IntProgressModel"):
        done = round(20 * own.get("value", 0) / own["max"]) if own.get("max") else 0
        return "|" + "█" * done + " " * (20 - done) + "|"
    parts = [progress_line(child.removeprefix("IPY_MODEL_"), state) for child in own.get("children", [])]
    return " ".join(part for part in parts if part)


def is_progress_bar(model_id: str, state: dict) -> bool:
    """Whether a widget is a progress bar: a box of HTML labels and one progress model, nothing interactive."""
    model = state.get(model_id, {"model_name": "", "state": {}})
    children = [state.get(c.removeprefix("IPY_MODEL_"), {}).get("model_name") for c in model["state"].get(
        "children", [])]
    return (model["model_name"] == "HBoxModel" and sum(c in ("FloatProgressModel", "IntProgressModel")
                                                       for c in children) == 1
            and all(c in ("FloatProgressModel", "IntProgressModel", "HTMLModel") for c in children))


def static_notebook(nb: dict) -> dict:
    """A copy of a notebook whose widget outputs are replaced by their stills, without the widget state."""
    nb = json.loads(json.dumps(nb))
    state = nb["metadata"].pop("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        if "".join(cell.get("source", "")).startswith(SETUP_MARK):    # Colab's set-up: folded on the page, one click away
            cell.setdefault("metadata", {}).setdefault("tags", []).append("hide-input")
        outputs = []
        for out in cell.get("outputs", []):
            view = out.get("data", {}).get(WIDGET_VIEW)
            if view is None:
                outputs.append(out)
                continue
            if is_progress_bar(view["model_id"], state):        # tqdm: its last text, as a console would show
                outputs.append({"output_type": "stream", "name": "stdout",
                                "text": progress_line(view["model_id"], state) + "\n"})
                continue
            stills = widget_stills(view["model_id"], state)
            note = {"output_type": "display_data", "metadata": {}, "data": {"text/markdown": (
                "*A live widget in JupyterLab (launch this page on Binder or Colab to use it); "
                + ("below, the figure it showed when the notebook was run.*" if stills else "no still was saved.*"))}}
            outputs += [note] + [dict(s, metadata=s.get("metadata", {})) for s in stills]
        cell["outputs"] = outputs
    return nb


def readme_page(readme: str, blob: str) -> str:
    """The README as the landing page: notebook names link to their pages, other repository files to GitHub."""
    def link(match: re.Match) -> str:
        target = match[1]
        if target.startswith(("notebooks/", "docs/", "#")):
            return match[0]
        return f"]({blob}/{target})"

    # the badges are images on mybinder.org / colab: the book fetches nothing at view time, so they become links
    text = re.sub(r"\[!\[(Binder|Open in Colab)\]\([^)]*\)\]\(([^)]*)\)",
                  lambda m: f"[{'Launch on Binder' if m[1] == 'Binder' else 'Open in Colab'}]({m[2]})", readme)
    text = re.sub(r"\]\(([^)\s]+)\)", lambda m: m[0] if "://" in m[1] else link(m), text)
    text = re.sub(r"`(\d\d_[\w]+)\.ipynb`", r"[`\1.ipynb`](notebooks/\1.ipynb)", text)
    toc = "\n".join(f"notebooks/{p.stem}" for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")))
    return (text + "\n\n```{toctree}\n:hidden:\n:caption: Notebooks\n\n" + toc
            + "\n```\n\n```{toctree}\n:hidden:\n:caption: Reference\n\nbenchmarks\napi\n```\n")


def api_page() -> str:
    """One automodule section per module of pfgm_lite (private modules and __main__ left out)."""
    import pfgm_lite

    names = ["pfgm_lite"] + sorted(m.name for m in pkgutil.walk_packages(pfgm_lite.__path__, "pfgm_lite.")
                                   if not any(part.startswith("_") for part in m.name.split(".")))
    parts = ["# The package `pfgm_lite`\n", "Every module, from its docstrings: shapes and equations are in each "
             "function's documentation.\n"]
    for name in names:            # a package's page shows its docstring; its members are on their modules' pages
        members = "" if hasattr(importlib.import_module(name), "__path__") else "\n   :members:"
        parts.append(f"## `{name}`\n\n```{{eval-rst}}\n.. automodule:: {name}{members}\n```\n")
    return "\n".join(parts)


def benchmarks_page(readme: str) -> str:
    """The README's Benchmarks section and a table of the results files with what wrote them."""
    section = re.search(r"^## Benchmarks\n(.*?)(?=^## )", readme, re.S | re.M)
    rows = []
    for path in sorted((ROOT / "benchmarks" / "results").glob("*.json")):
        meta = json.loads(path.read_text()).get("meta", {})
        command = meta.get("command", "")
        rows.append(f"| `{path.name}` | {'`' + command + '`' if command else ''} | {str(meta.get('commit', ''))[:10]} "
                    f"| {meta.get('device', '')} |")
    table = "| Results file | Command | Commit | Device |\n|---|---|---|---|\n" + "\n".join(rows)
    return ("# Benchmarks and their results\n" + (section[1] if section else "")
            + "\n## The results files\n\nEach file in `benchmarks/results/` says which command wrote it, at which "
            "commit and on which machine (blank where an older script did not record it).\n\n" + table + "\n")


def prepare(out: Path) -> None:
    """Write the book's sources into `out` (emptied first)."""
    if out.exists():
        shutil.rmtree(out)
    (out / "notebooks").mkdir(parents=True)
    readme = (ROOT / "README.md").read_text()
    repo = repository()
    (out / "index.md").write_text(readme_page(readme, f"{repo.url}/blob/{repo.branch}"))
    (out / "api.md").write_text(api_page())
    (out / "benchmarks.md").write_text(benchmarks_page(readme))
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        nb = static_notebook(json.loads(path.read_text()))
        (out / "notebooks" / path.name).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    shutil.copytree(ROOT / "docs", out / "docs")            # the README's images


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "build" / "book" / "src"))
    args = parser.parse_args(argv)
    prepare(Path(args.out))
    print(f"book sources in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

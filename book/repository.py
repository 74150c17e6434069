"""Where the repository lives: read from pyproject.toml's [project.urls] Repository, the one place it is set."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Repository:
    """A GitHub repository: owner/name and the branch the links point at."""

    owner: str
    name: str
    branch: str = "main"

    @property
    def url(self) -> str:
        return f"https://github.com/{self.owner}/{self.name}"

    def binder(self, path: str = "notebooks") -> str:
        """The Binder link that opens JupyterLab at `path` (a folder or a notebook)."""
        return f"https://mybinder.org/v2/gh/{self.owner}/{self.name}/{self.branch}?urlpath=lab/tree/{path}"

    def colab(self, notebook: str) -> str:
        """The Colab link of one notebook, e.g. notebooks/05_sampling.ipynb."""
        return f"https://colab.research.google.com/github/{self.owner}/{self.name}/blob/{self.branch}/{notebook}"


def repository(pyproject: Path = ROOT / "pyproject.toml") -> Repository:
    """The repository named by pyproject.toml's [project.urls] Repository (https://github.com/OWNER/NAME)."""
    urls = tomllib.loads(pyproject.read_text())["project"].get("urls", {})
    url = urls.get("Repository")
    match = re.fullmatch(r"https://github\.com/([\w.-]+)/([\w.-]+?)/?", url or "")
    if match is None:
        raise ValueError(f"{pyproject}: [project.urls] Repository must be https://github.com/OWNER/NAME, got {url!r}")
    return Repository(match[1], match[2])


SETUP_MARK = "# Colab or a bare Jupyter: fetch the repository and install pfgm_lite"


def setup_cell(repo: Repository) -> str:
    """The first code cell of every notebook: where pfgm_lite cannot be imported, find it or fetch it.

    In a checkout whose kernel lacks the package (another environment), use the checkout itself (`..`); on Colab (a
    notebook alone) clone the repository's branch once and install it; with pfgm_lite installed (make lab, Binder,
    nbval) do nothing. On Colab it also enters the clone's notebooks/, where ../benchmarks/results is found.
    """
    return f'''{SETUP_MARK} (locally and under nbval: nothing)
import importlib.util
import os
import subprocess
import sys

if importlib.util.find_spec("pfgm_lite") is None:
    if os.path.isfile("../pfgm_lite/__init__.py"):   # a checkout, run by a kernel without the package: use it
        sys.path.insert(0, os.path.abspath(".."))
    else:                                             # Colab: the notebook came alone
        if not os.path.isdir("{repo.name}"):
            subprocess.run(["git", "clone", "--depth", "1", "--branch", "{repo.branch}",
                            "{repo.url}"], check=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--editable", "{repo.name}"], check=True)
        sys.path.insert(0, os.path.abspath("{repo.name}"))   # this kernel sees the new install without a restart
if not os.path.isdir("../benchmarks/results") and os.path.isdir("{repo.name}/notebooks"):
    os.chdir("{repo.name}/notebooks")           # the notebooks read ../benchmarks/results (after a restart too)'''


def readme_binder_badge(repo: Repository) -> str:
    """The README's Binder badge: JupyterLab on the notebooks folder."""
    return f"[![Binder](https://mybinder.org/badge_logo.svg)]({repo.binder('notebooks')})"


def readme_colab_badge(repo: Repository) -> str:
    """The README's Colab badge: the welcome notebook."""
    return (f"[![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"({repo.colab('notebooks/00_welcome.ipynb')})")


def write_links(root: Path = ROOT) -> list[str]:
    """Write the set-up cell into every notebook and the badges into the README from pyproject's URL.

    Returns the files that changed. A fork runs this (`python book/repository.py`) after editing the URL.
    """
    import json

    repo, changed = repository(root / "pyproject.toml"), []
    for path in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        nb = json.loads(path.read_text())
        cell = {"cell_type": "code", "execution_count": None, "id": "colab-setup", "metadata": {}, "outputs": [],
                "source": setup_cell(repo).splitlines(keepends=True)}
        first = next(i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code")
        if "".join(nb["cells"][first]["source"]).startswith(SETUP_MARK):
            if nb["cells"][first]["source"] == cell["source"]:
                continue
            nb["cells"][first]["source"] = cell["source"]
        else:
            nb["cells"].insert(first, cell)
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
        changed.append(str(path.relative_to(root)))
    readme = (root / "README.md").read_text()
    new = re.sub(r"\[!\[Binder\]\([^)]*\)\]\([^)]*\)", lambda m: readme_binder_badge(repo), readme)
    new = re.sub(r"\[!\[Open in Colab\]\([^)]*\)\]\([^)]*\)", lambda m: readme_colab_badge(repo), new)
    if new != readme:
        (root / "README.md").write_text(new)
        changed.append("README.md")
    return changed


if __name__ == "__main__":
    print("\n".join(write_links()) or "nothing to change")

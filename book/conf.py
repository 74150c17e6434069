"""Sphinx configuration of the book (`make book`): sources prepared by book/prepare.py in build/book/src."""
from __future__ import annotations

import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book"))
from repository import repository  # noqa: E402

repo = repository()
project = "pfgm-lite"
author = "the pfgm-lite authors"
copyright = "the pfgm-lite authors, MIT licence"
release = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"].get("version", "")

extensions = [
    "myst_nb",                       # the committed notebooks, rendered with their saved outputs
    "sphinx.ext.autodoc",            # the API reference from the package's docstrings
    "sphinx-mathjax-offline",        # MathJax 3 bundled into _static: maths typeset without a CDN
]
root_doc = "index"
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
nb_execution_mode = "off"            # the outputs are the content: nothing is executed
nb_ipywidgets_js = {}                # no widget JavaScript (it comes from a CDN); prepare.py put stills in place
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_dmath_double_inline = True      # $$...$$ inside a paragraph, as JupyterLab and GitHub read it (else $ pairs shift)
myst_heading_anchors = 3
suppress_warnings = ["mystnb.unknown_mime_type", "myst.header"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"

html_theme = "sphinx_book_theme"
html_title = "pfgm-lite"
html_static_path: list[str] = []
html_theme_options = {
    "repository_url": repo.url,
    "repository_branch": repo.branch,
    "path_to_docs": "",              # the prepared sources mirror the repository: notebooks/NN_name.ipynb
    "use_repository_button": True,
    "launch_buttons": {"binderhub_url": "https://mybinder.org", "colab_url": "https://colab.research.google.com",
                       "notebook_interface": "jupyterlab"},
    "use_download_button": True,
}
html_last_updated_fmt = None
# the theme's first-visit mode: without it the page logs "Got invalid theme mode" (an empty mode) as a console error
html_context = {"default_mode": "auto"}


def literal_docstring(app, what, name, obj, options, lines):
    """Show every docstring verbatim: the package writes them as plain text (shapes, equations), not as RST."""
    if lines:
        lines[:] = ["::", ""] + ["    " + line for line in lines] + [""]


def setup(app):
    app.connect("autodoc-process-docstring", literal_docstring)

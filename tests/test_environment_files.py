"""The ways to install pfgm-lite agree: pyproject.toml, environment.yml, binder/, .ci/run, README."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]

# Names that only a conda file needs: the interpreter, pip itself, and the lab extension that
# ipywidgets 8 pulls in by itself on pip but that Binder pins next to jupyterlab.
CONDA_ONLY = {"python", "pip", "jupyterlab-widgets"}
CONDA_TO_PIP = {"pytorch": "torch"}


def normalize(requirement: str) -> str:
    """`Torch_Vision >=0.17,<1` -> `torch-vision`; conda's `pytorch` -> `torch`."""
    name = re.split(r"[\s<>=!~;\[@]", requirement.strip(), maxsplit=1)[0]
    name = re.sub(r"[-_.]+", "-", name).lower()
    return CONDA_TO_PIP.get(name, name)


def pyproject_names() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for group in ("lab", "test"):
        reqs += project["optional-dependencies"][group]
    return {normalize(r) for r in reqs}


def parse_environment(text: str) -> tuple[list[str], list[str]]:
    """(conda entries, pip entries) of a simple environment.yml, without a YAML library."""
    conda, pip = [], []
    in_deps = False
    pip_indent = None
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if indent == 0:
            in_deps = line.startswith("dependencies:")
            pip_indent = None
            continue
        if not in_deps:
            continue
        item = line.strip()
        if not item.startswith("- "):
            continue
        item = item[2:].strip()
        if pip_indent is not None and indent > pip_indent:
            pip.append(item)
            continue
        pip_indent = None
        if item == "pip:":
            pip_indent = indent
        else:
            conda.append(item)
    return conda, pip


def environment_entries(path: Path) -> tuple[list[str], list[str]]:
    text = path.read_text()
    try:
        import yaml
    except ModuleNotFoundError:
        return parse_environment(text)
    deps = yaml.safe_load(text)["dependencies"]
    conda = [d for d in deps if isinstance(d, str)]
    pip = [e for d in deps if isinstance(d, dict) for e in d.get("pip", [])]
    return conda, pip


def package_names(conda: list[str], pip: list[str]) -> set[str]:
    names = {normalize(c) for c in conda}
    # pip options (`-e .`, `--extra-index-url ...`) are not packages
    names |= {normalize(p) for p in pip if not p.startswith("-")}
    return names - CONDA_ONLY


ENV_FILES = ["environment.yml", "binder/environment.yml"]


def test_normalize():
    assert normalize("Torch_Vision >=0.17,<1") == "torch-vision"
    assert normalize("pytorch>=2.2,<3") == "torch"
    assert normalize("jupyterlab_widgets=3") == "jupyterlab-widgets"
    assert normalize("ipywidgets[extra]>=8") == "ipywidgets"


@pytest.mark.parametrize("name", ENV_FILES)
def test_environment_file_lists_the_pyproject_dependencies(name):
    conda, pip = environment_entries(ROOT / name)
    env = package_names(conda, pip)
    want = pyproject_names()
    assert env - want == set(), f"{name} has packages pyproject.toml lacks"
    assert want - env == set(), f"{name} lacks packages of pyproject.toml"


@pytest.mark.parametrize("name", ENV_FILES)
def test_line_parser_reads_environment_files_like_yaml(name):
    yaml = pytest.importorskip("yaml")
    text = (ROOT / name).read_text()
    deps = yaml.safe_load(text)["dependencies"]
    conda = [d for d in deps if isinstance(d, str)]
    pip = [e for d in deps if isinstance(d, dict) for e in d.get("pip", [])]
    assert parse_environment(text) == (conda, pip)


def test_environment_yml_installs_the_package_and_a_supported_python():
    conda, pip = environment_entries(ROOT / "environment.yml")
    assert "-e ." in pip
    assert any(normalize(c) == "python" and ">=3.11" in c for c in conda)
    assert "conda-forge" in (ROOT / "environment.yml").read_text()


def test_binder_uses_cpu_only_torch_from_pip():
    conda, pip = environment_entries(ROOT / "binder/environment.yml")
    assert "torch" not in {normalize(c) for c in conda}, "torch must come from the CPU wheel index"
    assert {"torch", "torchvision"} <= {normalize(p) for p in pip if not p.startswith("-")}
    assert any(
        p.startswith(("--extra-index-url", "--index-url")) and p.endswith("download.pytorch.org/whl/cpu")
        for p in pip
    )
    assert "python=3.11" in conda
    assert "jupyterlab=4" in conda and "ipywidgets=8" in conda and "jupyterlab_widgets=3" in conda


def test_binder_postbuild_installs_the_package():
    path = ROOT / "binder/postBuild"
    text = path.read_text()
    assert text.startswith("#!"), "postBuild needs a shebang"
    assert re.search(r"^set -e", text, re.M), "without set -e, Binder ignores errors"
    assert re.search(r"^pip install .*(-e|--editable) \.\s*$", text, re.M)
    assert path.stat().st_mode & 0o111, "postBuild must be executable"


def test_ci_runs_the_readme_test_command():
    path = ROOT / ".ci/run"
    text = path.read_text()
    assert text.startswith("#!") and "set -euo pipefail" in text
    test = re.search(r"^(exec )?make test\s*$", text, re.M)
    assert test, ".ci/run must run the README's test command, `make test`, on a line of its own"
    browser = re.search(r"^(exec )?make test-browser\s*$", text, re.M)
    assert browser and browser.start() > test.start(), "the browser test runs after `make test`"
    book = re.search(r"^(exec )?make test-book\s*$", text, re.M)
    assert book and book.start() > browser.start(), "the book's browser test runs after the widgets'"
    assert path.stat().st_mode & 0o111, ".ci/run must be executable"


def test_readme_shows_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert "make lab" in readme and "make test" in readme
    # the quick start comes before conda and Binder
    assert readme.index("make lab") < readme.index("conda env create")
    assert readme.index("make test") < readme.index("mybinder.org")


def test_makefile_targets_exist():
    makefile = (ROOT / "Makefile").read_text()
    for target in ("lab", "test", "unit", "nbval", "notebooks", "quick", "clean", "distclean"):
        assert re.search(rf"^{target}:", makefile, re.M), target
    assert re.search(r"^\$\(STAMP\): pyproject\.toml", makefile, re.M)

"""Notebook hygiene: every notebook in notebooks/ is saved the way nbval and readers need it.

`notebook_problems(path)` lists what is wrong with one notebook; the tests below run it over every
notebook, prove that each rule catches a notebook built to break it, and prove that nbval itself
fails on a `# NBVAL_CHECK_OUTPUT` cell whose stored output is wrong.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))

MAX_BYTES = 5 * 1024 * 1024
NAME_RE = re.compile(r"^\d\d_[A-Za-z0-9_]+\.ipynb$")
CHECK_MARKER = "# NBVAL_CHECK_OUTPUT"
# A machine's absolute path, not the tail of a URL such as https://host/home/x.
MACHINE_PATH_RE = re.compile(
    r"(?<![\w.:/~-])/(?:work|tmp|root|home|Users)/[A-Za-z]|\b[A-Za-z]:\\+Users\\"
)
# Base64 payloads: random text in which a path pattern could appear by chance.
BINARY_MIME_PREFIXES = ("image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf")


def _strings(node, key=""):
    """Every string in a notebook's JSON tree, skipping binary (base64) payloads."""
    if key.startswith(BINARY_MIME_PREFIXES):
        return
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for k, v in node.items():
            yield from _strings(v, str(k))
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v, key)


def notebook_problems(path) -> list[str]:
    """What is wrong with the notebook at `path` (an empty list when nothing is)."""
    path = Path(path)
    problems: list[str] = []
    if not NAME_RE.match(path.name):
        problems.append(f"name {path.name!r} is not NN_name.ipynb")
    size = path.stat().st_size
    if size >= MAX_BYTES:
        problems.append(f"file is {size / 2**20:.1f} MB (limit 5 MB)")
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as exc:  # unreadable JSON or notebook format
        return problems + [f"cannot be read by nbformat: {exc}"]
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as exc:
        problems.append(f"fails nbformat validation: {str(exc).splitlines()[0]}")

    kernel = nb.metadata.get("kernelspec", {}).get("name")
    if kernel != "python3":
        problems.append(f"kernelspec name is {kernel!r}, not 'python3'")

    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    counts = [c.get("execution_count") for c in code]
    if counts != list(range(1, len(code) + 1)):
        problems.append(
            f"not executed top to bottom in one run: execution counts {counts}"
        )
    if not any(c.get("outputs") for c in code):
        problems.append("no stored outputs (execute it with `make notebooks NB=...`)")
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                problems.append(f"cell {i} stores an error: {out.get('ename')}: {out.get('evalue')}")
    if not any(
        line.strip() == CHECK_MARKER for c in code for line in c.source.splitlines()
    ):
        problems.append(f"no cell with a line `{CHECK_MARKER}` (nbval would compare nothing)")

    hits = sorted({m.group(0) for s in _strings(nb) for m in MACHINE_PATH_RE.finditer(s)})
    if hits:
        problems.append(f"contains absolute paths of a machine: {hits}")
    return problems


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_hygiene(path):
    assert notebook_problems(path) == []


def test_there_are_notebooks():
    assert (NOTEBOOK_DIR / "00_welcome.ipynb") in NOTEBOOKS


# --- the rules catch what they should -------------------------------------------------------

def _good_notebook():
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [
        nbformat.v4.new_markdown_cell("# A tiny notebook"),
        nbformat.v4.new_code_cell(
            "x = 6 * 7", execution_count=1, outputs=[]
        ),
        nbformat.v4.new_code_cell(
            f"{CHECK_MARKER}\nprint(x)",
            execution_count=2,
            outputs=[nbformat.v4.new_output("stream", name="stdout", text="42\n")],
        ),
        nbformat.v4.new_code_cell("", execution_count=None, outputs=[]),
    ]
    return nb


def _write(nb, tmp_path, name="01_tiny.ipynb"):
    """Write without nbformat's validation, so that invalid notebooks can be built too."""
    path = tmp_path / name
    path.write_text(json.dumps(nb, indent=1) + "\n", encoding="utf-8")
    return path


def test_good_notebook_has_no_problems(tmp_path):
    assert notebook_problems(_write(_good_notebook(), tmp_path)) == []


def _break_name(nb):
    return nb, "tiny.ipynb"


def _break_kernel(nb):
    nb.metadata["kernelspec"]["name"] = "conda-env-py311"
    return nb, None


def _break_order(nb):
    nb.cells[2].execution_count = 5
    return nb, None


def _break_unrun(nb):
    nb.cells[1].execution_count = None
    return nb, None


def _break_outputs(nb):
    for c in nb.cells:
        if c.cell_type == "code":
            c.outputs = []
    return nb, None


def _break_error(nb):
    nb.cells[1].outputs = [
        nbformat.v4.new_output("error", ename="ZeroDivisionError", evalue="division by zero", traceback=[])
    ]
    return nb, None


def _break_marker(nb):
    nb.cells[2].source = "# NBVAL_CHECK_OUTPUT because it is deterministic\nprint(x)"
    return nb, None


def _break_size(nb):
    nb.cells[1].outputs = [
        nbformat.v4.new_output("display_data", data={"text/plain": "0" * (MAX_BYTES + 1)})
    ]
    return nb, None


def _break_path_posix(nb):
    nb.cells[2].outputs[0].text = "saved to /home/alice/runs/moons\n"
    return nb, None


def _break_path_in_warning(nb):
    nb.cells[1].outputs = [
        nbformat.v4.new_output(
            "stream", name="stderr", text="/work/main/pfgm_lite/x.py:3: UserWarning: hm\n"
        )
    ]
    return nb, None


def _break_path_windows(nb):
    nb.cells[1].source = 'open(r"C:\\Users\\bob\\data.npz")'
    return nb, None


def _break_schema(nb):
    nb.cells[1].outputs = [{"output_type": "stream", "name": "stdout"}]  # no `text`
    return nb, None


BREAKERS = {
    "name": (_break_name, "not NN_name"),
    "kernelspec": (_break_kernel, "kernelspec"),
    "execution order": (_break_order, "top to bottom"),
    "unrun cell": (_break_unrun, "top to bottom"),
    "no outputs": (_break_outputs, "no stored outputs"),
    "error output": (_break_error, "stores an error"),
    "check marker": (_break_marker, "NBVAL_CHECK_OUTPUT"),
    "size": (_break_size, "limit 5 MB"),
    "posix path": (_break_path_posix, "absolute paths"),
    "path in warning": (_break_path_in_warning, "absolute paths"),
    "windows path": (_break_path_windows, "absolute paths"),
    "schema": (_break_schema, "validation"),
}


@pytest.mark.parametrize("rule", list(BREAKERS))
def test_each_rule_catches_a_bad_notebook(rule, tmp_path):
    breaker, expected = BREAKERS[rule]
    nb, name = breaker(_good_notebook())
    problems = notebook_problems(_write(nb, tmp_path, name or "01_tiny.ipynb"))
    assert len(problems) == 1 and expected in problems[0], problems


def test_urls_are_not_machine_paths(tmp_path):
    nb = _good_notebook()
    nb.cells[0].source = "See https://example.org/home/Page and https://github.com/x/y/tree/work/Z."
    assert notebook_problems(_write(nb, tmp_path)) == []


# --- nbval itself fails on a wrong stored output ---------------------------------------------

def _run_nbval(path, *options):
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
         "--nbval-lax", "--nbval-current-env", *options, path.name],
        cwd=path.parent, capture_output=True, text=True, timeout=120,
    )


def test_nbval_fails_on_wrong_stored_output(tmp_path):
    nb = _good_notebook()
    nb.cells[2].outputs[0].text = "41\n"
    result = _run_nbval(_write(nb, tmp_path))
    assert result.returncode != 0, result.stdout + result.stderr
    assert "1 failed" in result.stdout, result.stdout


def test_nbval_passes_on_right_stored_output(tmp_path):
    result = _run_nbval(_write(_good_notebook(), tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed" in result.stdout and "failed" not in result.stdout, result.stdout


def test_conftest_and_sanitizer_mask_what_varies(tmp_path):
    """stderr and memory addresses differ between runs: nbval must fail without our config, pass with it."""
    nb = _good_notebook()
    nb.cells[2].source = (
        f"{CHECK_MARKER}\nimport sys\ndef f():\n    pass\nprint(f)\nprint('a warning', file=sys.stderr)"
    )
    nb.cells[2].outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="<function f at 0x7f0000000000>\n"),
        nbformat.v4.new_output("stream", name="stderr", text="another warning, from another version\n"),
    ]
    path = _write(nb, tmp_path)
    assert _run_nbval(path).returncode != 0

    (tmp_path / "conftest.py").write_text((NOTEBOOK_DIR / "conftest.py").read_text())
    result = _run_nbval(path, "--nbval-sanitize-with", str(ROOT / "tests" / "nbval_sanitize.cfg"))
    assert result.returncode == 0, result.stdout + result.stderr

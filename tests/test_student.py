"""The student edition (pfgm_lite/teaching/student.py, `make student`): solutions become stubs, nothing else changes, a check
on a stub says "not implemented yet", and every student notebook runs top to bottom up to its first stub."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from nbclient import NotebookClient
from scipy import stats

from pfgm_lite.teaching import exercises, student

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
STUB_RE = re.compile(r"^\s*raise NotImplementedError\(", re.MULTILINE)


@pytest.fixture(scope="module")
def edition(tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    assert student.main(["--source", str(ROOT / "notebooks"), "--out", str(out)]) == 0
    return out


def cells(path):
    return json.loads(Path(path).read_text(encoding="utf-8"))["cells"]


def solution_blocks(source: str) -> list[str]:
    code = re.findall(r"### BEGIN SOLUTION\n(.*?)^\s*### END SOLUTION", source, re.DOTALL | re.MULTILINE)
    md = re.findall(r"<!-- BEGIN SOLUTION -->(.*?)<!-- END SOLUTION -->", source, re.DOTALL)
    return [b for b in code + md if b.strip()]


@pytest.mark.parametrize("path", NOTEBOOKS[1:], ids=lambda p: p.name)
def test_every_notebook_from_01_has_two_to_six_solution_blocks(path):
    blocks = sum(len(solution_blocks("".join(c["source"]))) for c in cells(path))
    assert 2 <= blocks <= 6, f"{path.name}: {blocks} solution blocks"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_edition_removes_solutions_and_keeps_the_rest(edition, path):
    original = json.loads(path.read_text(encoding="utf-8"))
    copy = json.loads((edition / path.name).read_text(encoding="utf-8"))
    assert copy["metadata"] == original["metadata"] and len(copy["cells"]) == len(original["cells"])
    text = json.dumps(copy, ensure_ascii=False)
    assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
    for before, after in zip(original["cells"], copy["cells"]):
        source = "".join(before["source"])
        if not student.has_solution(before):
            assert after == before                       # byte for byte: the same JSON
            continue
        for block in solution_blocks(source):
            assert block not in "".join(after["source"])
        if before["cell_type"] == "code":
            assert STUB_RE.search("".join(after["source"])) and after["outputs"] == []
            assert after["execution_count"] is None
        else:
            assert student.MD_STUB in "".join(after["source"])


def test_untouched_cells_are_byte_identical_in_the_file(edition):
    """Not only equal as JSON: a notebook without solutions comes out as the very same bytes."""
    plain = [p for p in NOTEBOOKS if not any(student.has_solution(c) for c in cells(p))]
    for path in plain:
        assert (edition / path.name).read_bytes() == path.read_bytes()


def test_a_check_on_a_stub_says_not_implemented(edition, capsys):
    """Run each student cell that defines an answer and calls exercises.check: the check reports the stub."""
    ran = 0
    for path in sorted(edition.glob("*.ipynb")):
        for cell in cells(path):
            source = "".join(cell["source"])
            if cell["cell_type"] != "code" or "exercises.check(" not in source or not STUB_RE.search(source):
                continue
            namespace = dict(torch=torch, math=math, np=np, stats=stats, exercises=exercises)
            exec(compile(source.replace("# NBVAL_CHECK_OUTPUT\n", ""), path.name, "exec"), namespace)
            out = capsys.readouterr().out
            key = re.search(r"check\(\"([0-9.]+)\"", source).group(1)
            assert f"… {key}" in out and "not implemented yet" in out, out
            ran += 1
    assert ran >= 10, ran


def test_unbalanced_markers_are_refused():
    with pytest.raises(ValueError, match="### BEGIN SOLUTION without ### END SOLUTION"):
        student.strip_code("x = 1\n### BEGIN SOLUTION\ny = 2\n")
    with pytest.raises(ValueError, match="unbalanced"):
        student.strip_markdown("text <!-- BEGIN SOLUTION --> answer")
    assert student.main(["--source", str(ROOT / "tests"), "--out", "/nonexistent/never"]) == 2


def test_stub_keeps_the_indentation_and_the_exercise_hint():
    source = "def f(x):\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION\n\n\nexercises.check(\"04.2\", f)\n"
    stubbed = student.strip_code(source)
    assert stubbed.startswith("def f(x):\n    raise NotImplementedError('exercise 04.2 (the input scaling")
    assert "return x" not in stubbed and stubbed.endswith('exercises.check("04.2", f)\n')


@pytest.mark.parametrize("path", NOTEBOOKS[1:2], ids=lambda p: p.name)
def test_student_notebook_runs_up_to_its_first_stub(edition, path, monkeypatch):
    """Quick mode, a real kernel in the notebooks' folder: every cell up to the first stub runs without error, and
    the stub's check tells the student "not implemented yet" (the check catches the stub's NotImplementedError).

    One notebook (01, the quickest) shows it end to end. For the others it follows from three tests that cost no
    kernel: the cells before a notebook's first stub are byte for byte the teacher's (the edition changes solution
    cells only: test_edition_removes_solutions_and_keeps_the_rest), which nbval runs in the same `make test`, and every
    stub's check says "not implemented yet" (test_a_check_on_a_stub_says_not_implemented). Running all eight here
    repeated nbval's work and took over two minutes."""
    monkeypatch.setenv("PFGM_LITE_QUICK", "1")
    nb = nbformat.read(edition / path.name, as_version=4)
    first = next((i for i, c in enumerate(nb.cells) if c.cell_type == "code" and STUB_RE.search(c.source)), None)
    assert first is not None, f"{path.name} has no code exercise"
    nb.cells = nb.cells[: first + 1]
    client = NotebookClient(nb, kernel_name="python3", timeout=900,
                            resources={"metadata": {"path": str(ROOT / "notebooks")}})
    client.execute()                                     # raises CellExecutionError on any failing cell
    printed = "".join(o.get("text", "") for o in nb.cells[first].outputs if o.get("output_type") == "stream")
    assert "not implemented yet" in printed, printed

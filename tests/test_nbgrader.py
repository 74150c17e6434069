"""The nbgrader course folder (`python -m pfgm_lite.teaching.student --nbgrader`): solution cells split into nbgrader's
answer and test cells, and nbgrader's own `generate_assignment` on it leaves no solution in the release.

The unit tests need no nbgrader. The others run nbgrader from its own environment, named by PFGM_LITE_NBGRADER (the
path to a `nbgrader` command), and skip without it: `make test-nbgrader` creates build/nbgrader-venv and sets it."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pfgm_lite.teaching import student

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
CODE_STUB, TEXT_STUB = "raise NotImplementedError()", "YOUR ANSWER HERE"       # nbgrader 0.9's defaults


def source_of(cell: dict) -> str:
    return cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])


def nbgrader(cell: dict) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------------------------------
# the checker: which solution lines a released notebook still holds
# --------------------------------------------------------------------------------------------------

def _regions(source: str) -> tuple[list[str], list[str]]:
    """(lines inside solution regions, lines outside them), by nbgrader's rule: a line holding BEGIN / END SOLUTION."""
    inside, outside, within = [], [], False
    for line in source.splitlines():
        if "BEGIN SOLUTION" in line:
            within = True
        elif "END SOLUTION" in line:
            within = False
        else:
            (inside if within else outside).append(line.strip())
    return inside, outside


def solution_lines(nb: dict) -> set[str]:
    """The non-trivial lines of a notebook's solutions: inside the markers, or a whole marker-less solution cell,
    less any line that the notebook also has outside its solutions (a leak of those would prove nothing)."""
    inside, outside = [], []
    for cell in nb["cells"]:
        source = source_of(cell)
        if nbgrader(cell).get("solution") and "BEGIN SOLUTION" not in source:
            inside += [line.strip() for line in source.splitlines()]
            continue
        cell_in, cell_out = _regions(source)
        inside, outside = inside + cell_in, outside + cell_out
    return {line for line in inside if len(line) >= 6} - set(outside)


def leaks(lines: set[str], released: dict) -> list[str]:
    """The solution lines that the released notebook still holds (line by line), and any marker left in it."""
    text = [line.strip() for cell in released["cells"] for line in source_of(cell).splitlines()]
    markers = [line for line in text if "BEGIN SOLUTION" in line or "END SOLUTION" in line]
    return sorted(lines & set(text)) + markers


# --------------------------------------------------------------------------------------------------
# unit tests: the split, on a small notebook (no nbgrader needed)
# --------------------------------------------------------------------------------------------------

def cell(cell_type: str, source: str, cell_id: str, **extra) -> dict:
    out = {"cell_type": cell_type, "id": cell_id, "metadata": {}, "source": source.splitlines(keepends=True)}
    if cell_type == "code":
        out |= {"execution_count": 3, "outputs": []}
    return out | extra


CHECKED = ('# NBVAL_CHECK_OUTPUT\ndef scale(z):\n    ### BEGIN SOLUTION\n    return 1 / (1 + z) ** 0.5\n'
           '    ### END SOLUTION\n\n\nexercises.check("04.2", scale)')
OUTPUTS = [{"name": "stdout", "output_type": "stream", "text": ["✓ 04.2 (the input scaling): right\n"]},
           {"data": {"text/plain": ["True"]}, "execution_count": 3, "metadata": {}, "output_type": "execute_result"}]
SYNTHETIC = {"metadata": {"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}},
             "nbformat": 4, "nbformat_minor": 5, "cells": [
    cell("markdown", "# A notebook", "intro"),
    cell("code", "import math", "imports"),
    cell("code", CHECKED, "ex2", outputs=OUTPUTS),
    cell("markdown", "**Exercise 3** *(derive)*. Why?\n\n<!-- BEGIN SOLUTION -->\n**Answer.** Because the "
                     "scale is one.\n<!-- END SOLUTION -->\n\nOn to section 4.", "why"),
    cell("code", "### BEGIN SOLUTION\nprint(scale(2.0) * math.pi)\n### END SOLUTION", "explore"),
    cell("markdown", "<!-- BEGIN SOLUTION --> **Answer.** It shrinks like one over root z. <!-- END SOLUTION -->",
         "inline"),
    cell("code", 'def again(z):\n    ### BEGIN SOLUTION\n    return z * 17\n    ### END SOLUTION\n'
                 'print("extra")\nexercises.check("04.2", again)', "unclean"),
]}


@pytest.fixture(scope="module")
def split():
    return student.nbgrader_notebook(SYNTHETIC)


def test_cells_without_a_solution_stay_as_they_are(split):
    assert split["metadata"] == SYNTHETIC["metadata"]
    assert split["cells"][:2] == SYNTHETIC["cells"][:2]
    assert [c["id"] for c in split["cells"]] == ["intro", "imports", "ex2", "ex2-test", "why", "why-answer",
                                                 "why-after", "explore", "inline", "unclean"]


def test_a_checked_exercise_becomes_an_answer_cell_and_a_locked_test_cell(split):
    answer, test = split["cells"][2:4]
    assert nbgrader(answer) == {"grade": False, "grade_id": "ex-04-2-answer", "locked": False, "schema_version": 3,
                                "solution": True, "task": False}
    assert nbgrader(test) == {"grade": True, "grade_id": "ex-04-2-test", "locked": True, "points": 1,
                              "schema_version": 3, "solution": False, "task": False}
    assert source_of(answer) == "def scale(z):\n    ### BEGIN SOLUTION\n    return 1 / (1 + z) ** 0.5\n" \
                                "    ### END SOLUTION"
    assert answer["outputs"] == [] and answer["execution_count"] is None
    # the check lands in the grade cell, as an assert (a wrong answer must fail the cell to score 0), with the
    # printed feedback and the nbval marker that goes with it; no solution in it
    assert source_of(test) == '# NBVAL_CHECK_OUTPUT\nassert exercises.check("04.2", scale)'
    assert test["outputs"] == OUTPUTS[:1] and test["execution_count"] == 3
    assert "SOLUTION" not in source_of(test) and "return 1 / (1 + z)" not in source_of(test)


def test_a_markdown_answer_is_split_from_its_question_and_marked_for_manual_grading(split):
    question, answer, after = split["cells"][4:7]
    assert source_of(question) == "**Exercise 3** *(derive)*. Why?" and source_of(after) == "On to section 4."
    for locked, name in ((question, "question"), (after, "after")):
        assert nbgrader(locked) == {"grade": False, "grade_id": f"cell-why-{name}", "locked": True,
                                    "schema_version": 3, "solution": False, "task": False}
    assert nbgrader(answer) == {"grade": True, "grade_id": "cell-why-answer", "locked": False, "points": 1,
                                "schema_version": 3, "solution": True, "task": False}
    assert source_of(answer) == f"{student.MD_BEGIN}\n**Answer.** Because the scale is one.\n{student.MD_END}"


def test_markers_inside_a_line_get_lines_of_their_own(split):
    """nbgrader drops a whole line that holds BEGIN SOLUTION, and never sees an END on that same line."""
    inline = split["cells"][8]
    assert source_of(inline) == f"{student.MD_BEGIN}\n**Answer.** It shrinks like one over root z.\n{student.MD_END}"
    assert nbgrader(inline)["solution"] and nbgrader(inline)["grade"]


def test_a_solution_without_a_clean_check_stays_one_answer_cell(split):
    explore, unclean = split["cells"][7], split["cells"][9]
    assert source_of(explore) == source_of(SYNTHETIC["cells"][4])
    assert nbgrader(explore)["grade_id"] == "cell-explore-answer"
    assert source_of(unclean) == source_of(SYNTHETIC["cells"][6])        # other code after the marker: no split
    assert nbgrader(unclean) == {"grade": False, "grade_id": "ex-04-2-6-answer", "locked": False,
                                 "schema_version": 3, "solution": True, "task": False}    # 04.2 again: unique


def test_grade_ids_and_cell_ids_are_unique_and_every_marker_sits_in_a_solution_cell(split):
    ids = [nbgrader(c)["grade_id"] for c in split["cells"] if nbgrader(c)]
    assert len(ids) == len(set(ids)) == 8
    assert len({c["id"] for c in split["cells"]}) == len(split["cells"])
    for c in split["cells"]:
        assert ("BEGIN SOLUTION" in source_of(c)) == bool(nbgrader(c).get("solution"))
    assert student.nbgrader_notebook(SYNTHETIC) == split                          # stable: the same ids each run


def test_check_statements():
    assert student.check_statements('\n\nexercises.check("01.1", f)\n') == ['assert exercises.check("01.1", f)']
    assert student.check_statements('exercises.check("01.1", f)\nassert exercises.check("01.2", g)') == \
        ['assert exercises.check("01.1", f)', 'assert exercises.check("01.2", g)']
    for unclean in ("", "\n\n", 'x = 1\nexercises.check("01.1", f)', 'print(exercises.check("01.1", f))', "def ("):
        assert student.check_statements(unclean) is None, unclean


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """The course folder of the real notebooks, written by the CLI."""
    out = tmp_path_factory.mktemp("course")
    assert student.main(["--nbgrader", "--source", str(ROOT / "notebooks"), "--out", str(out)]) == 0
    return out


def assignments(course: Path) -> list[str]:
    return sorted(p.name for p in (course / "source").iterdir())


def test_every_notebook_with_an_exercise_is_an_assignment(course):
    expected = [p.stem for p in NOTEBOOKS if any(student.has_solution(c) for c in read(p)["cells"])]
    assert assignments(course) == expected and "00_welcome" not in expected and len(expected) == 8
    config = (course / "nbgrader_config.py").read_text(encoding="utf-8")
    assert "c.CourseDirectory.root" in config and "InstantiateTests" in config


@pytest.mark.parametrize("path", NOTEBOOKS[1:], ids=lambda p: p.name)
def test_every_check_of_the_real_notebooks_splits_cleanly(course, path):
    original = read(path)
    nb = read(course / "source" / path.stem / path.name)
    keys = sorted(k for c in original["cells"] if c["cell_type"] == "code" and student.has_solution(c)
                  for k in student.CHECK_RE.findall(source_of(c)))
    tests = [c for c in nb["cells"] if nbgrader(c).get("grade") and c["cell_type"] == "code"]
    assert sorted(nbgrader(c)["grade_id"] for c in tests) == [f"ex-{k.replace('.', '-')}-test" for k in keys]
    assert all(source_of(c).endswith(")") and "SOLUTION" not in source_of(c) for c in tests)
    ids = [nbgrader(c)["grade_id"] for c in nb["cells"] if nbgrader(c)]
    assert len(ids) == len(set(ids)) and len({c["id"] for c in nb["cells"]}) == len(nb["cells"])
    for c in nb["cells"]:                         # nbgrader refuses a marker outside a solution cell
        assert ("SOLUTION" in source_of(c)) == bool(nbgrader(c).get("solution")), source_of(c)[:200]
    untouched = [c for c in original["cells"] if not student.has_solution(c)]
    assert [c for c in nb["cells"] if not nbgrader(c)] == untouched


def test_the_checker_finds_solution_lines_of_every_notebook(course):
    for name in assignments(course):
        nb = read(course / "source" / name / f"{name}.ipynb")
        lines = solution_lines(nb)
        assert len(lines) >= 4, name
        assert set(leaks(lines, nb)) >= lines                  # the source itself leaks them all


# --------------------------------------------------------------------------------------------------
# nbgrader's own generate_assignment (needs PFGM_LITE_NBGRADER)
# --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def nbgrader_command():
    value = os.environ.get("PFGM_LITE_NBGRADER")
    if not value:
        pytest.skip("nbgrader is not in this environment: `make test-nbgrader` installs it in build/nbgrader-venv "
                    "and runs these tests (or set PFGM_LITE_NBGRADER=/path/to/bin/nbgrader)")
    path = Path(value).resolve()
    if not os.access(path, os.X_OK):
        pytest.fail(f"PFGM_LITE_NBGRADER={value}: no nbgrader command there")
    return path


def generate(nbgrader_command: Path, course: Path, assignment: str = "*") -> subprocess.CompletedProcess:
    """`nbgrader generate_assignment` in the course folder, its environment's bin/ on PATH (nbgrader runs alembic
    from there to create the gradebook) and no user config (an empty JUPYTER_CONFIG_DIR)."""
    (course / ".jupyter").mkdir(exist_ok=True)
    env = os.environ | {"PATH": f"{nbgrader_command.parent}{os.pathsep}{os.environ.get('PATH', '')}",
                        "JUPYTER_CONFIG_DIR": str(course / ".jupyter")}
    return subprocess.run([str(nbgrader_command), "generate_assignment", assignment, "--debug"], cwd=course,
                          env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def released(nbgrader_command, course):
    run = generate(nbgrader_command, course)
    return course, run.returncode, run.stdout + run.stderr


def test_generate_assignment_runs_without_an_error_and_without_a_kernel(released):
    course, returncode, log = released
    errors = [line for line in log.splitlines() if "ERROR" in line or "Traceback" in line]
    assert returncode == 0 and not errors, log[-3000:]
    # our config was read (nbgrader only logs a broken config and goes on) and nothing ran a kernel
    assert "Applying preprocessor: ClearSolutions" in log and "Applying preprocessor: InstantiateTests" not in log
    assert not re.search(r"(?i)starting (client for )?kernel", log)
    assert sorted(p.name for p in (course / "release").iterdir()) == assignments(course)


def test_no_solution_survives_and_the_stubs_and_tests_are_there(released):
    course = released[0]
    for name in assignments(course):
        source = read(course / "source" / name / f"{name}.ipynb")
        release = read(course / "release" / name / f"{name}.ipynb")
        assert leaks(solution_lines(source), release) == [], name
        assert len(release["cells"]) == len(source["cells"]), name
        for before, after in zip(source["cells"], release["cells"]):
            meta, text = nbgrader(before), source_of(after)
            assert nbgrader(after).get("grade_id") == meta.get("grade_id"), name
            assert after.get("outputs", []) == [], name                          # ClearOutput
            if meta.get("solution") and before["cell_type"] == "code":
                assert CODE_STUB in text and "# YOUR CODE HERE" in text, (name, text)
            elif meta.get("solution"):
                assert text == TEXT_STUB, (name, text)
            else:                                           # test cells, question cells and the rest: kept
                assert text == source_of(before), (name, meta)
            if meta.get("grade") and before["cell_type"] == "code":
                assert text.splitlines()[-1].startswith("assert exercises.check(") and nbgrader(after)["locked"]


def _broken_copy(course: Path, tmp_path: Path, name: str, cell_type: str, drop_markers: bool) -> tuple[Path, int]:
    """A course folder with one assignment whose first `cell_type` answer cell lost its nbgrader metadata."""
    broken = tmp_path / "broken"
    (broken / "source").mkdir(parents=True)
    shutil.copytree(course / "source" / name, broken / "source" / name)
    shutil.copy(course / "nbgrader_config.py", broken)
    path = broken / "source" / name / f"{name}.ipynb"
    nb = read(path)
    index = next(i for i, c in enumerate(nb["cells"]) if c["cell_type"] == cell_type and nbgrader(c).get("solution"))
    cell = nb["cells"][index]
    del cell["metadata"]["nbgrader"]
    if drop_markers:                  # the answer as the whole cell, as nbgrader's docs write a markdown answer
        cell["source"] = [line for line in cell["source"] if "SOLUTION" not in line]
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False), encoding="utf-8")
    return broken, index


def test_the_checker_reports_a_solution_that_nbgrader_left_in(nbgrader_command, course, tmp_path):
    """A markdown answer without its metadata and markers: nbgrader cannot tell it is one, and releases it."""
    name = "01_poisson_equation"
    broken, index = _broken_copy(course, tmp_path, name, "markdown", drop_markers=True)
    run = generate(nbgrader_command, broken, name)
    assert run.returncode == 0, run.stderr[-3000:]
    source = read(course / "source" / name / f"{name}.ipynb")
    found = leaks(solution_lines(source), read(broken / "release" / name / f"{name}.ipynb"))
    answer = {line.strip() for line in source_of(source["cells"][index]).splitlines()} & solution_lines(source)
    assert found and set(found) == answer, found
    assert any("Green's function" in line for line in found)


def test_nbgrader_refuses_a_code_solution_outside_a_solution_cell(nbgrader_command, course, tmp_path):
    """With its markers, a code answer that lost its metadata makes nbgrader stop, rather than release it."""
    name = "01_poisson_equation"
    broken, _ = _broken_copy(course, tmp_path, name, "code", drop_markers=False)
    run = generate(nbgrader_command, broken, name)
    assert run.returncode != 0
    assert "Solution region detected in a non-solution cell" in run.stdout + run.stderr
    assert not (broken / "release" / name / f"{name}.ipynb").exists()

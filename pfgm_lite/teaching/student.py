"""The student edition of the notebooks: solutions replaced by stubs, everything else unchanged.

    python -m pfgm_lite.teaching.student [--source notebooks] [--out student]       (or: make student)

A solution lives in the notebooks between markers, so the committed notebooks run (and are tested) with it:
  in a code cell      ### BEGIN SOLUTION  ...  ### END SOLUTION   (comment lines, any indentation)
  in a markdown cell  <!-- BEGIN SOLUTION -->  ...  <!-- END SOLUTION -->
The student edition replaces each code block by `raise NotImplementedError(<hint>)` at the block's indentation
(the hint is the exercise's own, from pfgm_lite.exercises, when the cell calls exercises.check), each markdown block
by "*Your answer here.*", and clears the outputs of every cell that held a solution. Every other cell, and the
notebook's metadata, stay byte-for-byte as they are.

    python -m pfgm_lite.teaching.student --nbgrader [--source notebooks] [--out build/nbgrader]

writes an nbgrader course folder instead (pure JSON: nbgrader itself is not needed to write it): OUT/nbgrader_config.py
and OUT/source/<assignment>/<assignment>.ipynb, one assignment per notebook with a solution, named by the notebook's
stem (01_poisson_equation). The markers stay where they are, in cells marked with nbgrader's metadata, so that
`nbgrader generate_assignment 01_poisson_equation` (or "*"), run in OUT, replaces them by nbgrader's own stubs:
  a code cell          -> an "autograded answer" cell (the code up to its last ### END SOLUTION) and, when the rest
                          of the cell is only exercises.check(...) calls, an "autograder tests" cell (locked, 1 point)
                          with each call as `assert exercises.check(...)`, so that a wrong answer scores 0
  a markdown cell      -> a "manually graded answer" cell (1 point) holding the markers and the answer only, after a
                          locked cell with the question (the cell's text before the markers) and before one with
                          the text after them, where there is any; nbgrader reads any line holding BEGIN SOLUTION or
                          END SOLUTION as a marker, so the <!-- ... --> markers are put on lines of their own
Every other cell stays as it is. grade_ids are stable: ex-01-1-answer / ex-01-1-test from the exercise's key, else
cell-<cell id>-... (cell-<index>-... in a notebook without cell ids).
"""
from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from pathlib import Path

CODE_BEGIN, CODE_END = "### BEGIN SOLUTION", "### END SOLUTION"
MD_BEGIN, MD_END = "<!-- BEGIN SOLUTION -->", "<!-- END SOLUTION -->"
MD_STUB = "*Your answer here.*"
CHECK_RE = re.compile(r"""exercises\.check\(\s*["']([0-9]+\.[0-9]+)["']""")


def _hint(source: str) -> str:
    """The stub's message: the exercise's hint when the cell checks a registered exercise."""
    from .exercises import EXERCISES

    match = CHECK_RE.search(source)
    if match and match.group(1) in EXERCISES:
        ex = EXERCISES[match.group(1)]
        return f"exercise {ex.key} ({ex.title}): write your code here. Hint: {ex.hint}"
    return "write your code here (see the exercise above), then run the cell again"


def strip_code(source: str) -> str:
    """Replace every ### BEGIN/END SOLUTION block of a code cell by a NotImplementedError stub."""
    lines, out, inside, hint = source.splitlines(keepends=True), [], False, _hint(source)
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        if stripped == CODE_BEGIN:
            if inside:
                raise ValueError(f"line {number}: {CODE_BEGIN} inside another solution block")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out.append(f"{indent}raise NotImplementedError({hint!r})\n")
        elif stripped == CODE_END:
            if not inside:
                raise ValueError(f"line {number}: {CODE_END} without {CODE_BEGIN}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{CODE_BEGIN} without {CODE_END}")
    return "".join(out)


def strip_markdown(source: str) -> str:
    """Replace every <!-- BEGIN/END SOLUTION --> block of a markdown cell by a placeholder."""
    pattern = re.compile(re.escape(MD_BEGIN) + r".*?" + re.escape(MD_END), re.DOTALL)
    if source.count(MD_BEGIN) != source.count(MD_END) or len(pattern.findall(source)) != source.count(MD_BEGIN):
        raise ValueError(f"unbalanced {MD_BEGIN} / {MD_END} markers")
    return pattern.sub(MD_STUB, source)


def has_solution(cell: dict) -> bool:
    """True when a cell holds a solution block."""
    source = "".join(cell.get("source", []))
    marker = CODE_BEGIN if cell["cell_type"] == "code" else MD_BEGIN
    return any(line.strip() == marker for line in source.splitlines()) if cell["cell_type"] == "code" \
        else marker in source


def student_notebook(nb: dict) -> dict:
    """A copy of the notebook (parsed JSON) with its solutions stubbed and their cells' outputs cleared."""
    out = json.loads(json.dumps(nb))
    for cell in out["cells"]:
        if not has_solution(cell):
            continue
        source = "".join(cell["source"])
        new = strip_code(source) if cell["cell_type"] == "code" else strip_markdown(source)
        cell["source"] = new.splitlines(keepends=True)
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    return out


def numbered_notebooks(source: Path, out: Path) -> list[Path]:
    """The NN_*.ipynb of `source` in order; refuses an empty `source` and an `out` equal to it (before any work)."""
    notebooks = sorted(source.glob("[0-9][0-9]_*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"no notebooks (NN_name.ipynb) in {source}")
    if out.resolve() == source.resolve():
        raise ValueError(f"out must differ from source ({source}): writing there would overwrite the solutions")
    return notebooks


def write_student_edition(source: str | Path = "notebooks", out: str | Path = "student") -> list[Path]:
    """Write the student edition of every NN_*.ipynb in `source` into `out`; returns the paths written."""
    source, out = Path(source), Path(out)
    notebooks = numbered_notebooks(source, out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in notebooks:
        nb = student_notebook(json.loads(path.read_text(encoding="utf-8")))
        target = out / path.name
        target.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(target)
    return written


NBGRADER_SCHEMA = 3
NBGRADER_CONFIG = """\
# nbgrader's configuration for this course folder, written by `python -m pfgm_lite.teaching.student --nbgrader`
# (rewritten on each run). From this folder: nbgrader generate_assignment 01_poisson_equation   (or "*": all of them)
import os

from nbgrader.converters import GenerateAssignment

c = get_config()  # noqa: F821 (traitlets defines it)
c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.course_id = "pfgm-lite"
# No kernel: the notebooks import torch, which nbgrader's environment need not have. generate_assignment executes
# nothing by default except InstantiateTests, which starts a kernel when a code cell holds AUTOTEST: leave it out.
# (nbgrader only logs an error in this file, and goes on without it: `nbgrader generate_assignment` prints it.)
default = GenerateAssignment.class_traits()["preprocessors"].make_dynamic_default()
c.GenerateAssignment.preprocessors = [p for p in default if p.__name__ != "InstantiateTests"]
"""


def nbgrader_metadata(grade_id: str, *, solution: bool, grade: bool, locked: bool) -> dict:
    """nbgrader's cell metadata (schema 3); a grade cell is worth 1 point."""
    meta = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": NBGRADER_SCHEMA,
            "solution": solution, "task": False}
    return {**meta, "points": 1} if grade else meta


def _with(cell: dict, source: str, meta: dict, suffix: str = "") -> dict:
    """A copy of `cell` with a new source and nbgrader metadata; a suffix makes its cell id a new one."""
    out = json.loads(json.dumps(cell))
    out["source"] = source.splitlines(keepends=True)
    out["metadata"] = {**out.get("metadata", {}), "nbgrader": meta}
    if suffix and "id" in out:
        out["id"] = f"{out['id']}-{suffix}"
    return out


def _is_check(node: ast.stmt) -> bool:
    """True for a statement `exercises.check(...)` or `assert exercises.check(...)`."""
    call = node.value if isinstance(node, ast.Expr) else node.test if isinstance(node, ast.Assert) else None
    return isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "check" \
        and isinstance(call.func.value, ast.Name) and call.func.value.id == "exercises"


def check_statements(code: str) -> list[str] | None:
    """The code's statements as `assert exercises.check(...)` lines when it holds only such checks, else None."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    if not tree.body or not all(_is_check(node) for node in tree.body):
        return None
    segments = [ast.get_source_segment(code, node) for node in tree.body]
    return [s if isinstance(node, ast.Assert) else f"assert {s}" for node, s in zip(tree.body, segments)]


def split_code_cell(cell: dict, base: str) -> list[dict]:
    """An autograded answer cell, and an autograder tests cell for the checks after the last ### END SOLUTION."""
    lines = "".join(cell["source"]).splitlines(keepends=True)
    end = max(i for i, line in enumerate(lines) if line.strip() == CODE_END)
    checks = check_statements("".join(lines[end + 1:]))
    if checks is None:                                   # no clean split: the whole cell is the answer
        return [_with(cell, "".join(lines), nbgrader_metadata(f"{base}-answer", solution=True, grade=False,
                                                                locked=False))]
    nbval = [line for line in lines[:end] if line.startswith("# NBVAL_")]    # they go with the outputs
    answer = _with(cell, "".join(line for line in lines[: end + 1] if line not in nbval).rstrip("\n"),
                   nbgrader_metadata(f"{base}-answer", solution=True, grade=False, locked=False))
    answer["outputs"], answer["execution_count"] = [], None
    test = _with(cell, "".join(nbval) + "\n".join(checks),
                 nbgrader_metadata(f"{base}-test", solution=False, grade=True, locked=True), "test")
    test["outputs"] = [o for o in cell.get("outputs", []) if o.get("output_type") != "execute_result"]
    return [answer, test]


def split_markdown_cell(cell: dict, base: str) -> list[dict]:
    """A manually graded answer cell (the markers and the answer), between locked cells with the text around it."""
    source = "".join(cell["source"])
    strip_markdown(source)                               # raises on unbalanced markers
    start, stop = source.index(MD_BEGIN), source.rindex(MD_END) + len(MD_END)
    before, after = source[:start].rstrip(), source[stop:].strip()
    answer = re.sub(r"\s*(" + re.escape(MD_BEGIN) + "|" + re.escape(MD_END) + r")\s*", "\n\\1\n",
                    source[start:stop]).strip()
    locked = {name: nbgrader_metadata(f"{base}-{name}", solution=False, grade=False, locked=True)
              for name in ("question", "after")}
    cells = [_with(cell, before, locked["question"])] if before else []
    cells.append(_with(cell, answer, nbgrader_metadata(f"{base}-answer", solution=True, grade=True, locked=False),
                       "answer" if before else ""))
    return cells + ([_with(cell, after, locked["after"], "after")] if after else [])


def _base_id(cell: dict, index: int, taken: set[str]) -> str:
    """The grade_id's stem: ex-04-2 from the exercise a code cell checks, else the cell's id (or index); unique."""
    match = CHECK_RE.search("".join(cell["source"])) if cell["cell_type"] == "code" else None
    base = f"ex-{match.group(1).replace('.', '-')}" if match else f"cell-{cell.get('id', index)}"
    base = f"{base}-{index}" if base in taken else base
    taken.add(base)
    return base


def nbgrader_notebook(nb: dict) -> dict:
    """A copy of the notebook (parsed JSON) whose solution cells are split into nbgrader's answer and test cells."""
    out, taken = json.loads(json.dumps(nb)), set()
    cells = []
    for index, cell in enumerate(out["cells"]):
        if not has_solution(cell):
            cells.append(cell)
            continue
        split = split_code_cell if cell["cell_type"] == "code" else split_markdown_cell
        cells.extend(split(cell, _base_id(cell, index, taken)))
    out["cells"] = cells
    return out


def write_nbgrader_source(source: str | Path = "notebooks", out: str | Path = "build/nbgrader") -> list[Path]:
    """Write OUT/nbgrader_config.py and OUT/source/<stem>/<stem>.ipynb for every notebook with a solution."""
    source, out = Path(source), Path(out)
    notebooks = numbered_notebooks(source, out)
    written = []
    for path in notebooks:
        nb = json.loads(path.read_text(encoding="utf-8"))
        if not any(has_solution(cell) for cell in nb["cells"]):
            continue
        target = out / "source" / path.stem / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(nbgrader_notebook(nb), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(target)
    (out / "nbgrader_config.py").write_text(NBGRADER_CONFIG, encoding="utf-8")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pfgm_lite.teaching.student", description=__doc__.split("\n")[0])
    parser.add_argument("--source", default="notebooks", help="folder of the notebooks with solutions")
    parser.add_argument("--out", help="folder for the edition (default: student, or build/nbgrader with --nbgrader)")
    parser.add_argument("--nbgrader", action="store_true", help="write an nbgrader course folder (source/, config)")
    args = parser.parse_args(argv)
    out = args.out or ("build/nbgrader" if args.nbgrader else "student")
    try:
        written = (write_nbgrader_source if args.nbgrader else write_student_edition)(args.source, out)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.nbgrader:
        print(f"wrote {len(written)} nbgrader assignments to {out}/source/ and {out}/nbgrader_config.py;"
              f" then: cd {out} && nbgrader generate_assignment '*'")
    else:
        print(f"wrote {len(written)} student notebooks to {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())

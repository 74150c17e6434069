"""The student edition of the notebooks: solutions replaced by stubs, everything else unchanged.

    python -m pfgm_lite.teaching.student [--source notebooks] [--out student]       (or: make student)

A solution lives in the notebooks between markers, so the committed notebooks run (and are tested) with it:
  in a code cell      ### BEGIN SOLUTION  ...  ### END SOLUTION   (comment lines, any indentation)
  in a markdown cell  <!-- BEGIN SOLUTION -->  ...  <!-- END SOLUTION -->
The student edition replaces each code block by `raise NotImplementedError(<hint>)` at the block's indentation
(the hint is the exercise's own, from pfgm_lite.exercises, when the cell calls exercises.check), each markdown block
by "*Your answer here.*", and clears the outputs of every cell that held a solution. Every other cell, and the
notebook's metadata, stay byte-for-byte as they are.
"""
from __future__ import annotations

import argparse
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


def write_student_edition(source: str | Path = "notebooks", out: str | Path = "student") -> list[Path]:
    """Write the student edition of every NN_*.ipynb in `source` into `out`; returns the paths written."""
    source, out = Path(source), Path(out)
    notebooks = sorted(source.glob("[0-9][0-9]_*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"no notebooks (NN_name.ipynb) in {source}")
    if out.resolve() == source.resolve():
        raise ValueError(f"out must differ from source ({source}): the edition would overwrite the solutions")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in notebooks:
        nb = student_notebook(json.loads(path.read_text(encoding="utf-8")))
        target = out / path.name
        target.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pfgm_lite.teaching.student", description=__doc__.split("\n")[0])
    parser.add_argument("--source", default="notebooks", help="folder of the notebooks with solutions")
    parser.add_argument("--out", default="student", help="folder for the student edition (git-ignored)")
    args = parser.parse_args(argv)
    try:
        written = write_student_edition(args.source, args.out)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(written)} student notebooks to {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())

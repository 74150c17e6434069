"""ruff (pyproject.toml's [tool.ruff]: pyflakes, pycodestyle's errors, import sorting) finds nothing in the package,
the tests, the benchmarks, the notebooks and the book's scripts; and it is a check that can fail."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PATHS = ["pfgm_lite", "tests", "benchmarks", "notebooks", "book", "conftest.py"]


def ruff(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def test_the_code_is_clean():
    done = ruff(*PATHS)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def test_ruff_reports_an_unused_import_and_unsorted_imports(tmp_path):
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    (tmp_path / "bad.py").write_text("import sys\nimport os\n\nprint(os.sep)\n")
    out = ruff("bad.py", cwd=tmp_path).stdout
    assert "F401" in out and "I001" in out

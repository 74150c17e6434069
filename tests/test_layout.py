"""The package's layout: imports run downhill (no circle, lazy imports included), the method base knows no method,
notebook-only code is imported only from the top, every method is registered, and the names older notebooks
import still work."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

import pfgm_lite

PACKAGE = Path(pfgm_lite.__file__).parent
ROOT = PACKAGE.parent
OLD_NAMES = ("diffusion", "pfgmpp", "exercises", "plotting", "widgets", "student")   # kept for older notebooks


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """The pfgm_lite modules a file imports, at the top or inside functions."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("pfgm_lite"):
                for alias in node.names:          # `from . import flows` imports a module
                    sub = f"{target}.{alias.name}"
                    found.add(sub if (ROOT / (sub.replace(".", "/") + ".py")).exists()
                              or (ROOT / sub.replace(".", "/")).is_dir() else target)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("pfgm_lite")}
    found.discard(name)
    return found


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}


def find_circle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt == "pfgm_lite":          # the package face holds only __version__
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_imports_run_downhill():
    assert find_circle(graph()) is None, find_circle(graph())


def test_the_circle_finder_finds_a_circle():
    # the old layout: methods imported EDM and PFGM++ (lazily) to rebuild them, and both imported methods
    old = {"pfgm_lite.methods": {"pfgm_lite.diffusion", "pfgm_lite.pfgmpp"}, "pfgm_lite.diffusion":
           {"pfgm_lite.methods"}, "pfgm_lite.pfgmpp": {"pfgm_lite.diffusion"}}
    assert find_circle(old) == ["pfgm_lite.diffusion", "pfgm_lite.methods", "pfgm_lite.diffusion"]


def test_the_method_base_knows_no_method_and_the_core_no_teaching_code():
    edges = graph()
    assert edges["pfgm_lite.methods.base"] <= {"pfgm_lite.checks"}
    shims = {f"pfgm_lite.{name}" for name in OLD_NAMES}
    for module, targets in edges.items():
        if module.startswith("pfgm_lite.teaching") or module in shims | {"pfgm_lite.cli"}:
            continue
        assert not any(t.startswith("pfgm_lite.teaching") for t in targets), (module, targets)


def test_every_method_is_registered_and_rebuilds_from_its_config():
    from pfgm_lite import methods

    assert {"pfgm", "edm", "pfgmpp"} <= set(methods.METHODS)
    from pfgm_lite import recipes
    from pfgm_lite.data import sample_toy
    from pfgm_lite.perturb import hyperparameters_for

    data = sample_toy("moons", 100)
    for method in (methods.PFGM(hyperparameters_for(data), (2,)), recipes.toy_edm(data),
                   recipes.toy_pfgmpp(data)):
        again = methods.method_from_config(method.to_config())
        assert type(again) is type(method) and again.to_config() == method.to_config()
    with pytest.raises(TypeError, match="two methods are named 'edm'"):
        type("AnotherEDM", (methods.EDM,), {"name": "edm"})


@pytest.mark.parametrize("old, new, names", [
    ("diffusion", "methods", ["EDM", "Denoiser", "EDM_IMAGE_DEFAULTS"]),
    ("diffusion", "sampling", ["ancestral_sample", "ddpm_alpha_bars"]),
    ("pfgmpp", "methods", ["PFGMpp", "sample_kernel_radius", "uniform_directions"]),
    ("exercises", "teaching.exercises", ["check", "EXERCISES", "list_exercises"]),
    ("plotting", "teaching.plotting", ["show_images", "plot_paths"]),
    ("widgets", "teaching.widgets", ["field_line_explorer", "PRESETS", "parse_charges"]),
    ("student", "teaching.student", ["main", "write_student_edition"]),
    ("flows", "physics", ["augment"]),
    ("train", "checkpoint", ["load_model", "load_checkpoint", "save_checkpoint"]),
])
def test_the_names_older_notebooks_import_still_work(old, new, names):
    import importlib

    before, now = importlib.import_module(f"pfgm_lite.{old}"), importlib.import_module(f"pfgm_lite.{new}")
    for name in names:
        assert getattr(before, name) is getattr(now, name), name


def test_a_moved_digits_name_says_where_it_went():
    from pfgm_lite import metrics

    with pytest.raises(AttributeError, match=r"pfgm_lite.metrics.digit_classifier moved to "
                                             r"pfgm_lite.digits.digit_classifier"):
        metrics.digit_classifier  # noqa: B018


def test_every_notebook_calls_return_freed_memory_in_its_first_cell_after_the_colab_set_up():
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        code = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
        assert 'find_spec("pfgm_lite")' in "".join(code[0]["source"]), path.name   # the Colab set-up comes first
        assert "return_freed_memory()" in "".join(code[1]["source"]), path.name

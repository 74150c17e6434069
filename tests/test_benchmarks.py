"""The benchmark scripts run end to end in their --quick form (tiny training, few samples), write results files of
the shape the notebooks read, and resume instead of recomputing. The full runs take hours; these take seconds."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pfgm_lite import recipes, stats

ROOT = Path(__file__).resolve().parents[1]


def run(script: str, *args: str, cwd: Path) -> str:
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], cwd=cwd, capture_output=True,
                         text=True, timeout=600, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_ablation_quick_writes_every_variant_and_resumes(tmp_path):
    args = ("--quick", "--data", "moons", "--seeds", "0", "--out-dir", str(tmp_path / "results"),
            "--runs", str(tmp_path / "runs"))
    run("ablation.py", *args, cwd=tmp_path)
    results = json.loads((tmp_path / "results" / "ablation-moons.json").read_text())
    variants = results["meta"]["variants"]
    assert len(variants) == 12 and variants["paper"]["z_velocity"] == "paper" and variants["ours"]["clip"] == "ray"
    rows = results["rows"]
    assert {(r["variant"], r["solver"]) for r in rows} == {(v, s) for v in variants for s in ("heun", "rk45")}
    assert len({r["train"] for r in rows}) == 8                         # 3 training switches, one at a time
    assert all(r["sw"] > 0 and (math.isfinite(r["sw"]) or r.get("failed") or r["far"] > 0) for r in rows)
    assert run("ablation.py", *args, cwd=tmp_path).strip() == ""         # the finished seed is not redone


def test_quality_vs_nfe_quick_tunes_then_compares(tmp_path):
    common = ("--quick", "--out-dir", str(tmp_path / "results"), "--runs", str(tmp_path / "runs"))
    out = run("quality_vs_nfe.py", "--tune", *common, cwd=tmp_path)
    tuning = json.loads((tmp_path / "results" / "tuning.json").read_text())
    assert set(tuning["best"]) == {"edm", "pfgm"} and "tuned:" in out
    assert {r["data"] for r in tuning["rows"]} == {"moons", "checkerboard"}   # the tuning never sees other sets
    run("quality_vs_nfe.py", "--data", "8gaussians", "--seeds", "0", "--methods", "pfgm", "pfgmpp-D8", "edm",
        *common, cwd=tmp_path)
    rows = json.loads((tmp_path / "results" / "quality_vs_nfe-8gaussians.json").read_text())["rows"]
    assert {r["method"] for r in rows} == {"pfgm", "pfgmpp-D8", "edm", "ddpm"}
    assert {r["solver"] for r in rows if r["method"] == "ddpm"} == {"ancestral"}
    assert {r["solver"] for r in rows if r["method"] == "edm"} == {"euler", "heun", "rk45"}
    assert all("rms_mode" in r or not math.isfinite(r["sw"]) for r in rows)   # eight Gaussians: mode statistics


def test_compare_quick_tunes_on_validation_then_pairs_every_method_and_resumes(tmp_path):
    common = ("--quick", "--out-dir", str(tmp_path / "out"), "--runs", str(tmp_path / "runs"),
              "--summary", str(tmp_path / "summary.json"), "--seeds", "0", "1", "--data", "moons")
    run("compare.py", *common, cwd=tmp_path)
    tuning_files = sorted(p.name for p in (tmp_path / "out" / "tuning").glob("*.json"))
    methods = ("ddpm", "edm", "flow_matching", "pfgm", "pfgmpp")
    assert tuning_files == sorted(f"{d}-{m}.json" for d in ("checkerboard", "moons") for m in methods)
    summary = json.loads((tmp_path / "summary.json").read_text())
    # every (method, family) the docstring lists was tuned, and scored on each seed of the test set
    assert {m: set(f) for m, f in summary["tuned"].items()} == {
        "pfgm": {"geometric", "rho"}, "edm": {"ode", "churn"}, "pfgmpp": {"ode"}, "flow_matching": {"ode"},
        "ddpm": {"ddim", "ancestral"}}
    assert summary["seeds"] == {f"moons/{m}": [0, 1] for m in methods}
    assert not summary["meta"]["complete_main"]                          # 2 seeds of 5, one data set of 3
    assert summary["meta"]["data"] == ["moons"] and summary["meta"]["held_out"] == ["ring", "spiral"]
    assert not summary["meta"]["complete_held_out"]
    rows = [r for r in summary["rows"] if r["metric"] == "sw"]
    assert {r["sampler"] for r in rows} == {"euler", "heun", "rk45", "ddim", "ancestral", "churn"}
    for r in rows:
        assert set(r) >= {"data", "method", "sampler", "nfe", "metric", "mean", "ci_low", "ci_high", "n_seeds"}
        if r["ci_low"] is not None:
            assert r["ci_low"] <= r["mean"] <= r["ci_high"] and r["n_seeds"] == 2
    # pairs: PFGM's grids against every other method at equal solver and NFE, both metrics, a verdict each
    pairs = summary["pairs"]
    assert {p["b"] for p in pairs} == {"edm-ode", "pfgmpp-ode", "flow_matching-ode", "ddpm-ddim"}
    assert {p["metric"] for p in pairs} == {"sw", "energy"}
    assert all(p["verdict"] == ("tie" if p["ci_low"] <= 0 <= p["ci_high"] else
                                "ahead" if p["ci_high"] < 0 else "behind") for p in pairs)
    assert all(p["nfe"] in (2, 4) for p in pairs if p["sampler"] == "euler")
    assert summary["spread"] and all(s["evaluation_n"] == 5 and s["training_n"] == 2 for s in summary["spread"])
    cost = {c["method"]: c for c in summary["cost"]}
    assert cost["pfgm"]["train_flops_per_step"] > cost["edm"]["train_flops_per_step"]   # the large-batch target
    # a finished task is not redone: the second run trains nothing and writes the same summary
    again = run("compare.py", *common, cwd=tmp_path)
    assert "tuned" not in again and "best SW" not in again
    assert json.loads((tmp_path / "summary.json").read_text())["rows"] == summary["rows"]
    # straightness.py measures the paths of those networks (loaded, not retrained) and pairs PFGM's levers
    checkpoints = {c: c.read_bytes() for c in (tmp_path / "runs").glob("*/checkpoint.pt")}
    assert checkpoints
    run("straightness.py", "--quick", "--compare-runs", str(tmp_path / "runs"), "--summary",
        str(tmp_path / "summary.json"), "--data", "moons", "--seeds", "0", "1", "--out", str(tmp_path / "s.json"),
        cwd=tmp_path)
    paths = json.loads((tmp_path / "s.json").read_text())
    labels = {r["label"] for r in paths["rows"]}
    assert {"pfgm rho (tuned)", "edm", "pfgmpp", "flow matching", "pfgm radius clip"} <= labels
    assert {r["lever"] for r in paths["rows"]} == {"tuned", "grid", "start height", "prior's tail"}
    assert {c: c.read_bytes() for c in (tmp_path / "runs").glob("*/checkpoint.pt")} == checkpoints  # none rewritten
    for r in paths["rows"]:
        assert r["seeds"] == [0, 1] and len(r["local_mean"]) == 20
        assert r["ref_check_mean"] < r["global_error_mean"]              # the reference beats 20 Euler steps
    # every configuration is paired with the tuned PFGM seed by seed: the interval is that of the per-seed
    # differences of the logs (pairing the wrong seeds, or taking means first, gives another interval)
    by_label = {r["label"]: r for r in paths["rows"] if r["data"] == "moons"}
    assert {p["a"] for p in paths["pairs"]} == set(by_label) - {"pfgm rho (tuned)"}
    for p in paths["pairs"]:
        a, b = by_label[p["a"]][p["stat"]], by_label["pfgm rho (tuned)"][p["stat"]]
        mean, low, high = stats.t_interval([math.log(x) - math.log(y) for x, y in zip(a, b)])
        assert (p["diff_mean"], p["ci_low"], p["ci_high"]) == pytest.approx((mean, low, high), rel=1e-9, abs=1e-12)


def test_straightness_sees_a_straight_line_and_the_grid_that_bends_it():
    # flow matching's exact velocity for one data point runs a straight line at constant speed in t: 20 Euler steps on
    # equal steps in t are exact; on the rho 3 grid the same line is run at varying speed in u and Euler errs; two
    # data points bend the lines (straightness > 1)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import straightness

    from pfgm_lite.methods import FlowMatching

    one = torch.tensor([[1.0, -0.5]], dtype=torch.float64)
    two = torch.tensor([[1.0, -0.5], [-1.0, 0.5]], dtype=torch.float64)
    method = FlowMatching((2,))

    def measure(points, rho):
        return straightness.measure(method, lambda m: m.exact_predictor(points), dict(rho=rho), 50, 0, None, 1.0,
                                    ref_steps=200, check=True, dtype=torch.float64, t_min=1e-3)

    straight, bent_grid, two_points = measure(one, 1.0), measure(one, 3.0), measure(two, 1.0)
    assert abs(straight["straightness"] - 1) < 1e-9 and straight["local_sum"] < 1e-9
    assert abs(bent_grid["straightness"] - 1) < 1e-9 and bent_grid["local_sum"] > 1e-2
    assert two_points["straightness"] > 1.01 and two_points["local_sum"] > 1e-3


def test_straightness_refuses_bad_input_before_any_work(tmp_path):
    # an unknown set, too few samples, or a missing trained network: exit 2 with the argument named, nothing written
    def refused(*args: str) -> str:
        out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "straightness.py"), *args,
                              "--compare-runs", str(tmp_path), "--out", str(tmp_path / "out.json")], cwd=tmp_path,
                             capture_output=True, text=True, timeout=300,
                             env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
        assert out.returncode == 2 and not (tmp_path / "out.json").exists(), (out.returncode, out.stderr[-2000:])
        return out.stderr

    assert "--data: invalid choice: 'nope'" in refused("--data", "nope")
    assert "--samples: expected at least 10 samples per measurement, got 3" in refused("--samples", "3")
    assert "--seeds: each value once, got 0 0" in refused("--seeds", "0", "0")
    assert "--data: each value once, got ring ring" in refused("--data", "ring", "ring")
    bad = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "straightness.py"), "--compare-runs",
                          str(tmp_path), "--out", str(tmp_path / "no" / "such" / "out.json")], capture_output=True,
                         text=True, timeout=300, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert bad.returncode == 2 and "--out: expected a file to write in an existing, writable folder" in bad.stderr
    (tmp_path / "summary.json").write_text('{"rows": []}')
    assert "is not compare.py's summary" in refused("--summary", str(tmp_path / "summary.json"))
    missing = refused("--data", "ring", "--seeds", "0")       # tmp_path holds no networks: the real summary's tuning
    assert "--compare-runs: 4 trained networks are missing, first " in missing and "ring-" in missing


def test_digits_scores_any_method_and_stores_its_sampler(tmp_path):
    # a 2-step EDM from the command line, scored with a tuned sampler start and grid; a PFGM has no sigma_max
    assert subprocess.run([sys.executable, "-m", "pfgm_lite", "train", "--data", "digits", "--method", "edm",
                           "--steps", "2", "--batch-size", "8", "--large-batch-size", "64", "--device", "cpu",
                           "--out", str(tmp_path / "run")], cwd=ROOT, capture_output=True, timeout=300,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}).returncode == 0
    out_file = tmp_path / "digits.json"
    out = run("digits.py", "--samplers", "euler:3,heun:2", "--checkpoint", str(tmp_path / "run"), "--n", "20",
              "--sigma-max", "20", "--rho", "5", "--label", "edm tuned", "--out", str(out_file), cwd=tmp_path)
    assert "sampler: sigma_max 20, rho 5 (trained with sigma_max 80, rho 7)" in out
    model = json.loads(out_file.read_text())["models"]["edm tuned"]
    assert model["method"]["sigma_max"] == 80 and model["sampler"]["sigma_max"] == 20 and model["sampler"]["rho"] == 5
    assert [r["sampler"] for r in model["rows"]] == ["euler 3", "heun 2"] and model["rows"][1]["nfe"] == 4
    assert all(math.isfinite(r["fid"]) and 0 <= r["confident"] <= 1 for r in model["rows"])
    failed = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "digits.py"), "--n", "20",
                             "--checkpoint", str(recipes.ten_minute_digits_path()), "--sigma-max", "5"],
                            capture_output=True, text=True, timeout=300,
                            env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert failed.returncode == 2 and "sampler setting of EDM and PFGM++, the checkpoint holds pfgm" in failed.stderr
    # a PFGM on the rho grid in z (the grid compare.py tuned), stored with the rows
    out = run("digits.py", "--samplers", "heun:2", "--checkpoint", str(recipes.ten_minute_digits_path()), "--n", "20",
              "--rho", "3", "--label", "pfgm rho 3", "--out", str(out_file), cwd=tmp_path)
    assert "sampler: rho 3 (pfgm: its own grid is geometric in z)" in out
    model = json.loads(out_file.read_text())["models"]["pfgm rho 3"]
    assert model["sampler"]["rho"] == 3 and model["sampler"]["name"] == "pfgm" and model["rows"][0]["nfe"] == 4
    assert "edm tuned" in json.loads(out_file.read_text())["models"]
    bad = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "digits.py"), "--samplers", "heun"],
                         capture_output=True, text=True, timeout=300,
                         env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert bad.returncode != 0 and "--samplers takes euler:STEPS, heun:STEPS or rk45, got 'heun'" in bad.stderr


@pytest.mark.parametrize("args, message", [
    (["--rho", "nan"], "--rho must be finite and > 0, got nan"),
    (["--rho", "inf"], "--rho must be finite and > 0, got inf"),
    (["--rho", "-1"], "--rho must be finite and > 0, got -1.0"),
    (["--sigma-max", "0"], "--sigma-max must be finite and > 0, got 0.0"),
    (["--rho", "3", "--samplers", "rk45"], "--rho sets the fixed-step solvers' grid"),
])
def test_digits_refuses_a_bad_sampler_setting_before_loading_anything(args, message, tmp_path):
    # the checkpoint does not exist: a refusal that came after loading it would name the checkpoint instead
    bad = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "digits.py"), "--checkpoint",
                          str(tmp_path / "missing"), *args], capture_output=True, text=True, timeout=300,
                         env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert bad.returncode == 2 and message in bad.stderr, bad.stderr


def test_memory_finds_the_cell_that_holds_the_memory(tmp_path):
    # a notebook whose second cell allocates 400 MB and keeps it: the peak includes it (a watcher of the wrong process,
    # or of nothing, would see the ~50 MB of an idle kernel), and the cell that grew most is that cell, although the
    # peak itself may be reached later while the memory is still held
    import nbformat
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import memory

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"),
                                         nbformat.v4.new_code_cell("import numpy as np\nheld = np.ones(50_000_000)"),
                                         nbformat.v4.new_code_cell("y = 2")])
    path = tmp_path / "big.ipynb"
    nbformat.write(nb, path)
    row = memory.run_notebook(path, inplace=False, timeout=120)
    assert row["peak_mib"] >= 400 and row["at"].startswith(("cell 1:", "cell 2:")), row
    first, grew = next(iter(row["top_cells"].items()))
    assert first.startswith("cell 1: import numpy") and grew >= 300, row      # 381 MiB allocated


def test_import_memory_sees_what_a_step_holds():
    # 200 MB kept by the step shows (a probe that read RSS before the step, or of another process, would not);
    # a module that is not installed gives None, not a number
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import import_memory

    assert import_memory.growth_mib("", "held = bytearray(200 * 2**20)", repeats=1) >= 190
    assert import_memory.growth_mib("held = bytearray(200 * 2**20)", "x = 1", repeats=1) < 20
    assert import_memory.growth_mib("", "import no_such_module_here", repeats=1) is None


def test_ema_warmup_quick_pairs_the_seeds_and_resumes(tmp_path):
    out = run("ema_warmup.py", "--quick", "--out-dir", str(tmp_path), cwd=tmp_path)
    results = json.loads((tmp_path / "ema_warmup.json").read_text())
    rows, summary = results["rows"], results["summary"]
    assert sorted((r["steps"], r["seed"]) for r in rows) == [(20, 0), (20, 1), (40, 0), (40, 1)]
    # what the two EMAs keep of the initial weights is what the schedules say: 0.999^steps without the warm-up
    assert all(math.isclose(r["fixed_init_share"], 0.999 ** r["steps"], rel_tol=1e-12) for r in rows)
    assert all(r["warmup_init_share"] < 1e-6 for r in rows)     # 9! 20! / 29! = 4e-8 after 20 steps
    for s in summary:
        assert s["ci_low"] <= s["diff_mean"] <= s["ci_high"] and s["n_seeds"] == 2
        assert s["verdict"] == ("better" if s["ci_high"] < 0 else "worse" if s["ci_low"] > 0 else "tie")
    assert "steps 20 seed 0" in out
    again = run("ema_warmup.py", "--quick", "--out-dir", str(tmp_path), cwd=tmp_path)
    assert "seed" not in again.split("\n")[0] and json.loads((tmp_path / "ema_warmup.json").read_text())["rows"] == rows

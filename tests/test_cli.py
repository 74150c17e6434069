"""Facts about `python -m pfgm_lite` (pfgm_lite/cli.py): help, a tiny train + sample run, --resume and
--export, clear failures."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import pfgm_lite.cli as cli_mod
import pfgm_lite.train as train_mod
from pfgm_lite import recipes
from pfgm_lite.checkpoint import load_checkpoint, load_model
from pfgm_lite.cli import main
from pfgm_lite.data import digit_split, sample_toy
from pfgm_lite.methods import DDPM, FlowMatching
from pfgm_lite.sampling import sample

TINY = ["train", "--data", "moons", "--steps", "20", "--n-data", "500", "--batch-size", "16",
        "--large-batch-size", "64", "--device", "cpu"]


def run_cli(*args, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run([sys.executable, "-m", "pfgm_lite", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


def help_text(capsys, *args) -> str:
    with pytest.raises(SystemExit) as exc:
        main([*args, "--help"])
    assert exc.value.code == 0
    return capsys.readouterr().out


def test_help(capsys):
    top = help_text(capsys)
    assert "train" in top and "sample" in top
    train_help = help_text(capsys, "train")
    for flag in ("--data", "--steps", "--n-data", "--batch-size", "--large-batch-size", "--recipe", "--resume"):
        assert flag in train_help
    assert "moons" in train_help  # the choices are listed
    assert "--solver" in help_text(capsys, "sample")


def test_train_then_sample(tmp_path):
    run = tmp_path / "run"
    trained = run_cli("train", "--data", "moons", "--steps", 30, "--n-data", 3000, "--batch-size", 64,
                      "--large-batch-size", 256, "--device", "cpu", "--out", run)
    assert trained.returncode == 0, trained.stderr
    assert "trained 30 steps" in trained.stdout
    ckpt = load_checkpoint(run / "checkpoint.pt")
    assert ckpt["step"] == 30 and len(ckpt["losses"]) == 30
    assert ckpt["train_config"]["batch_size"] == 64 and ckpt["train_config"]["large_batch_size"] == 256
    assert ckpt["train_config"]["lr"] == 1e-3  # the toy default

    out = tmp_path / "samples" / "s.png"
    sampled = run_cli("sample", "--run", run, "--n", 200, "--solver", "heun", "--steps", 5, "--device", "cpu",
                      "--out", out)
    assert sampled.returncode == 0, sampled.stderr
    assert "NFE = 10" in sampled.stdout
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    x = torch.load(out.with_suffix(".pt"), weights_only=True)
    assert x.shape == (200, 2) and torch.isfinite(x).all()


def same_tensors(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_continues_an_interrupted_run(tmp_path, monkeypatch):
    # The CLI checkpoints only at the end; a long run checkpointing every 10 steps is simulated by setting
    # checkpoint_every on the config the CLI builds, and a crash by raising right after the step-10 checkpoint.
    real_train, real_save = train_mod.train, train_mod.save_checkpoint
    scramble = []   # set: the network handed to train gets other weights (they must come from the checkpoint)

    def train_checkpointing_every_10(method, net, data, config, **kwargs):
        config.checkpoint_every = 10
        if scramble:
            with torch.no_grad():
                for p in net.parameters():
                    p.add_(1.0)
        return real_train(method, net, data, config, **kwargs)

    def save_then_crash(path, *args, **kwargs):
        real_save(path, *args, **kwargs)
        if args[-2] == 10:   # the step
            raise KeyboardInterrupt

    monkeypatch.setattr(cli_mod, "train", train_checkpointing_every_10)
    torch.manual_seed(0)     # the same initial weights for both runs, however the CLI draws them
    assert main([*TINY, "--out", str(tmp_path / "straight")]) == 0
    monkeypatch.setattr(train_mod, "save_checkpoint", save_then_crash)
    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        main([*TINY, "--out", str(tmp_path / "resumed")])
    monkeypatch.setattr(train_mod, "save_checkpoint", real_save)
    assert load_checkpoint(tmp_path / "resumed")["step"] == 10
    scramble.append(True)
    assert main([*TINY, "--resume", "--out", str(tmp_path / "resumed")]) == 0
    straight, resumed = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "resumed")
    assert resumed["step"] == straight["step"] == 20
    assert resumed["losses"] == straight["losses"]
    assert same_tensors(resumed["net"], straight["net"]) and same_tensors(resumed["ema"], straight["ema"])
    moments = lambda ckpt: {f"{i}.{k}": v for i, s in ckpt["optimizer"]["state"].items()  # noqa: E731
                            for k, v in s.items()}
    assert same_tensors(moments(resumed), moments(straight))


def test_resume_without_a_checkpoint_fails_with_a_message(tmp_path, capsys):
    assert main([*TINY, "--resume", "--out", str(tmp_path / "empty")]) == 2
    assert capsys.readouterr().err.startswith("error: no checkpoint at")


def test_export_writes_a_slim_checkpoint_of_the_same_model(tmp_path, capsys):
    slim = tmp_path / "export" / "model.pt"
    assert main([*TINY, "--out", str(tmp_path / "run"), "--export", str(slim)]) == 0
    assert f"exported a slim checkpoint to {slim}" in capsys.readouterr().out
    full_path = tmp_path / "run" / "checkpoint.pt"
    full, small = load_checkpoint(full_path), load_checkpoint(slim)
    # no optimizer moments and no generator state: the file is only what sampling needs
    assert full["optimizer"]["state"] and small["optimizer"] == {}
    assert full["generator"].numel() > 0 and small["generator"].numel() == 0
    assert slim.stat().st_size < 0.8 * full_path.stat().st_size
    assert small["step"] == full["step"] == 20 and small["losses"] == full["losses"]
    assert small["method"] == full["method"] and small["network"] == full["network"]
    assert same_tensors(small["net"], full["net"]) and same_tensors(small["ema"], full["ema"])
    assert not same_tensors(small["ema"], small["net"])   # so the next check can tell EMA from raw weights
    # the sampler's loader builds the same EMA network from either file: the same predictions
    _, from_slim, _ = load_model(slim, device="cpu")
    _, from_full, _ = load_model(full_path, device="cpu")
    x = torch.randn(32, 2, generator=torch.Generator().manual_seed(0))
    c = torch.linspace(-7, 4, 32)
    with torch.no_grad():
        assert torch.equal(from_slim(x, c), from_full(x, c))


@pytest.mark.parametrize("lr_args, lr", [([], recipes.digits_train_config().lr), (["--lr", "5e-4"], 5e-4)])
def test_digits_defaults_come_from_the_recipe(tmp_path, lr_args, lr):
    # in-process: two steps of the digits U-Net; unset flags take the shipped recipe's values, set ones win
    args = ["train", "--data", "digits", "--steps", "2", "--batch-size", "8", "--large-batch-size", "64",
            "--device", "cpu", "--out", str(tmp_path / "run"), *lr_args]
    assert main(args) == 0
    ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt["train_config"]["lr"] == lr and ckpt["step"] == 2
    assert ckpt["network"] == recipes.digits_network().config
    assert ckpt["method"] == recipes.digits_method(digit_split()[0]).to_config()   # emphasis included


@pytest.mark.parametrize("method_args, config", [
    (["--method", "edm"], recipes.digits_edm().to_config()),
    (["--method", "pfgmpp"], recipes.digits_pfgmpp().to_config()),
    (["--method", "pfgmpp", "--D", "64"], recipes.digits_pfgmpp(64.0).to_config()),
])
def test_digits_with_other_methods(tmp_path, method_args, config):
    # EDM and PFGM++ on the same U-Net (without PFGM's z-output) and the same training settings; sampled end to end
    args = ["train", "--data", "digits", "--steps", "2", "--batch-size", "8", "--large-batch-size", "64",
            "--device", "cpu", "--out", str(tmp_path / "run"), *method_args]
    assert main(args) == 0
    ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt["method"] == config and ckpt["network"] == recipes.digits_network(extra=0).config
    assert ckpt["train_config"]["lr"] == recipes.digits_train_config().lr
    assert main(["sample", "--run", str(tmp_path / "run"), "--n", "2", "--solver", "euler", "--steps", "2",
                 "--out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").exists()


@pytest.mark.parametrize("args, message", [
    (["--data", "cifar10", "--method", "edm"], "--method edm is for the toy sets and --data digits, got --data cifar10"),
    (["--data", "digits", "--method", "edm", "--emphasis", "0.5"], "--method edm is for --data digits and the toys, "
                                                                     "without --recipe or --emphasis"),
    (["--data", "moons", "--method", "pfgmpp", "--recipe", "paper"], "without --recipe or --emphasis"),
    (["--data", "digits", "--D", "8"], "--D 8 belongs to --method pfgmpp, got --method pfgm"),
])
def test_method_flags_that_do_not_fit_fail_with_a_message(tmp_path, capsys, args, message):
    assert main(["train", *args, "--steps", "2", "--out", str(tmp_path / "run")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_emphasis_flag(tmp_path, capsys):
    common = ["train", "--data", "moons", "--steps", "2", "--n-data", "500", "--batch-size", "8",
              "--large-batch-size", "64", "--device", "cpu"]
    assert main([*common, "--out", str(tmp_path / "a")]) == 0
    assert load_checkpoint(tmp_path / "a")["method"]["emphasis"] == 0.0      # toys: the paper's uniform m
    assert main([*common, "--emphasis", "0.3", "--out", str(tmp_path / "b")]) == 0
    assert load_checkpoint(tmp_path / "b")["method"]["emphasis"] == 0.3
    assert main([*common, "--recipe", "paper", "--emphasis", "0.3", "--out", str(tmp_path / "c")]) == 2
    assert "--emphasis 0.3 belongs to the lite recipe" in capsys.readouterr().err


def test_unknown_dataset_fails_with_a_message(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--data", "swissroll", "--out", str(tmp_path / "run")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'swissroll'" in err and "moons" in err
    assert not (tmp_path / "run").exists()


def test_sample_from_a_missing_run(tmp_path, capsys):
    # in-process (no torch start-up cost): main returns the exit code
    code = main(["sample", "--run", str(tmp_path / "nope"), "--out", str(tmp_path / "s.png")])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no checkpoint at") and "nope" in err
    assert not (tmp_path / "s.png").exists()


def test_sample_from_a_foreign_file(tmp_path, capsys):
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint at all")
    assert main(["sample", "--run", str(tmp_path), "--out", str(tmp_path / "s.png")]) == 2
    assert "is not a readable pfgm-lite checkpoint" in capsys.readouterr().err


def test_missing_run_exit_code_from_the_shell(tmp_path):
    # also checks the module entry point: `python -m pfgm_lite` exits with main's return code
    res = run_cli("sample", "--run", tmp_path / "nope", "--out", tmp_path / "s.png")
    assert res.returncode == 2
    assert "error: no checkpoint at" in res.stderr


@pytest.mark.parametrize("args, message", [
    (["train", "--data", "moons", "--out", "X", "--n-data", "100", "--large-batch-size", "256"],
     "large_batch_size (256) is larger than the dataset (100 points)"),
    (["train", "--data", "moons", "--out", "X", "--steps", "0"], "steps must be >= 1, got 0"),
    # an explicit 0 is an error, not "use the default"
    (["train", "--data", "digits", "--out", "X", "--lr", "0"], "lr must be finite and > 0, got 0.0"),
    (["train", "--data", "moons", "--out", "X", "--emphasis", "1.5"], "emphasis must be in [0, 1]"),
])
def test_bad_train_settings_exit_2(tmp_path, capsys, args, message):
    args = [str(tmp_path / a) if a == "X" else a for a in args]
    assert main(args) == 2
    assert message in capsys.readouterr().err


# --- what a new user tries: each refused before any work, or done -------------------------------------------------

def must_not_train(*args, **kwargs):
    raise AssertionError("training started although a setting was bad")


@pytest.mark.parametrize("args, message", [
    (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),          # an explicit 0 is not "the default"
    (["--large-batch-size", "0"], "--large-batch-size must be >= 1, got 0"),
    (["--n-data", "0"], "--n-data must be >= 1, got 0"),
    (["--checkpoint-every", "-1"], "--checkpoint-every must be >= 0, got -1"),
    (["--ema-decay", "1"], "ema_decay must be in [0, 1), got 1.0"),
])
def test_bad_numbers_are_refused_before_any_work(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.setattr(cli_mod, "train", must_not_train)
    assert main([*TINY, *args, "--out", str(tmp_path / "run")]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("out", ["/proc/forbidden", "FILE/run"])
def test_an_output_folder_that_cannot_be_written_is_refused_before_training(tmp_path, capsys, monkeypatch, out):
    (tmp_path / "FILE").write_text("a file where a folder should be")
    monkeypatch.setattr(cli_mod, "train", must_not_train)
    out = out.replace("FILE", str(tmp_path / "FILE"))
    assert main([*TINY, "--out", out]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot write into '{out}'") and "choose an output folder you can write to" in err
    assert not (tmp_path / "FILE").is_dir()


def test_the_write_check_leaves_no_folder_behind(tmp_path):
    from pfgm_lite.checkpoint import check_writable_folder

    check_writable_folder(tmp_path / "a" / "b" / "c")
    assert list(tmp_path.iterdir()) == []          # it wrote and removed a probe, and the folders it made for it


class Foreign:
    """An arbitrary class: it pickles, and weights_only loading refuses to build it."""


def test_a_foreign_file_is_refused_without_advice_to_load_it_unsafely(tmp_path, capsys):
    torch.save({"object": Foreign()}, tmp_path / "pickle.pt")
    (tmp_path / "text.pt").write_text("hello")
    for name in ("pickle.pt", "text.pt"):
        assert main(["sample", "--run", str(tmp_path / name), "--out", str(tmp_path / "s.png")]) == 2
        err = capsys.readouterr().err
        assert "is not a readable pfgm-lite checkpoint" in err
        # PyTorch's own message goes on to suggest weights_only=False, which would run the file's code
        assert "weights_only" not in err and "2.6" not in err and "trust" not in err, err


@pytest.mark.parametrize("method, build", [("edm", recipes.toy_edm), ("pfgmpp", recipes.toy_pfgmpp),
                                           ("flow_matching", lambda data: FlowMatching((2,))),
                                           ("ddpm", lambda data: DDPM((2,)))])
def test_every_method_trains_on_a_toy_set(tmp_path, method, build):
    assert main([*TINY, "--method", method, "--out", str(tmp_path / "run")]) == 0
    ckpt = load_checkpoint(tmp_path / "run")
    data = sample_toy("moons", 500, torch.Generator().manual_seed(0))
    assert ckpt["method"] == build(data).to_config()                     # the tuned toy settings, sigma_data = std
    assert ckpt["network"]["extra"] == 0
    assert ckpt["train_config"]["large_batch_size"] == 64                # given: kept
    assert main([*TINY[:-4], "--method", method, "--device", "cpu", "--out", str(tmp_path / "b")]) == 0
    assert load_checkpoint(tmp_path / "b")["train_config"]["large_batch_size"] == 16   # default: the batch size


@pytest.mark.parametrize("solver", ["ddim", "ancestral"])
def test_ddpm_s_samplers_on_the_command_line(tmp_path, capsys, solver):
    assert main([*TINY, "--method", "ddpm", "--out", str(tmp_path / "run")]) == 0
    out = tmp_path / "s.png"
    assert main(["sample", "--run", str(tmp_path / "run"), "--n", "50", "--solver", solver, "--steps", "7",
                 "--out", str(out)]) == 0
    assert "NFE = 7" in capsys.readouterr().out and torch.load(out.with_suffix(".pt")).shape == (50, 2)
    # a PFGM run has no DDPM sampler: a clear error, no samples written
    assert main([*TINY, "--out", str(tmp_path / "pfgm")]) == 0
    assert main(["sample", "--run", str(tmp_path / "pfgm"), "--solver", solver, "--out", str(tmp_path / "p.png")]) == 2
    assert f"--solver {solver} is DDPM's sampler, for a ddpm, edm or pfgmpp run" in capsys.readouterr().err
    assert not (tmp_path / "p.pt").exists()
    assert main(["sample", "--run", str(tmp_path / "run"), "--n", "50", "--solver", "heun", "--steps", "3",
                 "--out", str(tmp_path / "s.png")]) == 0
    assert torch.isfinite(torch.load(tmp_path / "s.pt", weights_only=True)).all()


def test_ema_flags(tmp_path):
    assert main([*TINY, "--ema-decay", "0.99", "--no-ema-warmup", "--out", str(tmp_path / "a")]) == 0
    config = load_checkpoint(tmp_path / "a")["train_config"]
    assert config["ema_decay"] == 0.99 and config["ema_warmup"] is False
    assert main([*TINY, "--out", str(tmp_path / "b")]) == 0
    assert load_checkpoint(tmp_path / "b")["train_config"]["ema_warmup"] is True


def test_cifar10_recipe_runs_on_random_images_without_the_files(tmp_path):
    # the GPU timing run of the README, shrunk for a CPU: CIFAR-10's U-Net and method on random 3x32x32 images
    assert main(["train", "--data", "cifar10-random", "--steps", "2", "--batch-size", "4", "--large-batch-size", "8",
                 "--device", "cpu", "--out", str(tmp_path / "run")]) == 0
    ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt["network"] == recipes.cifar10_network().config and ckpt["method"] == recipes.cifar10_method().to_config()
    assert ckpt["train_config"]["lr"] == recipes.cifar10_train_config().lr


def test_sample_on_another_step_grid(tmp_path, capsys):
    # --rho gives exactly sampling.sample(..., rho=3) on the same seed, and differs from the method's own grid
    assert main([*TINY, "--out", str(tmp_path / "run")]) == 0
    for name, extra in (("own", []), ("rho3", ["--rho", "3"])):
        assert main(["sample", "--run", str(tmp_path / "run"), "--n", "40", "--solver", "euler", "--steps", "6",
                     "--out", str(tmp_path / f"{name}.png"), *extra]) == 0
    own, rho3 = (torch.load(tmp_path / f"{n}.pt", weights_only=True) for n in ("own", "rho3"))
    method, net, _ = load_model(tmp_path / "run", device="cpu")
    direct = sample(method, method.predictor(net), 40, solver="euler", steps=6, generator=torch.Generator().manual_seed(0),
                    rho=3.0)
    assert torch.equal(rho3, direct.x) and not torch.allclose(own, rho3)
    capsys.readouterr()
    assert main(["sample", "--run", str(tmp_path / "run"), "--solver", "rk45", "--rho", "3",
                 "--out", str(tmp_path / "r.png")]) == 2
    assert "--rho sets the step grid of euler and heun, got --solver rk45" in capsys.readouterr().err
    assert main(["sample", "--run", str(tmp_path / "run"), "--solver", "heun", "--rho", "0",
                 "--out", str(tmp_path / "r.png")]) == 2
    assert "--rho" in capsys.readouterr().err and not (tmp_path / "r.pt").exists()

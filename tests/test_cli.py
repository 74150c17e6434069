"""Facts about `python -m pfgm_lite` (pfgm_lite/__main__.py): help, a tiny train + sample run, --resume and
--export, clear failures."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import pfgm_lite.train as train_mod
from pfgm_lite import recipes
from pfgm_lite.__main__ import main
from pfgm_lite.metrics import digit_split
from pfgm_lite.train import load_checkpoint, load_model

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

    def save_then_crash(path, *args):
        real_save(path, *args)
        if args[-2] == 10:   # the step
            raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "train", train_checkpointing_every_10)
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
    (["--data", "moons", "--method", "edm"], "--method edm is for --data digits"),
    (["--data", "digits", "--method", "edm", "--emphasis", "0.5"], "--method edm is for --data digits, without"),
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

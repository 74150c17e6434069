"""Facts about pfgm_lite/train.py: the loss goes down, the EMA, learning-rate schedule and gradient clipping do what
they say, resuming is exact, checkpoints are atomic, safe to load and reused only when they match, divergence and
bad settings are reported clearly."""
from __future__ import annotations

import math
import os
import pickle
import shutil
import statistics
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

import pfgm_lite
import pfgm_lite.train as train_mod
from pfgm_lite.data import fingerprint, sample_toy
from pfgm_lite.methods import PFGM, Batch
from pfgm_lite.nets import MLP, NO_LABEL
from pfgm_lite.perturb import hyperparameters_for
from pfgm_lite.train import (
    TrainConfig,
    ema_share_of_initial_weights,
    load_checkpoint,
    load_model,
    load_trained,
    loss_on_batch,
    regression_pair,
    save_checkpoint,
    train,
    train_or_load,
)

SMALL = dict(steps=40, batch_size=32, large_batch_size=128, warmup=5, device="cpu")
EPS32 = torch.finfo(torch.float32).eps


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def moons(n: int = 1000, seed: int = 0):
    data = sample_toy("moons", n, gen(seed))
    return PFGM(hyperparameters_for(data), (2,)), data


def small_net(seed: int = 0, width: int = 32) -> MLP:
    torch.manual_seed(seed)
    return MLP(2, width=width, depth=2)


def _write_marker(path: str) -> None:
    Path(path).write_text("the pickle ran code")


class Foreign:
    """An arbitrary object: pickles fine, is not allowed by weights_only."""

    def __init__(self):
        self.value = 3


class Evil:
    """Unpickling this would call _write_marker(path): a stand-in for arbitrary code execution."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return _write_marker, (self.path,)


# --- learning -------------------------------------------------------------------------------

def test_loss_decreases_on_moons():
    method, data = moons(4000)
    config = TrainConfig(steps=300, batch_size=128, large_batch_size=512, warmup=20, device="cpu")
    result = train(method, small_net(width=64), data, config, progress=False)
    assert result.step == 300 and len(result.losses) == 300
    first, last = statistics.mean(result.losses[:50]), statistics.mean(result.losses[-50:])
    # measured: 0.19 -> 0.057
    assert last < 0.6 * first, (first, last)


def test_loss_on_batch_is_half_squared_error_of_the_target():
    method, data = moons(300)
    net = small_net()
    large = data[:128]
    loss = loss_on_batch(method, net, large, 32, gen(3))
    x, z = method.perturb(large[:32], generator=gen(3))
    target = method.target(x, z, Batch(large=large))
    expected = 0.5 * ((net(*method.network_input(x, z)) - target) ** 2).sum(1).mean()
    torch.testing.assert_close(loss, expected)   # the same float32 operations on the same inputs


# --- EMA, learning rate, gradient clipping ----------------------------------------------------

def flat_weights(net) -> torch.Tensor:
    """All parameters of a network as one float64 vector (a snapshot: later steps do not change it)."""
    return torch.cat([p.detach().double().flatten() for p in net.parameters()])


def test_ema_is_the_exponential_average_of_the_raw_weights():
    method, data = moons(500)
    decay, steps = 0.8, 12
    net = small_net(width=8)
    raw = [flat_weights(net)]                       # the EMA starts as a copy of the initial weights
    config = TrainConfig(**{**SMALL, "steps": steps, "ema_decay": decay, "lr": 1e-2, "warmup": 0})
    result = train(method, net, data, config, progress=False, callback_every=1,
                   callback=lambda step, losses: raw.append(flat_weights(net)))
    assert len(raw) == steps + 1

    def average(decays) -> torch.Tensor:   # e_0 = w_0, e_{k+1} = d_k e_k + (1 - d_k) w_{k+1}, in float64
        e = raw[0]
        for d, w in zip(decays, raw[1:]):
            e = d * e + (1 - d) * w
        return e

    warmed = [min(decay, (1 + k) / (10 + k)) for k in range(steps)]      # the warm-up: 0.1, 0.18, ... , 0.59
    assert [config.ema_decay_at(k) for k in range(steps)] == warmed
    expected = average(warmed)
    # the trainer's float32 lerp rounds each step by ~2 eps32 |w|; summed over the steps
    tol = 2 * steps * EPS32 * torch.stack(raw).abs().max().item()

    def is_the_ema(candidate: torch.Tensor, reference: torch.Tensor = expected) -> bool:
        return (candidate - reference).abs().max().item() <= tol

    assert is_the_ema(flat_weights(result.ema))
    # the check rejects the plausible wrong EMAs: never updated, a copy of the net, a fixed decay (no warm-up),
    # decay and 1 - decay swapped
    for wrong in (raw[0], raw[-1], average([decay] * steps), average([1 - d for d in warmed])):
        assert not is_the_ema(wrong)
    # without the warm-up the decay is the same at every step
    raw.clear()
    net = small_net(width=8)
    raw.append(flat_weights(net))
    fixed = train(method, net, data, replace(config, ema_warmup=False), progress=False, callback_every=1,
                  callback=lambda step, losses: raw.append(flat_weights(net)))
    assert is_the_ema(flat_weights(fixed.ema), average([decay] * steps))


def test_ema_warmup_leaves_nothing_of_the_initial_weights():
    """Measured, not computed: every optimizer step sets the raw weights to 0, so the EMA at the end is s * w_0 and s,
    the share of the initial weights w_0, is read off the EMA."""
    method, data = moons(500)
    steps = 500                                       # the README's --steps 2000 keeps 0.999^2000 = 13.5%
    zero = register_optimizer_step_post_hook(
        lambda optimizer, args, kwargs: [p.data.zero_() for g in optimizer.param_groups for p in g["params"]])

    def measured_share(config: TrainConfig) -> float:
        net = small_net(width=8)
        w0 = flat_weights(net)
        ema = flat_weights(train(method, net, data, config, progress=False).ema)
        return ((ema @ w0) / (w0 @ w0)).item()

    try:
        old = TrainConfig(**{**SMALL, "steps": steps, "ema_warmup": False})
        new = TrainConfig(**{**SMALL, "steps": steps})
        without, with_warmup = measured_share(old), measured_share(new)
    finally:
        zero.remove()
    # without the warm-up 0.999^500 = 61% of the EMA is the random initialisation (the measurement sees it, to
    # float32 rounding of 500 lerps); with it prod_k (1 + k) / (10 + k) = 9! 500! / 509! ~ 2e-19, i.e. nothing
    assert math.isclose(without, 0.999**steps, rel_tol=1e-4) and math.isclose(
        ema_share_of_initial_weights(old), 0.999**steps, rel_tol=1e-12)
    assert abs(with_warmup) < 1e-6 and ema_share_of_initial_weights(new) < 1e-18
    assert ema_share_of_initial_weights(TrainConfig()) < 1e-20   # the README's 2000 steps: 9! 2000! / 2009! = 7e-25


def test_ema_lags_the_net_and_decay_zero_is_the_net():
    method, data = moons(500)
    config = TrainConfig(**{**SMALL, "steps": 20, "ema_warmup": False})
    slow = train(method, small_net(width=8), data, config, progress=False)   # ema_decay = 0.999
    # 20 Adam steps of up to lr = 1e-3 move a weight by up to ~2e-2; the 0.999-EMA keeps 98% of the start
    assert (flat_weights(slow.ema) - flat_weights(slow.net)).abs().max() > 1e-3   # measured 1.1e-2
    fast = train(method, small_net(width=8), data, TrainConfig(**{**SMALL, "steps": 20, "ema_decay": 0.0}),
                 progress=False)
    ema, net = flat_weights(fast.ema), flat_weights(fast.net)
    # ema.lerp_(net, 1) is net up to one float32 rounding
    assert ((ema - net).abs() <= EPS32 * net.abs()).all()


def test_learning_rate_schedule_formula():
    lr, warmup, steps = 2e-3, 10, 110
    config = TrainConfig(steps=steps, warmup=warmup, lr=lr)

    def cosine(step):   # lr/10 + (lr - lr/10) (1 + cos(pi progress)) / 2, progress from 0 to 1 after warm-up
        progress = (step - warmup) / (steps - warmup)
        return lr / 10 + 0.9 * lr * (1 + math.cos(math.pi * progress)) / 2

    # float64 arithmetic of a few operations: equal to ~1e-16 relative
    expected = {0: lr / 10,              # warm-up: linear from lr / warmup ...
                4: lr / 2,
                9: lr,                   # ... to lr at its last step
                10: lr,                  # the cosine starts at lr
                60: 0.55 * lr,           # half-way: the mean of lr and lr/10
                109: cosine(109),        # the last step, just above lr/10
                110: lr / 10}
    for step, value in expected.items():
        assert math.isclose(config.lr_at(step), value, rel_tol=1e-12), step
    assert config.lr_at(109) < 0.1003 * lr
    constant = TrainConfig(steps=steps, warmup=warmup, lr=lr, cosine=False)
    assert [constant.lr_at(s) for s in (0, 9, 10, 60, 109)] == [lr / 10, lr, lr, lr, lr]
    assert TrainConfig(warmup=0, lr=lr).lr_at(0) == lr


def optimizer_steps(method, data, config, net=None) -> list[tuple[float, float]]:
    """Train, and record (learning rate, float64 norm of all gradients) as the optimizer sees them at each step."""
    seen = []

    def hook(optimizer, args, kwargs):
        grads = [p.grad.double().flatten() for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        seen.append((optimizer.param_groups[0]["lr"], torch.cat(grads).norm().item()))

    handle = register_optimizer_step_pre_hook(hook)
    try:
        train(method, net or small_net(), data, config, progress=False)
    finally:
        handle.remove()
    return seen


def test_each_step_uses_the_scheduled_learning_rate():
    method, data = moons(500)
    config = TrainConfig(**{**SMALL, "steps": 12, "warmup": 4})
    seen = optimizer_steps(method, data, config)
    assert [lr for lr, _ in seen] == [config.lr_at(step) for step in range(12)]
    assert len({lr for lr, _ in seen}) >= 10   # a schedule, not one constant


def test_gradients_are_clipped_before_the_optimizer_step(monkeypatch):
    method, data = moons(500)
    clip = 1e-3                                   # far below the raw gradient norms (measured 0.5 to 1.1)
    config = TrainConfig(**{**SMALL, "steps": 10, "grad_clip": clip})
    n_params = sum(p.numel() for p in small_net().parameters())
    # clip_grad_norm_ rescales by clip / (norm + 1e-6) with the norm summed in float32: error <= n_params eps32
    bound = clip * (1 + n_params * EPS32)

    def clipped(norms) -> bool:
        return max(norms) <= bound

    assert clipped([norm for _, norm in optimizer_steps(method, data, config)])
    # the check catches a trainer that does not clip: the optimizer then sees the raw gradients
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda parameters, max_norm, *a, **k: torch.tensor(0.0))
    raw = [norm for _, norm in optimizer_steps(method, data, config)]
    assert not clipped(raw) and min(raw) > 10 * clip


# --- checkpoints ----------------------------------------------------------------------------

def test_resume_equals_uninterrupted(tmp_path, monkeypatch):
    method, data = moons(500)
    config = TrainConfig(checkpoint_every=20, **SMALL)
    straight = train(method, small_net(), data, config, out_dir=tmp_path / "a", progress=False)

    real_save = train_mod.save_checkpoint

    def save_then_crash(path, method, net, ema, optimizer, generator, losses, step, config, **kwargs):
        real_save(path, method, net, ema, optimizer, generator, losses, step, config, **kwargs)
        if step == 20:
            raise KeyboardInterrupt  # the run dies right after its step-20 checkpoint

    monkeypatch.setattr(train_mod, "save_checkpoint", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        train(method, small_net(), data, config, out_dir=tmp_path / "b", progress=False)
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "b")["step"] == 20
    # a fresh network with other initial weights: everything must come from the checkpoint
    resumed = train(method, small_net(seed=99), data, config, out_dir=tmp_path / "b",
                    resume=tmp_path / "b" / "checkpoint.pt", progress=False)
    assert resumed.step == 40
    assert resumed.losses == straight.losses
    for a, b in [(resumed.net, straight.net), (resumed.ema, straight.ema)]:
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys()
        assert all(torch.equal(sa[k], sb[k]) for k in sa), "resumed weights differ from the uninterrupted run"


def test_checkpoint_is_written_atomically(tmp_path, monkeypatch):
    method, data = moons(500)
    config = TrainConfig(**SMALL)
    result = train(method, small_net(), data, config, out_dir=tmp_path, progress=False)
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.pt"]  # no leftover temporary file
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ckpt["step"] == 40 and ckpt["losses"] == result.losses
    # the sampler's loader gives the EMA weights
    _, net, _ = load_model(tmp_path, device="cpu")
    assert all(torch.equal(v, result.ema.state_dict()[k]) for k, v in net.state_dict().items())

    # a write that dies half-way leaves the old checkpoint intact and no temporary file
    def broken_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a zip file")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(tmp_path / "checkpoint.pt", method, result.net, result.ema, None, None, [], 99, config)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.pt"]
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 40


@pytest.fixture
def good_checkpoint(tmp_path) -> Path:
    method, data = moons(300)
    net = small_net()
    return save_checkpoint(tmp_path / "good.pt", method, net, net, None, None, [1.0], 1, TrainConfig())


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_foreign_and_corrupted_files_are_refused(tmp_path, good_checkpoint):
    raw = good_checkpoint.read_bytes()
    (tmp_path / "truncated.pt").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "random.pt").write_bytes(torch.randint(0, 256, (4096,), generator=gen(1), dtype=torch.uint8)
                                         .numpy().tobytes())
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    (tmp_path / "object.pkl").write_bytes(pickle.dumps(Foreign()))
    torch.save({"format": "something-else", "net": {}}, tmp_path / "dict.pt")
    for name in ("truncated.pt", "random.pt", "tensor.pt", "object.pkl", "dict.pt"):
        with pytest.raises(ValueError, match=r"is not a .*pfgm-lite checkpoint"):
            load_checkpoint(tmp_path / name)
    ckpt = torch.load(good_checkpoint, weights_only=True)
    torch.save({**ckpt, "version": 99}, tmp_path / "future.pt")
    with pytest.raises(ValueError, match="has checkpoint version 99; this pfgm-lite reads version 1"):
        load_checkpoint(tmp_path / "future.pt")
    del ckpt["ema"]
    torch.save(ckpt, tmp_path / "incomplete.pt")
    with pytest.raises(ValueError, match=r"incomplete pfgm-lite checkpoint: missing \['ema'\]"):
        load_checkpoint(tmp_path / "incomplete.pt")
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "nothing-here")


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_loading_never_runs_code_from_the_file(tmp_path):
    marker = tmp_path / "marker.txt"
    payload = pickle.dumps(Evil(str(marker)))
    pickle.loads(payload)  # the payload is live: a plain unpickler runs it
    assert marker.exists()
    marker.unlink()
    (tmp_path / "evil.pkl").write_bytes(payload)
    torch.save(Evil(str(marker)), tmp_path / "evil.pt")  # the same inside torch's zip format
    for name in ("evil.pkl", "evil.pt"):
        with pytest.raises(ValueError, match="is not a readable pfgm-lite checkpoint"):
            load_checkpoint(tmp_path / name)
        assert not marker.exists()


def test_train_or_load_reuses_a_matching_checkpoint(tmp_path, monkeypatch):
    method, data = moons(500)
    short = {**SMALL, "steps": 10}
    config = TrainConfig(**short)
    first = train_or_load(method, small_net(), data, config, tmp_path / "run", progress=False)
    calls = []
    real_train = train_mod.train

    def spy(*args, **kwargs):
        calls.append(args)
        return real_train(*args, **kwargs)

    monkeypatch.setattr(train_mod, "train", spy)
    # a network with other initial weights: what comes back must be the file's
    again = train_or_load(method, small_net(seed=99), data, config, tmp_path / "run", progress=False)
    assert calls == [] and again.seconds == 0.0 and again.step == 10
    assert again.losses == first.losses
    for a, b in [(again.net, first.net), (again.ema, first.ema)]:
        assert torch.equal(flat_weights(a), flat_weights(b))

    # another config, method, network, step count or data set: never overwritten silently; trained anew over it only
    # with overwrite=True (each case starts from a copy of the same checkpoint)
    changes = {"config": (method, small_net(), TrainConfig(**{**short, "lr": 2e-3}), data),
               "method": (PFGM(method.hp, (2,), gamma=5.0), small_net(), config, data),
               "network": (method, small_net(width=16), config, data),
               "steps": (method, small_net(), TrainConfig(**{**short, "steps": 11}), data),
               "data": (method, small_net(), config, sample_toy("moons", 500, gen(1)))}
    messages = {"config": r"the training settings \(lr: 0.001 there, 0.002 now\)", "method": "the method",
                "network": "the network", "steps": r"steps: 10 there, 11 now", "data": "the data"}
    for name, (m, net, cfg, d) in changes.items():
        (tmp_path / name).mkdir()
        shutil.copy(tmp_path / "run" / "checkpoint.pt", tmp_path / name / "checkpoint.pt")
        before = len(calls)
        with pytest.raises(ValueError, match=rf"holds another run than the one asked for: .*{messages[name]}"):
            train_or_load(m, net, d, cfg, tmp_path / name, progress=False)
        assert len(calls) == before and load_checkpoint(tmp_path / name)["losses"] == first.losses   # untouched
        result = train_or_load(m, net, d, cfg, tmp_path / name, progress=False, overwrite=True)
        assert len(calls) == before + 1, f"a changed {name} must retrain"
        assert result.step == cfg.steps and load_checkpoint(tmp_path / name)["train_config"]["lr"] == cfg.lr


def test_train_or_load_resumes_an_interrupted_run(tmp_path, monkeypatch):
    method, data = moons(500)
    config = TrainConfig(**{**SMALL, "steps": 12, "checkpoint_every": 6})
    straight = train(method, small_net(), data, config, progress=False)
    real_save = train_mod.save_checkpoint

    def save_then_crash(*args, **kwargs):
        real_save(*args, **kwargs)
        raise KeyboardInterrupt                 # dies right after its first checkpoint, at step 6

    monkeypatch.setattr(train_mod, "save_checkpoint", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        train_or_load(method, small_net(), data, config, tmp_path, progress=False)
    monkeypatch.undo()
    assert load_checkpoint(tmp_path)["step"] == 6
    resumed = train_or_load(method, small_net(seed=5), data, config, tmp_path, progress=False)
    assert resumed.step == 12 and resumed.losses == straight.losses
    assert torch.equal(flat_weights(resumed.ema), flat_weights(straight.ema))


def test_load_trained_loads_a_finished_run_and_never_trains(tmp_path, monkeypatch):
    method, data = moons(500)
    config = TrainConfig(**{**SMALL, "steps": 8, "checkpoint_every": 4})
    first = train(method, small_net(), data, config, out_dir=tmp_path / "run", progress=False)
    monkeypatch.setattr(train_mod, "train", lambda *a, **k: pytest.fail("load_trained must never train"))
    again = load_trained(method, small_net(seed=99), data, config, tmp_path / "run")
    assert again.step == 8 and again.losses == first.losses
    assert torch.equal(flat_weights(again.ema), flat_weights(first.ema))
    with pytest.raises(FileNotFoundError, match="out_dir: expected a trained network at .*none"):
        load_trained(method, small_net(), data, config, tmp_path / "nothing")
    with pytest.raises(ValueError, match=r"another run .*lr: 0.001 there, 0.002 now"):
        load_trained(method, small_net(), data, TrainConfig(**{**SMALL, "steps": 8, "checkpoint_every": 4,
                                                                 "lr": 2e-3}), tmp_path / "run")
    # an interrupted run (the checkpoint of step 4 of 8) is refused, not resumed
    ckpt = load_checkpoint(tmp_path / "run")
    ckpt["step"] = 4
    (tmp_path / "short").mkdir()
    torch.save(ckpt, tmp_path / "short" / "checkpoint.pt")
    with pytest.raises(ValueError, match="stopped at step 4 of 8"):
        load_trained(method, small_net(), data, config, tmp_path / "short")


def test_checkpoint_records_the_data_and_what_wrote_it(tmp_path):
    method, data = moons(500)
    train(method, small_net(), data, TrainConfig(**{**SMALL, "steps": 2}), out_dir=tmp_path, progress=False)
    ckpt = load_checkpoint(tmp_path)
    assert ckpt["data"] == fingerprint(data) and ckpt["data"] != fingerprint(data.flip(0))
    assert ckpt["pfgm_lite_version"] == pfgm_lite.__version__ and ckpt["torch_version"] == str(torch.__version__)


# --- divergence -----------------------------------------------------------------------------

class NaNNet(MLP):
    def forward(self, x, c):
        return super().forward(x, c) * float("nan")


def test_nan_network_output_is_reported():
    method, data = moons(500)
    torch.manual_seed(0)
    with pytest.raises(FloatingPointError, match="loss became nan at step 0: training diverged"):
        train(method, NaNNet(2, width=8), data, TrainConfig(**SMALL), progress=False)


def test_huge_lr_is_reported():
    method, data = moons(500)
    config = TrainConfig(**{**SMALL, "lr": 1e10, "warmup": 0})
    with pytest.raises(FloatingPointError, match=r"loss became (nan|inf) at step \d+: training diverged\. "
                                                 r"Try a smaller lr \(now 10000000000\.0\)"):
        train(method, small_net(), data, config, progress=False)


def test_huge_data_value_is_reported():
    method, data = moons(500)
    data[7] = 1e30  # finite in float32, but its squared distances overflow
    config = TrainConfig(**{**SMALL, "batch_size": 128, "large_batch_size": 500})
    with pytest.raises(FloatingPointError, match="check the data for NaN/inf"):
        train(method, small_net(), data, config, progress=False)


# --- bad settings ---------------------------------------------------------------------------

@pytest.mark.parametrize("change, message", [
    (dict(batch_size=256, large_batch_size=128), r"batch_size \(256\) must not exceed large_batch_size \(128\)"),
    (dict(large_batch_size=1000), r"large_batch_size \(1000\) is larger than the dataset \(500 points\)"),
    (dict(lr=-1e-3), "lr must be finite and > 0, got -0.001"),
    (dict(ema_decay=1.0), r"ema_decay must be in \[0, 1\), got 1.0"),
    (dict(steps=0), "steps must be >= 1, got 0"),
])
def test_bad_config(change, message):
    method, data = moons(500)
    with pytest.raises(ValueError, match=message):
        train(method, small_net(), data, TrainConfig(**{**SMALL, **change}), progress=False)


def test_data_of_the_wrong_shape_or_values():
    method, data = moons(500)
    with pytest.raises(ValueError, match=r"data must have shape \(B, 2\) for this pfgm model, got \(500, 3\)"):
        train(method, small_net(), torch.randn(500, 3), TrainConfig(**SMALL), progress=False)
    data[3, 0] = float("nan")
    with pytest.raises(ValueError, match="data must be finite, got 1 NaN/inf entries"):
        train(method, small_net(), data, TrainConfig(**SMALL), progress=False)


def test_resume_with_another_method_is_refused(tmp_path):
    method, data = moons(500)
    train(method, small_net(), data, TrainConfig(**SMALL), out_dir=tmp_path, progress=False)
    other = PFGM(method.hp, (2,), gamma=5.0)
    with pytest.raises(ValueError, match="was made for a different method configuration"):
        train(other, small_net(), data, TrainConfig(**SMALL), resume=tmp_path / "checkpoint.pt", progress=False)


def test_resume_with_other_training_settings_is_refused(tmp_path):
    """More steps may extend a run; a different lr or batch size would silently make another run: refused."""
    method, data = moons(500)
    train(method, small_net(), data, TrainConfig(**SMALL), out_dir=tmp_path, progress=False)
    changed = TrainConfig(**{**SMALL, "lr": SMALL.get("lr", 1e-3) * 2, "batch_size": 16})
    with pytest.raises(ValueError, match=r"trained with other settings: batch_size = .* there, 16 now, lr = "):
        train(method, small_net(), data, changed, resume=tmp_path / "checkpoint.pt", progress=False)
    longer = TrainConfig(**{**SMALL, "steps": SMALL["steps"] + 2})
    result = train(method, small_net(), data, longer, resume=tmp_path / "checkpoint.pt", progress=False)
    assert result.step == SMALL["steps"] + 2


# --- bad input to train(): refused before the first step ------------------------------------------------------------

class OwnNet(torch.nn.Module):
    """A reader's own network: it trains, but has no `config` a checkpoint could rebuild it from."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2 + 1, 3)

    def forward(self, x, c):
        return self.layer(torch.cat([x, c[:, None]], dim=1))


def test_a_network_that_cannot_be_saved_fails_before_training(tmp_path):
    method, data = moons(500)
    steps = []
    with pytest.raises(TypeError, match="a checkpoint rebuilds the network from its `config` dict .* this OwnNet has "
                                        "none: train it without out_dir"):
        train(method, OwnNet(), data, TrainConfig(**SMALL), out_dir=tmp_path / "run", progress=False,
              callback=lambda step, losses: steps.append(step), callback_every=1)
    assert steps == [] and not (tmp_path / "run").exists()
    assert train(method, OwnNet(), data, TrainConfig(**{**SMALL, "steps": 3}), progress=False).step == 3   # no out_dir


def test_bad_callback_every_and_unwritable_out_dir(tmp_path):
    method, data = moons(500)
    with pytest.raises(ValueError, match="callback_every must be >= 1, got 0"):
        train(method, small_net(), data, TrainConfig(**SMALL), progress=False, callback=print, callback_every=0)
    (tmp_path / "file").write_text("in the way")
    with pytest.raises(OSError, match="cannot write into .*file/run"):
        train(method, small_net(), data, TrainConfig(**SMALL), out_dir=tmp_path / "file" / "run", progress=False)


class LabelledNet(MLP):
    """A class-conditional MLP of 3 classes for the plumbing tests that records the labels it gets."""

    def __init__(self):
        super().__init__(2, width=16, depth=1, num_classes=3)
        self.seen: list[torch.Tensor] = []

    def forward(self, x, c, labels=None):
        self.seen.append(labels)
        return super().forward(x, c, labels)


def test_labels_travel_with_their_points():
    method, data = moons(500)
    labels = (data[:, 0] > 0).long() + (data[:, 1] > 0).long()     # a label that is a function of the point
    seen = []

    class Recorder(PFGM):
        def target(self, x, t, batch):
            seen.append(batch)
            return super().target(x, t, batch)

    recorder = Recorder(method.hp, (2,))
    torch.manual_seed(0)
    net = LabelledNet()
    result = train(recorder, net, data, TrainConfig(**{**SMALL, "steps": 4}), progress=False, labels=labels)
    assert result.step == 4 and len(seen) == 4 and len(net.seen) == 4
    for batch, given in zip(seen, net.seen):
        rule = lambda y: (y[:, 0] > 0).long() + (y[:, 1] > 0).long()  # noqa: E731
        assert torch.equal(batch.labels, rule(batch.y)) and torch.equal(batch.large_labels, rule(batch.large))
        assert torch.equal(given, batch.labels)                  # the network gets the labels of its rows
    x = torch.randn(5, 2)
    one_class = method.predictor(net, labels=torch.full((5,), 2))(x, torch.full((5,), 0.5))
    other = method.predictor(net, labels=torch.zeros(5, dtype=torch.long))(x, torch.full((5,), 0.5))
    assert not torch.equal(one_class, other)                       # the label reaches the prediction


@pytest.mark.parametrize("labels, net, error, message", [
    (torch.zeros(500, dtype=torch.long), None, ValueError, "labels were given, but this MLP takes none"),
    (torch.zeros(500), "labelled", TypeError, "labels must be an integer tensor, got torch.float32"),
    (torch.zeros(499, dtype=torch.long), "labelled", ValueError, r"labels must have shape \(500,\), one per data point"),
    (torch.full((500,), 3), "labelled", ValueError, r"labels must lie in \[0, 3\) for a network of 3 classes, got 3 "),
])
def test_bad_labels(labels, net, error, message):
    method, data = moons(500)
    with pytest.raises(error, match=message):
        train(method, LabelledNet() if net else small_net(), data, TrainConfig(**SMALL), progress=False,
              labels=labels)


def test_p_uncond_drops_labels_for_the_whole_mini_batch_and_draws_nothing_when_zero():
    method, data = moons(500)
    labels = torch.arange(500) % 3
    large = data[:256]
    pairs = {}
    for p_uncond in (0.0, 0.5):
        g = gen(3)
        x, t, target, got = regression_pair(method, large, 128, g, large_labels=labels[:256], p_uncond=p_uncond)
        pairs[p_uncond] = (x, got, g.get_state())
    # p_uncond = 0: the labels as given, and the generator where a run without labels leaves it
    g_plain = gen(3)
    x_plain, *_ = regression_pair(method, large, 128, g_plain)
    assert torch.equal(pairs[0.0][1], labels[:128]) and torch.equal(pairs[0.0][2], g_plain.get_state())
    assert torch.equal(pairs[0.0][0], x_plain)
    # p_uncond = 0.5: the same perturbation, about half the labels dropped to NO_LABEL, the others kept
    x, got, _ = pairs[0.5]
    dropped = got == NO_LABEL
    assert torch.equal(x, x_plain) and 40 < int(dropped.sum()) < 88          # Binomial(128, 1/2): mean 64, sd 5.7
    assert torch.equal(got[~dropped], labels[:128][~dropped])
    # a shard sees the rows of the whole mini-batch's draw
    _, _, _, half = regression_pair(method, large, 128, gen(3), shard=slice(64, 128), large_labels=labels[:256],
                                    p_uncond=0.5)
    assert torch.equal(half, got[64:])


@pytest.mark.parametrize("value", [1.0, -0.1, 1.5, "0.1"])
def test_p_uncond_must_be_a_share(value):
    method, data = moons(500)
    with pytest.raises(ValueError, match=r"p_uncond must be a share in \[0, 1\)"):
        train(method, LabelledNet(), data, TrainConfig(**{**SMALL, "p_uncond": value}), progress=False,
              labels=torch.arange(500) % 3)


def test_a_conditional_run_saves_and_reloads_and_old_configs_still_match(tmp_path):
    method, data = moons(500)
    labels = torch.arange(500) % 3
    config = TrainConfig(**{**SMALL, "steps": 6, "p_uncond": 0.2})
    first = train_or_load(method, MLP(2, width=16, depth=1, num_classes=3), data, config, tmp_path / "run",
                          progress=False, labels=labels)
    again = load_trained(method, MLP(2, width=16, depth=1, num_classes=3), data, config, tmp_path / "run")
    assert torch.equal(flat_weights(again.ema), flat_weights(first.ema))
    assert load_checkpoint(tmp_path / "run")["network"]["num_classes"] == 3
    with pytest.raises(ValueError, match="the network"):            # an unconditional network is another run
        load_trained(method, MLP(2, width=16, depth=1), data, config, tmp_path / "run")
    # a checkpoint written before p_uncond existed (no such key) matches a run with the default 0
    old_config = TrainConfig(**{**SMALL, "steps": 6})
    train(method, small_net(), data, old_config, out_dir=tmp_path / "old", progress=False)
    ckpt = load_checkpoint(tmp_path / "old")
    del ckpt["train_config"]["p_uncond"]
    torch.save(ckpt, tmp_path / "old" / "checkpoint.pt")
    assert load_trained(method, small_net(), data, old_config, tmp_path / "old").step == 6

"""Facts about pfgm_lite/train.py: the loss goes down, resuming is exact, checkpoints are atomic and safe to load,
divergence and bad settings are reported clearly."""
from __future__ import annotations

import os
import pickle
import statistics
from pathlib import Path

import pytest
import torch

import pfgm_lite.train as train_mod
from pfgm_lite.data import sample_toy
from pfgm_lite.methods import PFGM
from pfgm_lite.nets import MLP
from pfgm_lite.perturb import hyperparameters_for
from pfgm_lite.train import TrainConfig, load_checkpoint, load_model, loss_on_batch, save_checkpoint, train

SMALL = dict(steps=40, batch_size=32, large_batch_size=128, warmup=5, device="cpu")


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
    target = method.target(x, z, large)
    expected = 0.5 * ((net(*method.network_input(x, z)) - target) ** 2).sum(1).mean()
    torch.testing.assert_close(loss, expected)


# --- checkpoints ----------------------------------------------------------------------------

def test_resume_equals_uninterrupted(tmp_path, monkeypatch):
    method, data = moons(500)
    config = TrainConfig(checkpoint_every=20, **SMALL)
    straight = train(method, small_net(), data, config, out_dir=tmp_path / "a", progress=False)

    real_save = train_mod.save_checkpoint

    def save_then_crash(path, method, net, ema, optimizer, generator, losses, step, config):
        real_save(path, method, net, ema, optimizer, generator, losses, step, config)
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

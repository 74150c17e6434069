"""One training loop for every method: regress method.target with the network, 1/2 ||f - v||^2.

Per step: draw a large batch B_L from the data (its first `batch_size` points are the mini-batch B),
perturb B, compute the target from B_L, take an Adam step (warm-up, cosine decay, gradient clipping),
update EMA weights. Checkpoints are written atomically (temporary file, then rename) and read with
torch.load(weights_only=True); resuming restores weights, optimizer, RNG and history exactly.
"""
from __future__ import annotations

import copy
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from .checks import check_int, check_positive
from .methods import Method, method_from_config
from .nets import build_network
from .runtime import default_device

CHECKPOINT_FORMAT = "pfgm-lite-checkpoint"
CHECKPOINT_VERSION = 1


@dataclass
class TrainConfig:
    """Training hyper-parameters (defaults suit 2D toys on a CPU)."""

    steps: int = 2000
    batch_size: int = 256
    large_batch_size: int = 2048
    lr: float = 1e-3
    warmup: int = 200
    cosine: bool = True
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    seed: int = 0
    device: str = "auto"
    checkpoint_every: int = 0

    def validate(self, n_data: int) -> None:
        """Raise a clear error for a bad setting (n_data: dataset size)."""
        for name in ("steps", "batch_size", "large_batch_size"):
            check_int(name, getattr(self, name))
        check_int("warmup", self.warmup, minimum=0)
        check_int("checkpoint_every", self.checkpoint_every, minimum=0)
        check_int("seed", self.seed, minimum=0)
        check_positive("lr", self.lr)
        check_positive("grad_clip", self.grad_clip)
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.batch_size > self.large_batch_size:
            raise ValueError(f"batch_size ({self.batch_size}) must not exceed large_batch_size "
                             f"({self.large_batch_size}): the mini-batch is part of the large batch")
        if self.large_batch_size > n_data:
            raise ValueError(f"large_batch_size ({self.large_batch_size}) is larger than the dataset "
                             f"({n_data} points)")

    def lr_at(self, step: int) -> float:
        """Linear warm-up to lr, then cosine decay to lr/10 (or constant)."""
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        if not self.cosine:
            return self.lr
        progress = (step - self.warmup) / max(1, self.steps - self.warmup)
        return self.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


@dataclass
class TrainResult:
    """net: trained weights; ema: EMA weights (use these to sample); losses: one per step; step: steps done."""

    net: nn.Module
    ema: nn.Module
    losses: list = field(default_factory=list)
    step: int = 0
    seconds: float = 0.0


def pick_device(name: str) -> torch.device:
    """'auto' -> CUDA if available else CPU; otherwise torch.device(name)."""
    return default_device() if name == "auto" else torch.device(name)


def loss_on_batch(method: Method, net: nn.Module, large_batch: torch.Tensor, batch_size: int,
                  generator: torch.Generator) -> torch.Tensor:
    """1/2 ||net(x, t) - target||^2 averaged over the mini-batch (the first batch_size points of large_batch)."""
    y = large_batch[:batch_size]
    x, t = method.perturb(y, generator=generator)
    with torch.no_grad():
        target = method.target(x, t, large_batch)
    x_in, c = method.network_input(x, t)
    return 0.5 * ((net(x_in, c) - target) ** 2).sum(dim=1).mean()


def train(method: Method, net: nn.Module, data: torch.Tensor, config: TrainConfig,
          out_dir: str | Path | None = None, resume: str | Path | None = None,
          progress: bool = True, callback=None, callback_every: int = 50) -> TrainResult:
    """Train `net` on `data` (n, *shape) for config.steps steps; checkpoint to out_dir/checkpoint.pt.

    resume:   a checkpoint path; training continues from its step with its weights, optimizer and RNG state.
    callback: called as callback(step, losses) every `callback_every` steps and at the end (e.g. a live plot).
    """
    method.check_data("data", data)
    config.validate(data.shape[0])
    device = pick_device(config.device)
    net = net.to(device)
    ema = copy.deepcopy(net).requires_grad_(False)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    losses: list[float] = []
    step = 0
    if resume is not None:
        ckpt = load_checkpoint(resume)
        if ckpt["method"] != method.to_config():
            raise ValueError(f"checkpoint {resume} was made for a different method configuration")
        load_weights(net, ckpt["net"], resume)
        load_weights(ema, ckpt["ema"], resume)
        optimizer.load_state_dict(ckpt["optimizer"])
        generator.set_state(ckpt["generator"])
        losses, step = list(ckpt["losses"]), int(ckpt["step"])
    data_cpu = data.detach().cpu()
    start = time.perf_counter()
    bar = tqdm(total=config.steps, initial=step, desc=f"training {method.name}", disable=not progress)
    while step < config.steps:
        idx = torch.randperm(data_cpu.shape[0], generator=generator)[: config.large_batch_size]
        large = data_cpu[idx].to(device)
        for group in optimizer.param_groups:
            group["lr"] = config.lr_at(step)
        net.train()
        loss = loss_on_batch(method, net, large, config.batch_size, generator)
        if not torch.isfinite(loss):
            bar.close()
            raise FloatingPointError(f"loss became {loss.item()} at step {step}: training diverged. Try a "
                                     f"smaller lr (now {config.lr}) or check the data for NaN/inf.")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip)
        optimizer.step()
        with torch.no_grad():
            for p_ema, p in zip(ema.parameters(), net.parameters()):
                p_ema.lerp_(p, 1 - config.ema_decay)
        losses.append(loss.item())
        step += 1
        bar.update(1)
        if step % 50 == 0 or step == config.steps:
            bar.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.4f}")
        if callback is not None and (step % callback_every == 0 or step == config.steps):
            callback(step, losses)
        if out_dir is not None and (step == config.steps or
                                    (config.checkpoint_every and step % config.checkpoint_every == 0)):
            save_checkpoint(Path(out_dir) / "checkpoint.pt", method, net, ema, optimizer, generator,
                            losses, step, config)
    bar.close()
    return TrainResult(net=net, ema=ema, losses=losses, step=step, seconds=time.perf_counter() - start)


def save_checkpoint(path: str | Path, method: Method, net: nn.Module, ema: nn.Module,
                    optimizer: torch.optim.Optimizer | None, generator: torch.Generator | None,
                    losses: list, step: int, config: TrainConfig) -> Path:
    """Write a checkpoint atomically: to a temporary file in the same folder, then os.replace."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = dict(format=CHECKPOINT_FORMAT, version=CHECKPOINT_VERSION, method=method.to_config(),
                   network=dict(net.config), net=net.state_dict(), ema=ema.state_dict(),
                   optimizer=optimizer.state_dict() if optimizer is not None else {},
                   generator=generator.get_state() if generator is not None else torch.ByteTensor(),
                   losses=[float(v) for v in losses], step=int(step), train_config=asdict(config))
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint with torch.load(weights_only=True); refuse anything that is not ours."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupted, truncated, or a pickle with code in it
        raise ValueError(f"{path} is not a readable pfgm-lite checkpoint ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:200]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a pfgm-lite checkpoint (missing format tag {CHECKPOINT_FORMAT!r})")
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path} has checkpoint version {ckpt.get('version')!r}; this pfgm-lite reads "
                         f"version {CHECKPOINT_VERSION}")
    missing = {"method", "network", "net", "ema", "losses", "step"} - set(ckpt)
    if missing:
        raise ValueError(f"{path} is an incomplete pfgm-lite checkpoint: missing {sorted(missing)}")
    return ckpt


def load_weights(net: nn.Module, state: dict, path: str | Path) -> None:
    """net.load_state_dict(state), with an error that says what to do when the layers do not match."""
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    given = {k: tuple(v.shape) for k, v in state.items()}
    if expected != given:
        differ = sorted(k for k in expected.keys() | given.keys() if expected.get(k) != given.get(k))
        raise ValueError(f"{path} holds weights for a different network layout ({len(differ)} tensors differ, "
                         f"e.g. {differ[:3]}): it was probably made by an older pfgm-lite; retrain it with the "
                         f"command that made it")
    net.load_state_dict(state)


def load_model(path: str | Path, device: str = "auto") -> tuple[Method, nn.Module, dict]:
    """Method, EMA network (eval mode, on device) and the raw checkpoint dict from a checkpoint file or run folder."""
    ckpt = load_checkpoint(path)
    method = method_from_config(ckpt["method"])
    net = build_network(ckpt["network"])
    load_weights(net, ckpt["ema"], path)
    return method, net.to(pick_device(device)).eval(), ckpt


def train_or_load(method: Method, net: nn.Module, data: torch.Tensor, config: TrainConfig,
                  out_dir: str | Path, progress: bool = True) -> TrainResult:
    """Load out_dir/checkpoint.pt if it was made with this method and config; otherwise train (and save) it.

    Lets a notebook reuse the model another notebook trained, and retrain when the recipe changed.
    """
    path = Path(out_dir) / "checkpoint.pt"
    if path.exists():
        ckpt = load_checkpoint(path)
        same = (ckpt["method"] == method.to_config() and ckpt.get("train_config") == asdict(config)
                and ckpt["network"] == dict(net.config) and int(ckpt["step"]) == config.steps)
        if same:
            load_weights(net, ckpt["net"], path)
            ema = copy.deepcopy(net).requires_grad_(False)
            load_weights(ema, ckpt["ema"], path)
            device = pick_device(config.device)
            return TrainResult(net=net.to(device), ema=ema.to(device), losses=list(ckpt["losses"]),
                               step=int(ckpt["step"]))
    return train(method, net, data, config, out_dir=out_dir, progress=progress)

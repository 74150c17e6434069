"""One training loop for every method: regress method.target with the network, 1/2 ||f - v||^2.

Per step: draw a large batch B_L from the data (its first `batch_size` points are the mini-batch B),
perturb B, compute the target from B_L, take an Adam step (warm-up, cosine decay, gradient clipping),
update EMA weights. Checkpoints are written atomically (temporary file, then rename) and read with
torch.load(weights_only=True); resuming restores weights, optimizer, RNG and history exactly.
The same loop runs on K processes under torchrun (DistributedDataParallel; see distributed.py), and on a GPU
with the network in bfloat16 autocast while the target stays in the data's float32.
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

from . import distributed
from .checks import check_int, check_positive
from .distributed import Parallel, pick_device
from .methods import Method, method_from_config
from .nets import build_network
from .runtime import trim_freed_memory

CHECKPOINT_FORMAT = "pfgm-lite-checkpoint"
#: TrainConfig fields a resumed run may change (more steps extends a run; its cosine decay follows the new total)
RESUMABLE_CHANGES = ("steps", "device", "checkpoint_every")
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


def draw_large_batch(data: torch.Tensor, large_batch_size: int, generator: torch.Generator, device: torch.device,
                     parallel: Parallel = Parallel()) -> torch.Tensor:
    """The step's large batch B_L: large_batch_size rows of data (n, *shape) drawn without replacement, on device.

    With K processes each one loads only its L/K rows and one all_gather assembles B_L (distributed.gather_rows):
    every process draws the same indices (same generator), so every process ends up with the one-process B_L.
    """
    idx = torch.randperm(data.shape[0], generator=generator)[:large_batch_size]
    if parallel.world_size == 1:
        return data[idx.to(data.device)].to(device)
    local = data[idx[parallel.shard(large_batch_size)].to(data.device)]
    return distributed.gather_rows(local, parallel, device)


def regression_pair(method: Method, large_batch: torch.Tensor, batch_size: int, generator: torch.Generator,
                    shard: slice = slice(None)):
    """(x, t, target) for the rows `shard` of the mini-batch (the first batch_size points of large_batch).

    The whole mini-batch is perturbed, so the random draws (and the generator's state afterwards) are those of one
    process whatever the shard. method.target sees the whole large batch (PFGM needs all of B_L), reordered so that
    it starts with the shard's own clean points, as the trainer's contract says (EDM's target reads y there); it
    runs without gradients and outside any autocast, in the data's dtype (float32 or float64).
    x: (b, *shape), t: (b,), target: (b, K) with b the rows of the shard.
    """
    y = large_batch[:batch_size]
    x, t = method.perturb(y, generator=generator)
    x, t = x[shard], t[shard]
    if shard.start:   # a later shard: its clean points first, then the rest of B_L (the same set of points)
        large_batch = torch.cat([large_batch[shard], large_batch[:shard.start], large_batch[shard.stop:]])
    with torch.no_grad(), torch.autocast(x.device.type, enabled=False):
        target = method.target(x, t, large_batch)
    return x, t, target


def loss_on_batch(method: Method, net: nn.Module, large_batch: torch.Tensor, batch_size: int,
                  generator: torch.Generator, shard: slice = slice(None),
                  autocast: torch.dtype | None = None) -> torch.Tensor:
    """1/2 ||net(x, t) - target||^2 averaged over the mini-batch (the first batch_size points of large_batch).

    shard:    the rows of the mini-batch this process trains on (regression_pair); all of them by default
    autocast: run the network in this dtype (torch.bfloat16) under torch.autocast; the loss is in the target's dtype
    """
    x, t, target = regression_pair(method, large_batch, batch_size, generator, shard)
    x_in, c = method.network_input(x, t)
    with torch.autocast(x.device.type, dtype=autocast, enabled=autocast is not None):
        prediction = net(x_in, c)
    return 0.5 * ((prediction.to(target.dtype) - target) ** 2).sum(dim=1).mean()


def _keep_data_on(device: torch.device, data: torch.Tensor) -> torch.device:
    """Where the dataset lives during training: on the GPU when it takes under a quarter of its memory (no copy
    from the host each step), else on the CPU. The rows drawn are the same either way."""
    if device.type == "cuda" and data.numel() * data.element_size() < torch.cuda.get_device_properties(
            device).total_memory / 4:
        return device
    return torch.device("cpu")


def train(method: Method, net: nn.Module, data: torch.Tensor, config: TrainConfig,
          out_dir: str | Path | None = None, resume: str | Path | None = None,
          progress: bool = True, callback=None, callback_every: int = 50,
          parallel: Parallel | None = None, precision: str = "auto") -> TrainResult:
    """Train `net` on `data` (n, *shape) for config.steps steps; checkpoint to out_dir/checkpoint.pt.

    resume:    a checkpoint path; training continues from its step with its weights, optimizer and RNG state.
    callback:  called as callback(step, losses) every `callback_every` steps and at the end (e.g. a live plot).
    parallel:  this process's place among K processes (distributed.process_group()); None: the group already
               joined with torch.distributed, if any, else one process. config.batch_size and large_batch_size
               are global: each process trains on batch_size / K points (distributed.py says how a step splits).
               Only rank 0 writes checkpoints, shows the progress bar and calls the callback.
    precision: 'auto' (bf16 autocast for the network on a GPU, float32 on a CPU), 'bf16' or 'fp32'; the target is
               always computed in the data's dtype.
    """
    method.check_data("data", data)
    config.validate(data.shape[0])
    parallel = distributed.current() if parallel is None else parallel
    distributed.check_batch_split(config.batch_size, config.large_batch_size, parallel.world_size)
    device = pick_device(config.device)
    if device.type == "cuda" and device.index is None and parallel.world_size > 1:
        device = torch.device("cuda", torch.cuda.current_device())   # the GPU process_group chose: LOCAL_RANK
    autocast = distributed.autocast_dtype(precision, device)
    net = net.to(device)
    ema = copy.deepcopy(net).requires_grad_(False)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    losses: list[float] = []
    step = 0
    if resume is not None:
        ckpt = distributed.broadcast_from_main(lambda: load_checkpoint(resume), parallel)
        if ckpt["method"] != method.to_config():
            raise ValueError(f"checkpoint {resume} was made for a different method configuration")
        saved = ckpt.get("train_config") or {}
        differ = sorted(k for k, v in asdict(config).items()
                        if k not in RESUMABLE_CHANGES and k in saved and saved[k] != v)
        if differ:
            raise ValueError(f"checkpoint {resume} was trained with other settings: "
                             + ", ".join(f"{k} = {saved[k]!r} there, {getattr(config, k)!r} now" for k in differ)
                             + f"; only {', '.join(RESUMABLE_CHANGES)} may change when resuming")
        load_weights(net, ckpt["net"], resume)
        load_weights(ema, ckpt["ema"], resume)
        optimizer.load_state_dict(ckpt["optimizer"])
        generator.set_state(ckpt["generator"])
        losses, step = list(ckpt["losses"]), int(ckpt["step"])
    model = net
    if parallel.world_size > 1:
        distributed.check_same_data(data, parallel)
        # DDP copies rank 0's weights to every process and averages the gradients in backward()
        model = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
        if resume is None:
            ema.load_state_dict(net.state_dict())   # the EMA starts from rank 0's initial weights too
    data_src = data.detach().to(_keep_data_on(device, data))
    shard = parallel.shard(config.batch_size)
    start = time.perf_counter()
    desc = f"training {method.name}" + (f" on {parallel.world_size} processes" if parallel.world_size > 1 else "")
    bar = tqdm(total=config.steps, initial=step, desc=desc, disable=not progress or not parallel.is_main)
    while step < config.steps:
        large = draw_large_batch(data_src, config.large_batch_size, generator, device, parallel)
        for group in optimizer.param_groups:
            group["lr"] = config.lr_at(step)
        model.train()
        loss = loss_on_batch(method, model, large, config.batch_size, generator, shard=shard, autocast=autocast)
        mean_loss = distributed.mean_over_processes(loss, parallel)   # the global mini-batch's loss, on every rank
        if not torch.isfinite(mean_loss):
            bar.close()
            raise FloatingPointError(f"loss became {mean_loss.item()} at step {step}: training diverged. Try a "
                                     f"smaller lr (now {config.lr}) or check the data for NaN/inf.")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip)
        optimizer.step()
        with torch.no_grad():
            for p_ema, p in zip(ema.parameters(), net.parameters()):
                p_ema.lerp_(p, 1 - config.ema_decay)
        losses.append(mean_loss.item())
        step += 1
        bar.update(1)
        if step % 50 == 0 or step == config.steps:
            bar.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.4f}")
        if callback is not None and parallel.is_main and (step % callback_every == 0 or step == config.steps):
            callback(step, losses)
        if out_dir is not None and parallel.is_main and (
                step == config.steps or (config.checkpoint_every and step % config.checkpoint_every == 0)):
            save_checkpoint(Path(out_dir) / "checkpoint.pt", method, net, ema, optimizer, generator,
                            losses, step, config)
    bar.close()
    distributed.barrier(parallel)   # the last checkpoint is on disk before any process returns
    seconds = time.perf_counter() - start
    trim_freed_memory()           # the autograd graphs' small freed buffers go back to the system
    return TrainResult(net=net, ema=ema, losses=losses, step=step, seconds=seconds)


def step_flops(method: Method, net: nn.Module, large_batch: torch.Tensor, batch_size: int) -> dict[str, int]:
    """Floating-point operations of one training step, counted by torch.utils.flop_counter.FlopCounterMode.

    large_batch: (L, *shape) on the network's device; the mini-batch is its first batch_size rows.
    returns: {"target": the field target (method.target), "network": forward and backward, "total": both}.
    FlopCounterMode counts matrix products, convolutions and attention (2 FLOPs per multiply-add), not the
    elementwise work (activations, norms, Adam, EMA). Every count is linear in batch_size at a fixed L.
    """
    from torch.utils.flop_counter import FlopCounterMode

    x, t = method.perturb(large_batch[:batch_size], generator=torch.Generator().manual_seed(0))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        method.target(x, t, large_batch)
    target = counter.get_total_flops()
    x_in, c = method.network_input(x, t)
    with FlopCounterMode(display=False) as counter:
        net(x_in, c).float().pow(2).sum().backward()
    net.zero_grad(set_to_none=True)
    network = counter.get_total_flops()
    return {"target": target, "network": network, "total": target + network}


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

"""One training loop for every method: regress method.target with the network, 1/2 ||f - v||^2.

Per step: draw a large batch B_L from the data (its first `batch_size` points are the mini-batch B),
perturb B, compute the target (method.target sees a methods.Batch: B_L and the clean points of B), take an Adam
step (warm-up, cosine decay, gradient clipping), update the EMA weights (with a warm-up of the decay). Checkpoints
(pfgm_lite.checkpoint) are written atomically and read with torch.load(weights_only=True); resuming restores
weights, optimizer, RNG and history exactly. The same loop runs on K processes under torchrun
(DistributedDataParallel; see distributed.py), and on a GPU with the network in bfloat16 autocast while the target
stays in the data's float32. Class labels (optional) travel with the data through every step.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from . import distributed
from .checkpoint import (
    check_writable_folder,
    load_checkpoint,
    load_model,
    load_weights,
    network_config,
    save_checkpoint,
)
from .checks import check_int, check_integer_tensor, check_positive
from .data import fingerprint
from .distributed import Parallel
from .methods import Batch, Method, network_prediction
from .nets import NO_LABEL
from .runtime import pick_device, trim_freed_memory

__all__ = ["RESUMABLE_CHANGES", "TrainConfig", "TrainResult", "draw_large_batch", "regression_pair", "loss_on_batch",
           "train", "train_or_load", "step_flops", "ema_share_of_initial_weights",
           # checkpoint I/O lives in pfgm_lite.checkpoint; these names stay here for the notebooks
           "load_checkpoint", "load_model", "load_weights", "save_checkpoint"]

#: TrainConfig fields a resumed run may change (more steps extends a run; its cosine decay follows the new total)
RESUMABLE_CHANGES = ("steps", "device", "checkpoint_every")
#: what a checkpoint's train_config lacks, read as: checkpoints made before the EMA warm-up trained without it
OLD_CONFIG_DEFAULTS = {"ema_warmup": False, "p_uncond": 0.0}


@dataclass
class TrainConfig:
    """Training hyper-parameters (defaults suit 2D toys on a CPU).

    ema_decay, ema_warmup: the EMA weights e follow e <- d_k e + (1 - d_k) w after optimizer step k = 0, 1, ...; with
    the warm-up d_k = min(ema_decay, (1 + k) / (10 + k)) (the decay schedule of TensorFlow's ExponentialMovingAverage
    with num_updates, also diffusers' EMAModel), so the random initial weights are forgotten within the first steps;
    without it d_k = ema_decay, and ema_decay^k of the EMA is still the initial weights after k steps (0.999: 13.5% at
    2000 steps). ema_decay_at(k) gives d_k; ema_share_of_initial_weights measures what is left.
    p_uncond: with labels, the share of training points whose label is dropped to nets.NO_LABEL each step, so that
    one network learns the conditional and the unconditional prediction (classifier-free guidance, Ho & Salimans
    2022); 0 trains the conditional one only.
    """

    steps: int = 2000
    batch_size: int = 256
    large_batch_size: int = 2048
    lr: float = 1e-3
    warmup: int = 200
    cosine: bool = True
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    ema_warmup: bool = True
    seed: int = 0
    device: str = "auto"
    checkpoint_every: int = 0
    p_uncond: float = 0.0

    def validate(self, n_data: int) -> None:
        """Raise a clear error for a bad setting (n_data: dataset size)."""
        for name in ("steps", "batch_size", "large_batch_size"):
            check_int(name, getattr(self, name))
        check_int("warmup", self.warmup, minimum=0)
        check_int("checkpoint_every", self.checkpoint_every, minimum=0)
        check_int("seed", self.seed, minimum=0)
        check_positive("lr", self.lr)
        check_positive("grad_clip", self.grad_clip)
        check_positive("ema_decay", self.ema_decay, allow_zero=True)
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if not isinstance(self.p_uncond, (int, float)) or not 0 <= self.p_uncond < 1:
            raise ValueError(f"p_uncond must be a share in [0, 1), got {self.p_uncond!r}")
        if not isinstance(self.ema_warmup, bool):
            raise TypeError(f"ema_warmup must be True or False, got {self.ema_warmup!r}")
        if not isinstance(self.device, (str, torch.device)):
            raise TypeError(f"device must be a string such as 'auto', 'cpu' or 'cuda', got {self.device!r}")
        if self.batch_size > self.large_batch_size:
            raise ValueError(f"batch_size ({self.batch_size}) must not exceed large_batch_size "
                             f"({self.large_batch_size}): the mini-batch is part of the large batch")
        if self.large_batch_size > n_data:
            raise ValueError(f"large_batch_size ({self.large_batch_size}) is larger than the dataset "
                             f"({n_data} points)")

    def ema_decay_at(self, step: int) -> float:
        """The EMA decay d_k of optimizer step k (0-based): min(ema_decay, (1 + k) / (10 + k)) with the warm-up."""
        return min(self.ema_decay, (1 + step) / (10 + step)) if self.ema_warmup else self.ema_decay

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
                     parallel: Parallel = Parallel(), labels: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The step's large batch B_L: large_batch_size rows of data (n, *shape) drawn without replacement, on device,
    and their labels (L,) (None without labels).

    With K processes each one loads only its L/K rows and one all_gather assembles B_L (distributed.gather_rows; the
    labels in a second one): every process draws the same indices (same generator), so every process ends up with
    the one-process B_L.
    """
    idx = torch.randperm(data.shape[0], generator=generator)[:large_batch_size]
    if parallel.world_size == 1:
        rows = idx.to(data.device)
        return data[rows].to(device), None if labels is None else labels[idx.to(labels.device)].to(device)
    mine = idx[parallel.shard(large_batch_size)]
    large = distributed.gather_rows(data[mine.to(data.device)], parallel, device)
    if labels is None:
        return large, None
    return large, distributed.gather_rows(labels[mine.to(labels.device)], parallel, device)


def regression_pair(method: Method, large_batch: torch.Tensor, batch_size: int, generator: torch.Generator,
                    shard: slice = slice(None), large_labels: torch.Tensor | None = None, p_uncond: float = 0.0):
    """(x, t, target, labels) for the rows `shard` of the mini-batch (the first batch_size points of large_batch).

    p_uncond: with labels, each mini-batch label is dropped to nets.NO_LABEL with this probability (drawn for the
    whole mini-batch from `generator` after the perturbation, and only when p_uncond > 0, so runs without it draw
    what they drew before); the target sees the dropped labels too.

    The whole mini-batch is perturbed, so the random draws (and the generator's state afterwards) are those of one
    process whatever the shard. method.target sees the whole large batch (PFGM needs all of B_L) and the shard's own
    clean points y (EDM's and PFGM++'s target), as a methods.Batch; it runs without gradients and outside any
    autocast, in the data's dtype (float32 or float64).
    x: (b, *shape), t: (b,), target: (b, K), labels: (b,) or None, with b the rows of the shard.
    """
    y = large_batch[:batch_size]
    x, t = method.perturb(y, generator=generator)
    x, t = x[shard], t[shard]
    labels = None if large_labels is None else large_labels[:batch_size]
    if labels is not None and p_uncond > 0:
        dropped = torch.rand(batch_size, generator=generator, device=generator.device) < p_uncond
        labels = torch.where(dropped.to(labels.device), torch.full_like(labels, NO_LABEL), labels)
    labels = None if labels is None else labels[shard]
    batch = Batch(large=large_batch, y=y[shard], labels=labels, large_labels=large_labels)
    with torch.no_grad(), torch.autocast(x.device.type, enabled=False):
        target = method.target(x, t, batch)
    return x, t, target, labels


def loss_on_batch(method: Method, net: nn.Module, large_batch: torch.Tensor, batch_size: int,
                  generator: torch.Generator, shard: slice = slice(None),
                  autocast: torch.dtype | None = None, large_labels: torch.Tensor | None = None,
                  p_uncond: float = 0.0) -> torch.Tensor:
    """1/2 ||net(x, t) - target||^2 averaged over the mini-batch (the first batch_size points of large_batch).

    shard:        the rows of the mini-batch this process trains on (regression_pair); all of them by default
    autocast:     run the network in this dtype (torch.bfloat16) under torch.autocast; the loss is in the target's dtype
    large_labels: (L,) class labels of large_batch for a class-conditional network (net(x_in, c, labels)), or None
    p_uncond:     the share of labels dropped to nets.NO_LABEL (regression_pair)
    """
    x, t, target, labels = regression_pair(method, large_batch, batch_size, generator, shard, large_labels,
                                           p_uncond)
    x_in, c = method.network_input(x, t)
    with torch.autocast(x.device.type, dtype=autocast, enabled=autocast is not None):
        prediction = network_prediction(net, x_in, c, labels)
    return 0.5 * ((prediction.to(target.dtype) - target) ** 2).sum(dim=1).mean()


def _keep_data_on(device: torch.device, data: torch.Tensor) -> torch.device:
    """Where the dataset lives during training: on the GPU when it takes under a quarter of its memory (no copy
    from the host each step), else on the CPU. The rows drawn are the same either way."""
    if device.type == "cuda" and data.numel() * data.element_size() < torch.cuda.get_device_properties(
            device).total_memory / 4:
        return device
    return torch.device("cpu")


def check_labels(labels: torch.Tensor | None, n_data: int, net: nn.Module) -> None:
    """Raise a clear error unless labels are None, or (n_data,) integers in [0, net.num_classes) for a network that
    takes labels (a class-conditional network has an attribute num_classes > 0)."""
    if labels is None:
        return
    classes = getattr(net, "num_classes", 0)
    if not classes:
        raise ValueError(f"labels were given, but this {type(net).__name__} takes none (it has no num_classes > 0): "
                         f"train without labels, or use a class-conditional network")
    check_integer_tensor("labels", labels)
    if labels.shape != (n_data,):
        raise ValueError(f"labels must have shape ({n_data},), one per data point, got {tuple(labels.shape)}")
    if n_data and (labels.min() < 0 or labels.max() >= classes):
        raise ValueError(f"labels must lie in [0, {classes}) for a network of {classes} classes, got "
                         f"{int(labels.min())} to {int(labels.max())}")


def train(method: Method, net: nn.Module, data: torch.Tensor, config: TrainConfig,
          out_dir: str | Path | None = None, resume: str | Path | None = None,
          progress: bool = True, callback=None, callback_every: int = 50,
          parallel: Parallel | None = None, precision: str = "auto",
          labels: torch.Tensor | None = None) -> TrainResult:
    """Train `net` on `data` (n, *shape) for config.steps steps; checkpoint to out_dir/checkpoint.pt.

    resume:    a checkpoint path; training continues from its step with its weights, optimizer and RNG state.
    callback:  called as callback(step, losses) every `callback_every` steps and at the end (e.g. a live plot).
    parallel:  this process's place among K processes (distributed.process_group()); None: the group already
               joined with torch.distributed, if any, else one process. config.batch_size and large_batch_size
               are global: each process trains on batch_size / K points (distributed.py says how a step splits).
               Only rank 0 writes checkpoints, shows the progress bar and calls the callback.
    precision: 'auto' (bf16 autocast for the network on a GPU, float32 on a CPU), 'bf16' or 'fp32'; the target is
               always computed in the data's dtype.
    labels:    (n,) class labels of the data for a class-conditional network (see check_labels), or None.
    Every setting is checked before the first step: a bad one, a network that cannot be saved (no `config`) with
    out_dir given, or an out_dir that cannot be written is an error at once, not after training.
    """
    method.check_data("data", data)
    config.validate(data.shape[0])
    check_labels(labels, data.shape[0], net)
    if callback is not None:
        check_int("callback_every", callback_every)
    parallel = distributed.current() if parallel is None else parallel
    distributed.check_batch_split(config.batch_size, config.large_batch_size, parallel.world_size)
    device = pick_device(config.device)
    if device.type == "cuda" and device.index is None and parallel.world_size > 1:
        device = torch.device("cuda", torch.cuda.current_device())   # the GPU process_group chose: LOCAL_RANK
    autocast = distributed.autocast_dtype(precision, device)
    if out_dir is not None:
        network_config(net)                              # a network that cannot be saved fails now, not at the end
        if parallel.is_main:
            check_writable_folder(out_dir)
    data_print = fingerprint(data)
    net = net.to(device)
    ema = copy.deepcopy(net).requires_grad_(False)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    losses: list[float] = []
    step = 0
    if resume is not None:
        ckpt = distributed.broadcast_from_main(lambda: load_checkpoint(resume), parallel, device)
        if ckpt["method"] != method.to_config():
            raise ValueError(f"checkpoint {resume} was made for a different method configuration")
        saved = {**OLD_CONFIG_DEFAULTS, **(ckpt.get("train_config") or {})}
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
        distributed.check_same_data(data, parallel, device)
        # DDP copies rank 0's weights to every process and averages the gradients in backward()
        model = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
        if resume is None:
            ema.load_state_dict(net.state_dict())   # the EMA starts from rank 0's initial weights too
    data_src = data.detach().to(_keep_data_on(device, data))
    labels_src = None if labels is None else labels.to(data_src.device)
    shard = parallel.shard(config.batch_size)
    start = time.perf_counter()
    desc = f"training {method.name}" + (f" on {parallel.world_size} processes" if parallel.world_size > 1 else "")
    bar = tqdm(total=config.steps, initial=step, desc=desc, disable=not progress or not parallel.is_main)
    while step < config.steps:
        large, large_labels = draw_large_batch(data_src, config.large_batch_size, generator, device, parallel,
                                               labels_src)
        for group in optimizer.param_groups:
            group["lr"] = config.lr_at(step)
        model.train()
        loss = loss_on_batch(method, model, large, config.batch_size, generator, shard=shard, autocast=autocast,
                             large_labels=large_labels, p_uncond=config.p_uncond)
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
            weight = 1 - config.ema_decay_at(step)
            for p_ema, p in zip(ema.parameters(), net.parameters()):
                p_ema.lerp_(p, weight)
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
                            losses, step, config, data_print=data_print)
    bar.close()
    distributed.barrier(parallel, device)   # the last checkpoint is on disk before any process returns
    seconds = time.perf_counter() - start
    trim_freed_memory()           # the autograd graphs' small freed buffers go back to the system
    return TrainResult(net=net, ema=ema, losses=losses, step=step, seconds=seconds)


def ema_share_of_initial_weights(config: TrainConfig, steps: int | None = None) -> float:
    """How much of the EMA after `steps` optimizer steps (default config.steps) is still the initial weights:
    prod_{k < steps} d_k, with d_k = config.ema_decay_at(k) (computed in log space)."""
    steps = config.steps if steps is None else check_int("steps", steps, minimum=0)
    logs = sum(math.log(d) if d > 0 else -math.inf for d in (config.ema_decay_at(k) for k in range(steps)))
    return math.exp(logs)


def _mismatch(ckpt: dict, method: Method, net: nn.Module, config: TrainConfig, data_print: list[float]) -> list[str]:
    """What differs between a checkpoint and the run that train_or_load is asked for (the step count aside)."""
    saved_config = {**OLD_CONFIG_DEFAULTS, **(ckpt.get("train_config") or {})}
    wanted = {k: v for k, v in asdict(config).items() if k not in ("device", "checkpoint_every")}
    differ = []
    if ckpt["method"] != method.to_config():
        differ.append("the method")
    if ckpt["network"] != network_config(net):
        differ.append("the network")
    changed = sorted(k for k, v in wanted.items() if saved_config.get(k) != v)
    if changed:
        differ.append("the training settings (" + ", ".join(f"{k}: {saved_config.get(k)!r} there, {wanted[k]!r} now"
                                                            for k in changed) + ")")
    saved_print = ckpt.get("data")
    if saved_print is None or not torch.allclose(torch.tensor(saved_print, dtype=torch.float64),
                                                 torch.tensor(data_print, dtype=torch.float64), rtol=1e-9, atol=0.0):
        differ.append("the data" if saved_print is not None else "the data (the checkpoint does not record it)")
    return differ


def train_or_load(method: Method, net: nn.Module, data: torch.Tensor, config: TrainConfig,
                  out_dir: str | Path, progress: bool = True, overwrite: bool = False,
                  labels: torch.Tensor | None = None) -> TrainResult:
    """Load out_dir/checkpoint.pt if it was made with this method, network, config and data; otherwise train (and
    save) it.

    A checkpoint of the same run (config.steps included) that stopped early is resumed. One of another run is never
    overwritten silently: a ValueError says what differs, unless overwrite=True (then it is trained anew over it).
    Lets a notebook reuse the model another notebook trained, and retrain when the recipe changed.
    """
    path = Path(out_dir) / "checkpoint.pt"
    if not path.exists():
        return train(method, net, data, config, out_dir=out_dir, progress=progress, labels=labels)
    ckpt = load_checkpoint(path)
    differ = _mismatch(ckpt, method, net, config, fingerprint(data))
    if differ and not overwrite:
        raise ValueError(f"{path} holds another run than the one asked for: {'; '.join(differ)} differ. Pass "
                         f"overwrite=True to train this one over it, or choose another folder")
    if differ:
        return train(method, net, data, config, out_dir=out_dir, progress=progress, labels=labels)
    if int(ckpt["step"]) < config.steps:           # the same run, interrupted: go on from where it stopped
        return train(method, net, data, config, out_dir=out_dir, resume=path, progress=progress, labels=labels)
    return _finished_result(ckpt, net, config, path)


def _finished_result(ckpt: dict, net: nn.Module, config: TrainConfig, path: Path) -> TrainResult:
    load_weights(net, ckpt["net"], path)
    ema = copy.deepcopy(net).requires_grad_(False)
    load_weights(ema, ckpt["ema"], path)
    device = pick_device(config.device)
    return TrainResult(net=net.to(device), ema=ema.to(device), losses=list(ckpt["losses"]), step=int(ckpt["step"]))


def load_trained(method: Method, net: nn.Module, data: torch.Tensor, config: TrainConfig,
                 out_dir: str | Path) -> TrainResult:
    """Load out_dir/checkpoint.pt, a finished run of this method, network, config and data; never trains.

    For measurements that must use the networks another script trained: a missing checkpoint raises
    FileNotFoundError, one of another run or one that stopped before config.steps raises ValueError.
    """
    path = Path(out_dir) / "checkpoint.pt"
    if not path.exists():
        raise FileNotFoundError(f"out_dir: expected a trained network at {path}, found none")
    ckpt = load_checkpoint(path)
    differ = _mismatch(ckpt, method, net, config, fingerprint(data))
    if differ:
        raise ValueError(f"{path} holds another run than the one asked for: {'; '.join(differ)} differ")
    if int(ckpt["step"]) < config.steps:
        raise ValueError(f"{path} stopped at step {int(ckpt['step'])} of {config.steps}: finish it first "
                         f"(train_or_load resumes it)")
    return _finished_result(ckpt, net, config, path)


def step_flops(method: Method, net: nn.Module, large_batch: torch.Tensor, batch_size: int) -> dict[str, int]:
    """Floating-point operations of one training step, counted by torch.utils.flop_counter.FlopCounterMode.

    large_batch: (L, *shape) on the network's device; the mini-batch is its first batch_size rows.
    returns: {"target": the field target (method.target), "network": forward and backward, "total": both}.
    FlopCounterMode counts matrix products, convolutions and attention (2 FLOPs per multiply-add), not the
    elementwise work (activations, norms, Adam, EMA). Every count is linear in batch_size at a fixed L.
    """
    from torch.utils.flop_counter import FlopCounterMode

    y = large_batch[:batch_size]
    x, t = method.perturb(y, generator=torch.Generator().manual_seed(0))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        method.target(x, t, Batch(large=large_batch, y=y))
    target = counter.get_total_flops()
    x_in, c = method.network_input(x, t)
    with FlopCounterMode(display=False) as counter:
        net(x_in, c).float().pow(2).sum().backward()
    net.zero_grad(set_to_none=True)
    network = counter.get_total_flops()
    return {"target": target, "network": network, "total": target + network}

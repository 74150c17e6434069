"""Training on several processes with PyTorch's own engine: torch.distributed, DistributedDataParallel, torchrun.

    torchrun --nnodes=1 --nproc_per_node=K --master_addr=127.0.0.1 --master_port=29500 -m pfgm_lite train ...

torchrun starts K copies of the program and tells each one its place through the environment (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR, MASTER_PORT). process_group() reads it, joins the group (gloo on CPUs, nccl on GPUs) and
returns a Parallel; started without torchrun (or with one process) it joins nothing and returns Parallel(), the
single process, so the same program runs both ways.

How train.train splits a step over K processes (B = batch_size, L = large_batch_size, both divisible by K):
  - every process draws the same indices of the large batch B_L (the same generator, seeded alike), loads only
    its own L/K rows and all_gathers the rest (gather_rows): every process then holds the whole B_L;
  - every process perturbs the whole mini-batch (the first B rows of B_L) with the same random draws, and keeps
    its own B/K rows (Parallel.shard): their target comes from the whole B_L, as in one process (reordered to start
    with the rank's own clean points, as method.target expects: train.regression_pair);
  - DistributedDataParallel averages the gradients of the K shards, so the step is the one-process step on the
    global mini-batch, up to the order of float32 additions. The random stream does not depend on K, so a run
    can stop and resume with another number of processes.
Why one gathered B_L rather than a large batch of each rank's own: the PFGM target of a point is a softmax over
all of B_L (field.empirical_field); a rank's own L/K rows would be a K times smaller large batch, a more biased
target, and results that change with K. Gathering costs one all_gather of L x N numbers per step (CIFAR-10:
4096 x 3072 floats, 50 MB: under a millisecond over NVLink), less than each rank copying all L rows itself
(4096 CIFAR-10 rows took 49 ms on one CPU core here; each rank now copies L/K). The price of K-independent draws:
each rank draws the whole mini-batch's perturbation (B x N numbers), not only its share.
Only rank 0 writes checkpoints, progress bars and logs; resuming, rank 0 reads the checkpoint and sends it to the
others (broadcast_from_main), so the other machines need not see its file.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Callable, Iterator, TypeVar

import torch
import torch.distributed as dist

from .data import fingerprint
from .runtime import pick_device

T = TypeVar("T")
BACKENDS = ("auto", "gloo", "nccl")
PRECISIONS = ("auto", "bf16", "fp32")


@dataclass(frozen=True)
class Parallel:
    """This process's place in a run: rank of world_size processes, local_rank on its machine, the backend.

    Parallel() is one process on its own (rank 0 of 1, no process group).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes checkpoints, progress bars and logs."""
        return self.rank == 0

    def shard(self, n: int) -> slice:
        """This process's rows of a batch of n (n divisible by world_size): [rank n/K, (rank + 1) n/K)."""
        if self.world_size == 1:
            return slice(None)
        per = n // self.world_size
        return slice(self.rank * per, (self.rank + 1) * per)

    def comm_device(self, device: torch.device) -> torch.device:
        """Where collective tensors must live, given the process's training device: that device (its GPU) under
        nccl, which exchanges CUDA tensors only; the CPU under gloo."""
        return device if self.backend == "nccl" else torch.device("cpu")


def _env_int(name: str) -> int:
    value = os.environ.get(name)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an integer (torchrun sets it), got {value!r}") from None


def launch_env() -> Parallel | None:
    """(rank, world size, local rank) from torchrun's environment variables, or None when no launcher set them."""
    if "WORLD_SIZE" not in os.environ:
        return None
    world = _env_int("WORLD_SIZE")
    rank = _env_int("RANK")
    local = _env_int("LOCAL_RANK") if "LOCAL_RANK" in os.environ else rank
    if world < 1 or not 0 <= rank < world or local < 0:
        raise ValueError(f"RANK, WORLD_SIZE and LOCAL_RANK must satisfy 0 <= RANK < WORLD_SIZE, LOCAL_RANK >= 0; "
                         f"got RANK={rank}, WORLD_SIZE={world}, LOCAL_RANK={local}")
    return Parallel(rank=rank, world_size=world, local_rank=local)


def launched_world_size() -> int:
    """WORLD_SIZE as torchrun set it (1 without a launcher): known before joining the group."""
    env = launch_env()
    return 1 if env is None else env.world_size


def resolve_backend(backend: str, device: str = "auto") -> str:
    """The torch.distributed backend for `backend` ('auto', 'gloo' or 'nccl') on `device`: auto = nccl on GPUs,
    gloo on CPUs. Raises ValueError for an unknown name or nccl without GPUs."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    dev = pick_device(device)
    if backend == "auto":
        return "nccl" if dev.type == "cuda" and dist.is_nccl_available() else "gloo"
    if backend == "nccl":
        if not torch.cuda.is_available():
            raise ValueError("backend 'nccl' needs CUDA GPUs, but torch.cuda.is_available() is False on this "
                             "machine: use backend 'gloo' (CPU) or 'auto'")
        if dev.type != "cuda":
            raise ValueError(f"backend 'nccl' exchanges tensors between GPUs, but device is {device!r}: use device "
                             f"'cuda' or 'auto', or backend 'gloo'")
        if not dist.is_nccl_available():
            raise ValueError("backend 'nccl' is not built into this torch: use backend 'gloo'")
    return backend


def check_batch_split(batch_size: int, large_batch_size: int, world_size: int) -> None:
    """Raise ValueError unless both batches split evenly over world_size processes."""
    for name, value in (("batch_size", batch_size), ("large_batch_size", large_batch_size)):
        if value % world_size:
            raise ValueError(f"{name} ({value}) must be divisible by the number of processes ({world_size}): each "
                             f"process takes {name} / {world_size} of its rows; use a multiple of {world_size}, "
                             f"e.g. {value - value % world_size or world_size}")


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of the network for `precision` on `device`, or None for float32.

    'auto': bfloat16 on a CUDA GPU that supports it, float32 elsewhere (CPU); 'bf16' always; 'fp32' never.
    The field target is never autocast (train.regression_pair computes it outside).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32":
        return None
    if device.type == "cuda" and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        if precision == "bf16":
            raise ValueError(f"precision 'bf16' needs a GPU with bfloat16 support, and {torch.cuda.get_device_name()} "
                             f"has none: use precision 'fp32' or 'auto'")
        return None
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    return torch.bfloat16


def current() -> Parallel:
    """The process group the caller already joined (torch.distributed initialized), else Parallel()."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return Parallel()
    local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
    return Parallel(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local,
                    backend=str(dist.get_backend()))


@contextlib.contextmanager
def process_group(backend: str = "auto", device: str = "auto") -> Iterator[Parallel]:
    """Join the group torchrun describes in the environment for the duration of the block; yield this Parallel.

    Without torchrun (or WORLD_SIZE=1) nothing is joined and Parallel() is yielded. With CUDA, each process uses
    GPU LOCAL_RANK (torch.cuda.set_device). The group is destroyed on leaving, also after an error.
    """
    name = resolve_backend(backend, device)
    env = launch_env()
    if env is None or env.world_size == 1:
        yield Parallel()
        return
    if pick_device(device).type == "cuda":
        count = torch.cuda.device_count()
        if env.local_rank >= count:
            raise ValueError(f"LOCAL_RANK {env.local_rank} needs GPU {env.local_rank}, but this machine shows {count} "
                             f"GPU(s): start at most {count} processes per machine (--nproc_per_node={count})")
        torch.cuda.set_device(env.local_rank)
    dist.init_process_group(backend=name)
    try:
        yield Parallel(rank=env.rank, world_size=env.world_size, local_rank=env.local_rank, backend=name)
    finally:
        dist.destroy_process_group()


def gather_rows(local: torch.Tensor, parallel: Parallel, device: torch.device) -> torch.Tensor:
    """Concatenate every process's rows in rank order (one all_gather): (n/K, *shape) -> (n, *shape) on device."""
    if parallel.world_size == 1:
        return local.to(device)
    local = local.to(parallel.comm_device(device)).contiguous()
    parts = [torch.empty_like(local) for _ in range(parallel.world_size)]
    dist.all_gather(parts, local)
    return torch.cat(parts).to(device)


def mean_over_processes(value: torch.Tensor, parallel: Parallel) -> torch.Tensor:
    """The mean of a tensor over the processes (one all_reduce); every process gets it. Detached."""
    if parallel.world_size == 1:
        return value.detach()
    total = value.detach().to(parallel.comm_device(value.device), copy=True)
    dist.all_reduce(total)
    return (total / parallel.world_size).to(value.device)


def broadcast_from_main(make: Callable[[], T], parallel: Parallel, device: torch.device | str | None = None) -> T:
    """Run make() on rank 0 and hand its result (or its exception) to every process: all return it or all raise.

    device: the process's training device; under nccl the pickled object travels through it (None: the current
    CUDA device, which process_group sets)."""
    if parallel.world_size == 1:
        return make()
    box: list = [None]
    if parallel.is_main:
        try:
            box[0] = (True, make())
        except Exception as exc:  # sent to the others, then raised everywhere
            box[0] = (False, exc)
    comm = None if device is None or parallel.backend != "nccl" else parallel.comm_device(pick_device(device))
    dist.broadcast_object_list(box, src=0, device=comm)
    ok, value = box[0]
    if not ok:
        raise value
    return value


def check_same_data(data: torch.Tensor, parallel: Parallel, device: torch.device | str = "cpu") -> None:
    """Raise ValueError on every process unless all hold the same data (data.fingerprint: shape and float64 sums).

    data: (n, *shape), wherever it lives; device: the process's training device (under nccl the exchange runs on it).
    Each process loads its rows of the large batch from its own copy, so copies must agree.
    """
    if parallel.world_size == 1:
        return
    comm = parallel.comm_device(pick_device(device))
    mine = torch.tensor(fingerprint(data), dtype=torch.float64, device=comm)
    everyone = [torch.empty_like(mine) for _ in range(parallel.world_size)]
    dist.all_gather(everyone, mine)
    everyone = [t.cpu() for t in everyone]
    for rank, theirs in enumerate(everyone):
        # the same numbers summed on another machine (other thread count) may differ by float64 rounding only
        if not torch.allclose(theirs, everyone[0], rtol=1e-9, atol=0.0):
            raise ValueError(f"every process must train on the same data, but rank {rank} holds other data than "
                             f"rank 0 (size {int(theirs[0])} vs {int(everyone[0][0])}, checksum {theirs[2]:.9g} vs "
                             f"{everyone[0][2]:.9g}): build the dataset the same way (same seed) on every process")


def barrier(parallel: Parallel, device: torch.device | str | None = None) -> None:
    """Wait until every process gets here (no-op for one process). device: the training device; under nccl the
    barrier runs on that GPU (None: the current CUDA device)."""
    if parallel.world_size == 1:
        return
    gpu = None if device is None else pick_device(device)
    if parallel.backend == "nccl" and gpu is not None and gpu.type == "cuda" and gpu.index is not None:
        dist.barrier(device_ids=[gpu.index])
    else:
        dist.barrier()

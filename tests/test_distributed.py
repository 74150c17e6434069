"""Facts about pfgm_lite/distributed.py and the multi-process path of train.train, launched as README "Scaling up"
says: two processes under torchrun train as one process does on the same global batch, only rank 0 writes, a run
resumes on another number of processes, two machines (c10d rendezvous) give the two-process run, each rank's field
target is the one-process target, any Method trains through the same path, bad settings fail clearly before any
process waits for another. Also the precision switch, train.step_flops and the CIFAR-10 recipe of that section."""
from __future__ import annotations

import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pfgm_lite import distributed, recipes
from pfgm_lite.cli import main
from pfgm_lite.data import sample_toy
from pfgm_lite.distributed import Parallel
from pfgm_lite.methods import EDM, PFGM, Batch, PFGMpp
from pfgm_lite.nets import MLP
from pfgm_lite.perturb import hyperparameters_for
from pfgm_lite.train import (
    TrainConfig,
    draw_large_batch,
    load_checkpoint,
    loss_on_batch,
    regression_pair,
    step_flops,
    train,
)

EPS32 = torch.finfo(torch.float32).eps
B, L, STEPS, LR = 32, 128, 8, 0.1
# the README's commands with small sizes; lr 0.1 (warm-up 200) moves the weights by 11% (relative norm) in 8 steps,
# so the comparisons below see the gradients, not only the initial weights
TRAIN = ["train", "--data", "moons", "--n-data", "500", "--batch-size", str(B), "--large-batch-size", str(L),
         "--lr", str(LR), "--device", "cpu"]
LAUNCH_TIMEOUT = 150


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun() -> list[str]:
    """The torchrun next to this Python (the venv's), else the same launcher as a module."""
    script = Path(sys.executable).with_name("torchrun")
    return [str(script)] if script.exists() else [sys.executable, "-m", "torch.distributed.run"]


def launch(*commands: list[str], cwd: Path, timeout: float = LAUNCH_TIMEOUT) -> list[subprocess.CompletedProcess]:
    """Run the commands side by side (each in its own process group), wait for all; on a timeout or any error kill
    every process group they made (launcher and workers), so no worker outlives the test."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    procs = [subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              start_new_session=True) for cmd in commands]
    deadline = time.monotonic() + timeout
    results = []
    try:
        for proc, cmd in zip(procs, commands):
            out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            results.append(subprocess.CompletedProcess(cmd, proc.returncode, out, err))
    except BaseException:
        for proc in procs:
            if proc.poll() is None:                  # still running: end its group (the launcher and its workers)
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        raise
    return results


def initial_mlp(seed: int = 0) -> MLP:
    """The toy network the command line builds for --seed `seed` (its initial weights)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MLP(2)


def flat(state: dict) -> torch.Tensor:
    return torch.cat([v.double().flatten() for v in state.values()])


def loss_rtol(batch: int) -> float:
    """Relative tolerance between the loss of one process and of K: each loss is a float32 mean of `batch`
    non-negative terms summed in another order (K partial means, then the all-reduce); recursive summation of n
    terms errs by at most (n - 1) eps32/2 relative, so two orders differ by at most (n - 1) eps32 (3.7e-6 for 32).
    The weights differ by the same relative amount in each step's gradient, which moves the next losses far less
    (measured: 1 ulp, 1.1e-7, over 16 steps)."""
    return (batch - 1) * EPS32


def weight_rtol(steps: int, batch: int) -> float:
    """Relative tolerance on all the weights together, ||w_K - w_1|| / ||w_1||, after `steps` steps: each step's
    gradient differs in norm by the rounding of loss_rtol, and the steps add these up (to first order). No bound holds
    weight by weight: Adam divides each coordinate by its own gradient scale, so the few coordinates whose gradient is
    mostly cancellation turn their rounding into a whole step (measured: 1.4e-6 on one weight of 0.1, the rest ~1e-9);
    they hardly change the norm (measured: 1.1e-7 relative against 5.9e-5 for 16 steps)."""
    return steps * loss_rtol(batch)


def relative_difference(a: dict, b: dict) -> float:
    return ((flat(a) - flat(b)).norm() / flat(b).norm()).item()


# --- two processes under torchrun, as the README launches them -------------------------------------------------

@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    """torchrun --nnodes=1 --nproc_per_node=2 ... -m pfgm_lite train ... (gloo, CPU): STEPS steps."""
    root = tmp_path_factory.mktemp("ddp")
    cmd = [*torchrun(), "--nnodes=1", "--nproc_per_node=2", "--master_addr=127.0.0.1", f"--master_port={free_port()}",
           "-m", "pfgm_lite", *TRAIN, "--backend", "gloo", "--steps", str(STEPS), "--out", "run2"]
    (done,) = launch(cmd, cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(root=root, run=root / "run2", stdout=done.stdout, stderr=done.stderr)


@pytest.fixture(scope="module")
def one_process_run(tmp_path_factory):
    """The same command on one process, in this process (main is the entry point of python -m pfgm_lite), 2 STEPS."""
    out = tmp_path_factory.mktemp("single") / "run1"
    assert main([*TRAIN, "--steps", str(2 * STEPS), "--out", str(out)]) == 0
    return load_checkpoint(out)


def test_two_processes_train_like_one_process_on_the_same_global_batch(two_process_run, one_process_run):
    two = load_checkpoint(two_process_run["run"])
    one = one_process_run
    assert two["step"] == STEPS and len(two["losses"]) == STEPS
    torch.testing.assert_close(torch.tensor(two["losses"], dtype=torch.float64),
                               torch.tensor(one["losses"][:STEPS], dtype=torch.float64),
                               rtol=loss_rtol(B), atol=0.0)
    # the weights moved far more than the tolerance of the weight comparison in the resume test below: the losses
    # compared here come from trained weights, not only from the initial ones
    moved = relative_difference(two["net"], initial_mlp().state_dict())
    assert moved > 100 * weight_rtol(2 * STEPS, B), moved   # measured 0.11 against 5.9e-5
    # the checkpoint holds the unwrapped network: the names of nets.MLP, no DistributedDataParallel "module." prefix
    assert list(two["net"]) == list(initial_mlp().state_dict())


def test_only_rank_0_writes_the_checkpoint_and_the_log(two_process_run):
    assert sorted(os.listdir(two_process_run["run"])) == ["checkpoint.pt"]   # one file, no temporary left over
    assert sorted(os.listdir(two_process_run["root"])) == ["run2"]
    assert two_process_run["stdout"].count(f"trained {STEPS} steps on 2 processes") == 1
    assert two_process_run["stdout"].count("trained") == 1


def test_one_process_resumes_the_two_process_run(two_process_run, one_process_run, tmp_path):
    run = tmp_path / "resumed"
    run.mkdir()
    shutil.copy(two_process_run["run"] / "checkpoint.pt", run / "checkpoint.pt")
    assert main([*TRAIN, "--steps", str(2 * STEPS), "--resume", "--out", str(run)]) == 0
    resumed, two, one = load_checkpoint(run), load_checkpoint(two_process_run["run"]), one_process_run
    assert resumed["step"] == 2 * STEPS
    assert resumed["losses"][:STEPS] == two["losses"]     # the history comes from the checkpoint as it was
    torch.testing.assert_close(torch.tensor(resumed["losses"][STEPS:], dtype=torch.float64),
                               torch.tensor(one["losses"][STEPS:], dtype=torch.float64), rtol=loss_rtol(B), atol=0.0)
    for key in ("net", "ema"):
        diff = relative_difference(resumed[key], one[key])
        assert diff <= weight_rtol(2 * STEPS, B), (key, diff)


def test_two_machines_with_c10d_rendezvous_give_the_two_process_run(two_process_run, tmp_path):
    # the README's multi-machine command, both "machines" on this one: node 0 and node 1, one process each
    endpoint = f"127.0.0.1:{free_port()}"
    cmd = [*torchrun(), "--nnodes=2", "--nproc_per_node=1", "--rdzv_backend=c10d", f"--rdzv_endpoint={endpoint}",
           "--rdzv_id=pfgm-test", "-m", "pfgm_lite", *TRAIN, "--backend", "gloo", "--steps", str(STEPS),
           "--out", "run"]
    node0, node1 = launch(cmd, cmd, cwd=tmp_path)
    assert node0.returncode == 0 and node1.returncode == 0, (node0.stderr[-2000:], node1.stderr[-2000:])
    assert sorted(os.listdir(tmp_path / "run")) == ["checkpoint.pt"]
    assert (node0.stdout + node1.stdout).count("trained") == 1
    # the same two ranks: the all-reduce adds the same two numbers (a + b == b + a in IEEE), so bit for bit equal
    assert load_checkpoint(tmp_path / "run")["losses"] == load_checkpoint(two_process_run["run"])["losses"]


# --- inside two processes: the target of each rank, any Method, the data check ------------------------------------

def _two_rank_checks(rank: int, port: int, folder: str) -> None:
    """Runs in each of two processes (torch.multiprocessing); raises AssertionError on a failed check."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    data = sample_toy("moons", 500, torch.Generator().manual_seed(0))
    hp = hyperparameters_for(data)
    # PFGM's target is a softmax over all of B_L; EDM's and PFGM++'s read each point's clean y at the start of B_L
    methods = [PFGM(hp, (2,)), PFGM.paper(hp, (2,)), EDM((2,)), PFGMpp((2,), D=4.0)]
    with distributed.process_group("gloo", "cpu") as parallel:
        assert parallel == Parallel(rank=rank, world_size=2, local_rank=rank, backend="gloo")
        cpu = torch.device("cpu")
        labels = torch.arange(len(data)) % 3                     # class labels travel with their rows
        for method in methods:
            g_two, g_one = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
            large, large_labels = draw_large_batch(data, L, g_two, cpu, parallel, labels)
            large_one, large_labels_one = draw_large_batch(data, L, g_one, cpu, labels=labels)
            assert torch.equal(large, large_one)                 # the gathered rows are the one-process B_L
            assert torch.equal(large_labels, large_labels_one)   # and so are their labels
            shard = parallel.shard(B)
            x, t, target, shard_labels = regression_pair(method, large, B, g_two, shard, large_labels)
            x_one, t_one, target_one, labels_one = regression_pair(method, large_one, B, g_one,
                                                                   large_labels=large_labels_one)
            assert torch.equal(g_two.get_state(), g_one.get_state())   # the random stream does not depend on K
            assert torch.equal(x, x_one[shard]) and torch.equal(t, t_one[shard])
            assert torch.equal(shard_labels, labels_one[shard])
            # the same arithmetic on the same numbers, but the matrix products see 16 rows instead of 32, and B_L
            # comes in another order (this rank's points first), which may order sums differently: allow 8 float32
            # ulps of the target's size; measured: equal
            scale = target_one.abs().max().item()
            tol = 8 * EPS32 * scale
            assert (target - target_one[shard]).abs().max().item() <= tol, method.name
            # the two shortcuts the trainer avoids give other targets: PFGM from this rank's own rows of B_L only
            # (no all_gather), EDM and PFGM++ on rank 1 from the clean points of rank 0's rows
            wrong = (method.target(x, t, Batch(large=large[parallel.shard(L)])) if isinstance(method, PFGM) else
                     method.target(x, t, Batch(large=large, y=large[: B // 2])) if rank == 1
                     else None)
            if wrong is not None:
                assert (wrong - target_one[shard]).abs().max().item() > 0.01 * scale, method.name

        # any Method trains through the same path: two processes follow the one-process losses
        method = EDM((2,))
        config = TrainConfig(steps=6, batch_size=B, large_batch_size=L, lr=1e-2, warmup=0, device="cpu")
        torch.manual_seed(0)
        one = train(method, MLP(2, extra=0, width=32, depth=2), data, config, progress=False, parallel=Parallel())
        torch.manual_seed(rank)                  # each rank starts from other weights: DDP copies rank 0's
        calls = []
        out = Path(folder) / f"given-to-rank-{rank}"
        two = train(method, MLP(2, extra=0, width=32, depth=2), data, config, progress=False, parallel=parallel,
                    out_dir=out, callback=lambda step, losses: calls.append(step), callback_every=2)
        # only rank 0 writes a checkpoint and calls back, even when every rank is given a folder
        assert out.exists() == (rank == 0) and calls == ([2, 4, 6] if rank == 0 else [])
        torch.testing.assert_close(torch.tensor(two.losses, dtype=torch.float64),
                                   torch.tensor(one.losses, dtype=torch.float64), rtol=loss_rtol(B), atol=0.0)
        for a, b in ((two.net, one.net), (two.ema, one.ema)):   # the EMA, too, starts from rank 0's weights
            assert relative_difference(a.state_dict(), b.state_dict()) <= weight_rtol(config.steps, B)

        assert distributed.mean_over_processes(torch.tensor(float(rank)), parallel).item() == 0.5
        # every rank must hold the same data: a different copy on rank 1 is an error on both ranks
        other = data if rank == 0 else sample_toy("moons", 500, torch.Generator().manual_seed(1))
        try:
            distributed.check_same_data(other, parallel)
        except ValueError as exc:
            assert "every process must train on the same data, but rank 1 holds other data than rank 0" in str(exc)
        else:
            raise AssertionError("different data on the ranks was not reported")
        # rank 0 reads the checkpoint for everyone; a missing one is an error on every rank, not a hang
        try:
            distributed.broadcast_from_main(lambda: load_checkpoint("/nonexistent/run"), parallel)
        except FileNotFoundError as exc:
            assert "no checkpoint at /nonexistent/run" in str(exc)
        else:
            raise AssertionError("a missing checkpoint was not reported on every rank")


def test_each_rank_gets_the_one_process_target_and_any_method_trains(tmp_path):
    import torch.multiprocessing as mp

    # fork: the two processes start with torch already imported (spawn would import it again: seconds); each sets
    # one thread before any torch operation, which keeps OpenMP safe after the fork
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    context = mp.start_processes(_two_rank_checks, args=(free_port(), str(tmp_path)), nprocs=2, join=False,
                                 start_method=method)
    deadline = time.monotonic() + LAUNCH_TIMEOUT
    try:
        while not context.join(timeout=1):     # raises (with the worker's traceback) when a worker fails
            assert time.monotonic() < deadline, "the two processes did not finish in time"
    finally:
        for proc in context.processes:
            if proc.is_alive():
                proc.kill()
            proc.join()


# --- bad settings: clear errors, raised before any process waits for another ----------------------------------

def test_shards_tile_the_batch():
    for k in (1, 2, 4, 8):
        rows = [i for r in range(k) for i in range(256)[Parallel(rank=r, world_size=k).shard(256)]]
        assert rows == list(range(256))


@pytest.mark.parametrize("batch, large, message", [
    (33, 128, r"batch_size \(33\) must be divisible by the number of processes \(2\)"),
    (32, 129, r"large_batch_size \(129\) must be divisible by the number of processes \(2\)"),
])
def test_batches_that_do_not_split_over_the_processes(batch, large, message):
    with pytest.raises(ValueError, match=message):
        distributed.check_batch_split(batch, large, 2)
    data = sample_toy("moons", 500, torch.Generator().manual_seed(0))
    config = TrainConfig(steps=2, batch_size=batch, large_batch_size=large, device="cpu")
    with pytest.raises(ValueError, match=message):   # checked before the first collective: no process hangs
        train(PFGM(hyperparameters_for(data), (2,)), MLP(2), data, config, progress=False,
              parallel=Parallel(rank=0, world_size=2, backend="gloo"))


@pytest.fixture
def as_rank_0_of_2(monkeypatch):
    """The environment torchrun gives rank 0 of 2; joining the group would wait for rank 1, so it must not happen."""
    for name, value in dict(RANK="0", WORLD_SIZE="2", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                            MASTER_PORT=str(free_port())).items():
        monkeypatch.setenv(name, value)

    def must_not_join(*args, **kwargs):
        raise AssertionError("joined the process group although a setting was bad")

    monkeypatch.setattr(torch.distributed, "init_process_group", must_not_join)


@pytest.mark.parametrize("args, message", [
    (["--batch-size", "33"], "batch_size (33) must be divisible by the number of processes (2)"),
    (["--large-batch-size", "127"], "large_batch_size (127) must be divisible by the number of processes (2)"),
    (["--backend", "nccl"], "backend 'nccl' needs CUDA GPUs, but torch.cuda.is_available() is False"),
])
def test_command_line_fails_before_joining(as_rank_0_of_2, monkeypatch, capsys, tmp_path, args, message):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code = main([*TRAIN, "--steps", "2", *args, "--out", str(tmp_path / "run")])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error (rank 0): ") and message in err
    assert not (tmp_path / "run").exists()


def test_unknown_backend_and_precision(capsys, tmp_path):
    with pytest.raises(ValueError, match=r"backend must be one of \('auto', 'gloo', 'nccl'\), got 'mpi'"):
        distributed.resolve_backend("mpi", "cpu")
    with pytest.raises(ValueError, match=r"precision must be one of \('auto', 'bf16', 'fp32'\), got 'fp16'"):
        distributed.autocast_dtype("fp16", torch.device("cpu"))
    with pytest.raises(SystemExit) as exc:
        main([*TRAIN, "--backend", "mpi", "--out", str(tmp_path / "run")])
    assert exc.value.code == 2
    err = capsys.readouterr().err   # argparse quotes the choices from Python 3.12 on
    assert "argument --backend: invalid choice: 'mpi' (choose from " in err and "gloo" in err and "nccl" in err


def test_nccl_needs_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"backend 'nccl' needs CUDA GPUs, but torch.cuda.is_available\(\) is False "
                                         r"on this machine: use backend 'gloo' \(CPU\) or 'auto'"):
        distributed.resolve_backend("nccl", "auto")
    assert distributed.resolve_backend("auto", "auto") == "gloo"


def test_more_processes_than_gpus(as_rank_0_of_2, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.distributed, "is_nccl_available", lambda: True)
    with pytest.raises(ValueError, match=r"LOCAL_RANK 1 needs GPU 1, but this machine shows 1 GPU\(s\): start at most "
                                         r"1 processes per machine \(--nproc_per_node=1\)"):
        with distributed.process_group("auto", "auto"):
            pass


def test_garbled_launcher_environment(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "two")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ValueError, match="WORLD_SIZE must be an integer \\(torchrun sets it\\), got 'two'"):
        distributed.launch_env()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="0 <= RANK < WORLD_SIZE"):
        distributed.launch_env()


def test_without_a_launcher_nothing_is_joined(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    def must_not_join(*args, **kwargs):
        raise AssertionError("joined a process group without a launcher")

    monkeypatch.setattr(torch.distributed, "init_process_group", must_not_join)
    with distributed.process_group("auto", "cpu") as parallel:
        assert parallel == Parallel() and parallel.is_main and parallel.shard(7) == slice(None)


# --- precision ----------------------------------------------------------------------------------------------------

def test_bf16_runs_the_network_only_and_auto_is_float32_on_a_cpu():
    data = sample_toy("moons", 500, torch.Generator().manual_seed(0))
    method = PFGM(hyperparameters_for(data), (2,))
    config = TrainConfig(steps=4, batch_size=B, large_batch_size=L, lr=1e-2, warmup=0, device="cpu")
    seen: dict[str, list] = {}

    class Recorder(PFGM):
        def target(self, x, t, batch):
            value = super().target(x, t, batch)
            seen.setdefault(self.run, []).append((value, torch.is_autocast_enabled("cpu")))
            return value

    runs = {}
    for precision in ("fp32", "auto", "bf16"):
        recorder = Recorder(method.hp, (2,))
        recorder.run = precision
        torch.manual_seed(0)
        runs[precision] = train(recorder, MLP(2, width=32, depth=2), data, config, progress=False,
                                precision=precision).losses
    assert runs["auto"] == runs["fp32"]                  # a CPU: auto is float32, bit for bit
    # the targets do not depend on the network: bit for bit the same in bf16, computed outside autocast, in float32
    for (a, a_autocast), (b, b_autocast) in zip(seen["fp32"], seen["bf16"]):
        assert torch.equal(a, b) and a.dtype == torch.float32 and not a_autocast and not b_autocast
    # the network did run in bf16: the first loss (same weights, same target) differs by bf16 rounding, 2^-8 relative
    # per input and weight, and by at most a few percent of the loss
    first_fp32, first_bf16 = runs["fp32"][0], runs["bf16"][0]
    assert first_fp32 != first_bf16
    assert abs(first_bf16 - first_fp32) < 0.05 * first_fp32


def test_loss_on_batch_in_bf16_is_a_float32_loss():
    data = sample_toy("moons", 300, torch.Generator().manual_seed(0))
    method = PFGM(hyperparameters_for(data), (2,))
    torch.manual_seed(0)
    net = MLP(2, width=16, depth=1)
    loss = loss_on_batch(method, net, data[:128], 32, torch.Generator().manual_seed(1), autocast=torch.bfloat16)
    assert loss.dtype == torch.float32 and loss.requires_grad


# --- cost of a step, and the CIFAR-10 recipe ----------------------------------------------------------------------

def test_step_flops_counts_the_matrix_products():
    data = sample_toy("moons", 500, torch.Generator().manual_seed(0))
    method = PFGM(hyperparameters_for(data), (2,))
    width, depth, features, b = 16, 2, 32, 8
    net = MLP(2, width=width, depth=depth, n_features=features)
    counts = step_flops(method, net, data[:L], b)
    # target: squared distances (b, 3) @ (3, L) and weights (b, L) @ charges (L, 3), 2 FLOPs per multiply-add
    assert counts["target"] == 2 * (2 * b * 3 * L)
    # network: forward 2 b in out per layer; backward twice that, except for the layers fed by inputs that need no
    # gradient (the input layer and the condition layers): only the weight gradient
    first = 2 * b * (2 + features) * width
    cond = depth * 2 * b * features * width
    inner = depth * 2 * b * width * width + 2 * b * width * 3
    assert counts["network"] == (first + cond + inner) + (first + cond + 2 * inner)
    assert counts["total"] == counts["target"] + counts["network"]


def test_cifar10_recipe_has_the_papers_settings():
    config = recipes.cifar10_train_config()
    assert (config.batch_size, config.large_batch_size, config.lr, config.warmup, config.grad_clip,
            config.ema_decay, config.cosine, config.steps) == (128, 4096, 2e-4, 5000, 1.0, 0.9999, False, 1_300_000)
    hp = recipes.cifar10_paper_hyperparameters()
    assert (hp.N, hp.M, hp.z_max, hp.upper_norm, hp.sigma, hp.tau) == (3072, 291, 40.0, 3000.0, 0.01, 0.03)
    method = recipes.cifar10_method()
    assert method.gamma == 5.0 and method.restrict_M and method.clip == "radius" and method.z_exp == 5.0
    # the rule side by side: images whose mean norm is 30 give the official hyper-parameters.py's 287 / 38.6 / 2679
    images = torch.randn(64, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    images = images / images.flatten(1).norm(dim=1)[:, None, None, None] * 30
    side = recipes.cifar10_hyperparameters(images)
    assert side["paper"] == hp
    assert side["rule"].M == 287 and round(side["rule"].z_max, 1) == 38.6 and round(side["rule"].upper_norm) == 2679
    net = recipes.cifar10_network()
    with torch.no_grad():
        out = net(torch.zeros(2, 3, 32, 32), torch.zeros(2))
    assert out.shape == (2, 3 * 32 * 32 + 1)


def test_cifar10_missing_files_say_how_to_get_them(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="download it once with download=True"):
        recipes.cifar10_images(tmp_path)
    assert main(["train", "--data", "cifar10", "--data-root", str(tmp_path / "data"), "--device", "cpu",
                 "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: CIFAR-10 is not under") and "--download" in err
    assert not (tmp_path / "run").exists() and not (tmp_path / "data").exists()   # nothing was fetched


# --- nccl: every collective on the process's training device (a fake collective layer, no GPU needed) ----------

@functools.cache
def stand_in_gpu() -> torch.device:
    """A device that is not the CPU and still computes, standing in for "the process's GPU": PyTorch's lazy-tensor
    device (TorchScript backend, computed on the CPU when read). NCCL accepts tensors on the GPU only; what this test
    asserts is that, under nccl, no collective of distributed.py is handed a tensor on any other device."""
    import torch._lazy
    import torch._lazy.ts_backend

    torch._lazy.ts_backend.init()
    return torch.device("lazy", 0)


class FakeCollectives:
    """torch.distributed's collectives between this process and one other rank that holds what this one holds: each
    records the device of every tensor it is handed (inputs and outputs) and fills the outputs as two ranks would."""

    def __init__(self):
        self.seen: list[tuple[str, torch.device]] = []

    def all_gather(self, outputs, tensor, *args, **kwargs):
        self.seen += [("all_gather in", tensor.device)] + [("all_gather out", t.device) for t in outputs]
        for t in outputs:
            t.copy_(tensor)

    def all_reduce(self, tensor, *args, **kwargs):
        self.seen.append(("all_reduce", tensor.device))
        tensor.mul_(2)

    def broadcast_object_list(self, objects, src=0, group=None, device=None):
        # Python objects, which torch pickles into a tensor on `device` (None: the current CUDA device)
        assert not any(isinstance(o, torch.Tensor) for o in objects)
        if device is not None:
            self.seen.append(("broadcast_object_list", torch.device(device)))

    def barrier(self, *args, **kwargs):
        pass


def collectives_called_in_distributed_py() -> set[str]:
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(distributed))
    return {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name) and node.value.id == "dist" and node.attr not in
            ("is_available", "is_initialized", "get_world_size", "get_rank", "get_backend", "init_process_group",
             "destroy_process_group", "is_nccl_available")}


@pytest.fixture
def fake_collectives(monkeypatch) -> FakeCollectives:
    fake = FakeCollectives()
    called = collectives_called_in_distributed_py()
    # the fake covers every collective distributed.py calls: a new one without a fake fails here
    assert called == {"all_gather", "all_reduce", "broadcast_object_list", "barrier"}, called
    for name in called:
        monkeypatch.setattr(torch.distributed, name, getattr(fake, name))
    return fake


@pytest.mark.parametrize("backend", ["nccl", "gloo"])
def test_every_collective_runs_on_the_training_device_under_nccl(fake_collectives, backend):
    gpu = stand_in_gpu()
    parallel = Parallel(rank=0, world_size=2, local_rank=0, backend=backend)
    data = sample_toy("moons", 64, torch.Generator().manual_seed(0))     # on the CPU, as a large data set stays
    distributed.check_same_data(data, parallel, gpu)                      # the same data: no error
    rows = distributed.gather_rows(data[:8], parallel, gpu)
    mean = distributed.mean_over_processes(torch.tensor(3.0, device=gpu), parallel)
    assert distributed.broadcast_from_main(lambda: "from rank 0", parallel, gpu) == "from rank 0"
    distributed.barrier(parallel, gpu)
    # the results come back where the caller wants them, with the values two ranks would give
    assert rows.device == gpu and torch.equal(rows.cpu(), torch.cat([data[:8], data[:8]]))
    assert mean.device == gpu and mean.item() == 3.0
    where = {device for _, device in fake_collectives.seen}
    assert len(fake_collectives.seen) >= 3 + 3 + 1     # check_same_data and gather_rows: 1 in + 2 out each; all_reduce
    # nccl: every tensor of every collective on the training device (old code: check_same_data's on the CPU);
    # gloo: on the CPU
    assert where == ({gpu} if backend == "nccl" else {torch.device("cpu")}), fake_collectives.seen


def test_train_hands_its_training_device_to_the_collectives(monkeypatch, fake_collectives):
    """The functions above put their tensors where they are told; train() must tell them the training device (here
    the CPU: the network itself cannot run on the stand-in device). DistributedDataParallel is replaced by the
    module itself: it needs a process group, and it places its own collectives from device_ids."""
    told = []
    for name in ("check_same_data", "gather_rows"):
        real = getattr(distributed, name)

        def recording(*args, _real=real, _name=name, **kwargs):
            told.append((_name, torch.device(args[2])))
            return _real(*args, **kwargs)

        monkeypatch.setattr(distributed, name, recording)
    monkeypatch.setattr(torch.nn.parallel, "DistributedDataParallel", lambda module, device_ids=None: module)
    data = sample_toy("moons", 200, torch.Generator().manual_seed(0))
    config = TrainConfig(steps=2, batch_size=8, large_batch_size=32, device="cpu")
    train(EDM((2,)), MLP(2, extra=0, width=8, depth=1), data, config, progress=False,
          parallel=Parallel(rank=0, world_size=2, backend="nccl"))
    assert [name for name, _ in told] == ["check_same_data", "gather_rows", "gather_rows"]
    assert {device for _, device in told} == {torch.device("cpu")}

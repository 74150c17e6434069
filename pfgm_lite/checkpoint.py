"""Checkpoints: what a training run writes, how it is read back, and the model it holds.

A checkpoint is one file written by torch.save, read with torch.load(weights_only=True) (no pickled code runs):
  format, version                       the tag and layout this module reads
  method, network                       Method.to_config() and the network's config (nets.build_network)
  net, ema, optimizer, generator        weights, EMA weights, Adam's state, the training generator's state
  losses, step, train_config            the loss of every step, steps done, train.TrainConfig as a dict
  data                                  data.fingerprint of the training set (newer checkpoints; None if unknown)
  pfgm_lite_version, torch_version      what wrote it (newer checkpoints)
Writes are atomic: a temporary file in the same folder, fsync, then os.replace, so an interrupted write never leaves
a half-written checkpoint.pt behind.
"""
from __future__ import annotations

import dataclasses
import os
import re
import tempfile
from pathlib import Path

import torch
from torch import nn

from . import __version__
from .methods import Method, method_from_config
from .nets import build_network
from .runtime import pick_device

CHECKPOINT_FORMAT = "pfgm-lite-checkpoint"
CHECKPOINT_VERSION = 1
REQUIRED_KEYS = ("method", "network", "net", "ema", "losses", "step")
# read once: the permissions a new file gets (mkstemp makes 0600; a checkpoint should be as readable as any file)
_UMASK = os.umask(0)
os.umask(_UMASK)


def network_config(net: nn.Module) -> dict:
    """The config dict of a pfgm_lite network (nets.MLP, nets.UNet), which a checkpoint needs to rebuild it.

    Raises TypeError for a network without one (a reader's own nn.Module): it can train, but not be saved.
    """
    config = getattr(net, "config", None)
    if not isinstance(config, dict) or "kind" not in config:
        raise TypeError(f"a checkpoint rebuilds the network from its `config` dict (as nets.MLP and nets.UNet carry), "
                        f"but this {type(net).__name__} has none: train it without out_dir (or export), or give it a "
                        f"`config` that nets.build_network understands")
    return dict(config)


def save_checkpoint(path: str | Path, method: Method, net: nn.Module, ema: nn.Module,
                    optimizer: torch.optim.Optimizer | None, generator: torch.Generator | None,
                    losses: list, step: int, config, data_print: list | None = None) -> Path:
    """Write a checkpoint atomically: to a temporary file in the same folder, then os.replace.

    config: the run's train.TrainConfig (any dataclass); data_print: data.fingerprint(training data), or None.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = dict(format=CHECKPOINT_FORMAT, version=CHECKPOINT_VERSION, method=method.to_config(),
                   network=network_config(net), net=net.state_dict(), ema=ema.state_dict(),
                   optimizer=optimizer.state_dict() if optimizer is not None else {},
                   generator=generator.get_state() if generator is not None else torch.ByteTensor(),
                   losses=[float(v) for v in losses], step=int(step), train_config=dataclasses.asdict(config),
                   data=None if data_print is None else [float(v) for v in data_print],
                   pfgm_lite_version=__version__, torch_version=str(torch.__version__))
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)
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


def check_writable_folder(folder: str | Path) -> Path:
    """Check, before any training, that files can be written into `folder`: an OSError naming the folder otherwise.

    The check writes and removes a probe file; folders it had to make for that are removed again, so it leaves the
    disk as it found it (a real write, because permission bits do not tell: root may write anywhere but /proc).
    """
    folder = Path(folder)
    made = []
    try:
        missing = folder
        while not missing.exists():
            made.append(missing)
            missing = missing.parent
        if not missing.is_dir():
            raise NotADirectoryError(20, "a file is in the way", str(missing))
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OSError(f"cannot write into {str(folder)!r} ({exc.strerror or type(exc).__name__}"
                      f"{': ' + str(exc.filename) if exc.filename and str(exc.filename) != str(folder) else ''}): "
                      f"choose an output folder you can write to") from None
    finally:
        for path in made:                               # deepest first
            try:
                path.rmdir()
            except OSError:
                pass
    return folder


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
        raise ValueError(f"{path} is not a readable pfgm-lite checkpoint ({_load_failure(exc)}): pfgm-lite did "
                         f"not write it, or the file is damaged") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a pfgm-lite checkpoint (missing format tag {CHECKPOINT_FORMAT!r})")
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path} has checkpoint version {ckpt.get('version')!r}; this pfgm-lite reads "
                         f"version {CHECKPOINT_VERSION}")
    missing = set(REQUIRED_KEYS) - set(ckpt)
    if missing:
        raise ValueError(f"{path} is an incomplete pfgm-lite checkpoint: missing {sorted(missing)}")
    return ckpt


def _load_failure(exc: Exception) -> str:
    """Why torch.load(weights_only=True) refused a file, in one line, without PyTorch's advice to load it unsafely."""
    text = str(exc)
    refused = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if refused:
        return f"it holds a Python object, {refused.group(1)}, that a safe load refuses to build"
    if "weights only load failed" in text.lower():
        return "it holds Python objects that a safe load refuses to build"
    line = (text.splitlines() or [""])[0]
    return f"{type(exc).__name__}: {line[:160]}" if line else type(exc).__name__


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
    target = pick_device(device)
    ckpt = load_checkpoint(path)
    method = method_from_config(ckpt["method"])
    net = build_network(ckpt["network"])
    load_weights(net, ckpt["ema"], path)
    return method, net.to(target).eval(), ckpt

"""Digits: a small classifier of the offline MNIST digits, and what it says about generated ones.

No Inception weights and nothing to download: the classifier (LeNet-sized, 97% held-out accuracy) ships with the
package (pfgm_lite/weights/digit_classifier.pt). Its 128 penultimate features give a Frechet distance in the
classifier's feature space (the FID formula, metrics.frechet_distance; not the Inception FID of papers).
"""
from __future__ import annotations

from pathlib import Path

import torch
from tqdm.auto import tqdm

from .checks import check_int
from .data import digit_split
from .metrics import frechet_distance
from .weights import weights_path


class DigitClassifier(torch.nn.Module):
    """LeNet-sized classifier for 1x28x28 digits in [-1, 1]: features (B, 128) -> logits (B, 10)."""

    def __init__(self):
        super().__init__()
        nn = torch.nn
        self.body = nn.Sequential(nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                  nn.Linear(32 * 7 * 7, 128), nn.ReLU())
        self.head = nn.Linear(128, 10)

    chunk = 200     # images per pass: the first layers' activations take ~0.15 MB an image (1300 at once: +100 MiB)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer features: (B, 1, 28, 28) -> (B, 128), computed `chunk` images at a time."""
        if x.dim() != 4 or tuple(x.shape[1:]) != (1, 28, 28):
            raise ValueError(f"x must have shape (B, 1, 28, 28), got {tuple(x.shape)}")
        if x.shape[0] <= self.chunk:
            return self.body(x)
        return torch.cat([self.body(part) for part in x.split(self.chunk)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def train_digit_classifier(images: torch.Tensor, labels: torch.Tensor, epochs: int = 8, seed: int = 0,
                           progress: bool = False) -> DigitClassifier:
    """Train a DigitClassifier with Adam (lr 1e-3, batch 64) and light random shifts; CPU, ~20 s.

    The initial weights come from `seed` without touching the caller's random state (torch.random.fork_rng).
    """
    check_int("epochs", epochs)
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DigitClassifier()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in tqdm(range(epochs), desc="classifier", disable=not progress):
        for idx in torch.randperm(len(images), generator=g).split(64):
            x = images[idx]
            shift = torch.randint(-2, 3, (2,), generator=g).tolist()
            x = torch.roll(x, shifts=shift, dims=(2, 3))
            loss = torch.nn.functional.cross_entropy(model(x), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def classifier_path() -> Path:
    """Where the shipped classifier weights live: pfgm_lite/weights/digit_classifier.pt (package data)."""
    return weights_path("digit_classifier.pt")


def digit_classifier(path: str | Path | None = None, retrain: bool = False) -> DigitClassifier:
    """The digit classifier: the shipped weights (weights_only), or those at `path`; retrain=True trains a new one
    on digit_split()'s training images (~20 s) and writes it only where `path` says (atomically).

    A missing file is a FileNotFoundError, never a silent retraining.
    """
    model = DigitClassifier()
    if retrain:
        train_images, train_labels, _, _ = digit_split()
        model = train_digit_classifier(train_images, train_labels)
        if path is not None:
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            torch.save(model.state_dict(), tmp)
            tmp.replace(path)
        return model
    path = Path(path) if path is not None else classifier_path()
    if not path.exists():
        raise FileNotFoundError(f"no digit-classifier weights at {path}: pass the right path, or retrain=True (and "
                                f"path=... to keep them)")
    try:
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as exc:
        raise ValueError(f"{path} is not a readable digit-classifier state dict ({type(exc).__name__})") from None
    return model.eval()


def classifier_accuracy(model: DigitClassifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of images classified correctly."""
    with torch.no_grad():
        return (model(images).argmax(1) == labels).float().mean().item()


def digit_sample_quality(model: DigitClassifier, samples: torch.Tensor, real: torch.Tensor) -> dict:
    """What the classifier says about generated digits (B, 1, 28, 28) against real held-out digits.

    returns: confidence (mean max-softmax), confident (fraction of samples with max-softmax > 0.9),
             class_counts (10,), coverage (classes with >= 1% of samples),
             fid (Frechet distance in the classifier's 128-d feature space, not the Inception FID).
    """
    with torch.no_grad():
        feats_s, feats_r = model.features(samples.clamp(-1, 1)), model.features(real)
        probs = torch.softmax(model.head(feats_s), dim=1)          # = model(samples), without a second pass
    counts = torch.bincount(probs.argmax(1), minlength=10)
    top = probs.max(1).values
    return dict(confidence=top.mean().item(), confident=(top > 0.9).float().mean().item(), class_counts=counts.tolist(),
                coverage=int((counts >= 0.01 * len(samples)).sum()), fid=frechet_distance(feats_s, feats_r))

"""Networks that predict a field: f(x, c) with c a scalar condition (log z for PFGM).

Both networks return a flat (B, N + extra) tensor: the N data components and `extra` scalars
(PFGM: extra = 1, the z-component). z enters as Fourier features of log z: the training heights span about
seven decades (on the moons ~4e-6 to ~13), and equally spaced log z is what the sampler walks through.
The official PFGM configs feed raw z to a sinusoidal embedding (DDPM++) or log z to Gaussian Fourier
features (NCSN++); we use the latter.

Class-conditional networks (num_classes > 0) take class labels as a third argument, f(x, c, labels) with labels
(B,) int64 in [0, num_classes) or NO_LABEL (-1): a learned embedding of the label, with one more entry for "no
label" (what classifier-free guidance drops labels to), is added to the features of c. labels=None means no
label for every row. A network with num_classes = 0 (the default, and every checkpoint made before labels) takes
none.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .checks import check_int, check_integer_tensor


def fourier_features(c: torch.Tensor, n_features: int) -> torch.Tensor:
    """Sinusoidal features of a scalar: (B,) -> (B, n_features), frequencies geometric from 1/8 to 8.

    returns [sin(w_k c), cos(w_k c)] for k = 1..n_features/2
    """
    half = n_features // 2
    freqs = torch.exp(torch.linspace(math.log(1 / 8), math.log(8), half, device=c.device, dtype=c.dtype))
    angles = c[:, None] * freqs[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


#: the label that means "no label" (the unconditional entry of a class-conditional network)
NO_LABEL = -1


def label_index(labels: torch.Tensor | None, num_classes: int, batch: int, device: torch.device) -> torch.Tensor:
    """Embedding rows of the labels: (B,) in [0, num_classes], with num_classes standing for NO_LABEL (and None)."""
    if labels is None:
        return torch.full((batch,), num_classes, dtype=torch.long, device=device)
    check_integer_tensor("labels", labels)
    if labels.shape != (batch,):
        raise ValueError(f"labels must have shape ({batch},), one per row, got {tuple(labels.shape)}")
    if batch and (labels.min() < NO_LABEL or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}) or be NO_LABEL ({NO_LABEL}), got "
                         f"{int(labels.min())} to {int(labels.max())}")
    labels = labels.to(device=device, dtype=torch.long)
    return torch.where(labels == NO_LABEL, torch.full_like(labels, num_classes), labels)


def with_label(net: nn.Module, emb: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """emb (B, F) plus the label embedding of a class-conditional net; an unconditional one refuses labels."""
    if not net.num_classes:
        if labels is not None:
            raise ValueError(f"labels were given, but this {type(net).__name__} is unconditional (num_classes = 0); "
                             f"build it with num_classes > 0 to condition on a class")
        return emb
    return emb + net.label_embed(label_index(labels, net.num_classes, emb.shape[0], emb.device))


def _check_n_features(n_features: int) -> None:
    """fourier_features makes 2 * (n_features // 2) features: an odd count would not match the layer sizes."""
    check_int("n_features", n_features, minimum=0)
    if n_features < 2 or n_features % 2:
        raise ValueError(f"n_features must be an even number >= 2, got {n_features}")


class MLP(nn.Module):
    """Residual MLP for low-dimensional data: (B, N), (B,) -> (B, N + extra).

    Layers: input (x, features(c)) -> width -> `depth` residual SiLU blocks, each also fed features(c).
    """

    def __init__(self, data_dim: int, extra: int = 1, width: int = 256, depth: int = 3, n_features: int = 32,
                 num_classes: int = 0):
        super().__init__()
        check_int("data_dim", data_dim)
        check_int("extra", extra, minimum=0)
        check_int("width", width)
        check_int("depth", depth)
        check_int("num_classes", num_classes, minimum=0)
        _check_n_features(n_features)
        self.config = dict(kind="mlp", data_dim=data_dim, extra=extra, width=width, depth=depth,
                           n_features=n_features)
        if num_classes:                      # only then: the configs of unconditional checkpoints stay as they were
            self.config["num_classes"] = num_classes
        self.num_classes = num_classes
        self.label_embed = nn.Embedding(num_classes + 1, n_features) if num_classes else None
        self.data_dim, self.n_features = data_dim, n_features
        self.inp = nn.Linear(data_dim + n_features, width)
        self.cond = nn.ModuleList([nn.Linear(n_features, width) for _ in range(depth)])
        self.blocks = nn.ModuleList([nn.Sequential(nn.SiLU(), nn.Linear(width, width)) for _ in range(depth)])
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(width, data_dim + extra))

    def forward(self, x: torch.Tensor, c: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.data_dim:
            raise ValueError(f"x must have shape (B, {self.data_dim}), got {tuple(x.shape)}")
        emb = with_label(self, fourier_features(c, self.n_features), labels)
        h = self.inp(torch.cat([x, emb], dim=1))
        for block, cond in zip(self.blocks, self.cond):
            h = h + block(h + cond(emb))
        return self.out(h)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice; the condition scales and shifts the second normalization (FiLM).

    h = conv1(silu(norm1(x))),  h = norm2(h) (1 + a(c)) + b(c),  out = conv2(silu(h)) + skip(x)
    """

    def __init__(self, c_in: int, c_out: int, n_features: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(min(8, c_in), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.cond = nn.Linear(n_features, 2 * c_out)
        self.norm2 = nn.GroupNorm(min(8, c_out), c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(torch.nn.functional.silu(self.norm1(x)))
        scale, shift = self.cond(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(torch.nn.functional.silu(h))
        return h + self.skip(x)


class SelfAttention(nn.Module):
    """Multi-head self-attention over the pixels of a feature map, with a residual: (B, C, H, W) -> (B, C, H, W).

    Every pixel of the coarsest level sees every other one, so the network can make a digit's parts agree.
    """

    def __init__(self, channels: int, heads: int = 4):
        super().__init__()
        if channels % heads:
            raise ValueError(f"attention channels must be divisible by heads = {heads}, got {channels}")
        self.heads = heads
        self.norm = nn.GroupNorm(min(8, channels), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        # (B, 3, heads, C/heads, HW) -> q, k, v of shape (B, heads, HW, C/heads)
        q, k, v = (t.transpose(-1, -2) for t in
                   self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1))
        out = nn.functional.scaled_dot_product_attention(q, k, v)
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class UNet(nn.Module):
    """Compact U-Net for small images: (B, C, H, W), (B,) -> (B, C*H*W + extra).

    Resolutions H -> H/2 -> H/4 with `channels` (e.g. 16, 32, 64): one ResBlock per level on the way down and
    up, and at H/4 a ResBlock, self-attention over the (H/4)^2 pixels and a second ResBlock.
    The `extra` outputs are the spatial means of extra output channels (the paper's z-component trick).
    H and W must be divisible by 4 (28x28 and 32x32 are).
    """

    def __init__(self, image_channels: int = 1, image_size: int = 28, channels: tuple[int, ...] = (16, 32, 64),
                 extra: int = 1, n_features: int = 32, num_classes: int = 0):
        super().__init__()
        check_int("image_channels", image_channels)
        check_int("num_classes", num_classes, minimum=0)
        check_int("image_size", image_size)
        if image_size % 4:
            raise ValueError(f"image_size must be divisible by 4, got {image_size}")
        if len(channels) != 3:
            raise ValueError(f"channels must have 3 entries (one per resolution), got {channels}")
        if channels[2] % 4:
            raise ValueError(f"channels[2] must be divisible by 4 (the attention heads), got {channels}")
        _check_n_features(n_features)
        self.config = dict(kind="unet", image_channels=image_channels, image_size=image_size,
                           channels=list(channels), extra=extra, n_features=n_features)
        if num_classes:                      # only then: the configs of unconditional checkpoints stay as they were
            self.config["num_classes"] = num_classes
        self.num_classes = num_classes
        self.shape = (image_channels, image_size, image_size)
        self.extra, self.n_features = extra, n_features
        c1, c2, c3 = channels
        self.embed = nn.Sequential(nn.Linear(n_features, 4 * n_features), nn.SiLU(),
                                   nn.Linear(4 * n_features, n_features))
        self.label_embed = nn.Embedding(num_classes + 1, n_features) if num_classes else None
        self.inp = nn.Conv2d(image_channels, c1, 3, padding=1)
        self.down1 = ResBlock(c1, c1, n_features)
        self.down2 = ResBlock(c1, c2, n_features)
        self.mid = ResBlock(c2, c3, n_features)
        self.attention = SelfAttention(c3)
        self.mid2 = ResBlock(c3, c3, n_features)
        self.up2 = ResBlock(c3 + c2, c2, n_features)
        self.up1 = ResBlock(c2 + c1, c1, n_features)
        self.out = nn.Sequential(nn.GroupNorm(min(8, c1), c1), nn.SiLU(),
                                 nn.Conv2d(c1, image_channels + extra, 3, padding=1))
        # channels-last convolutions run about 1.3x faster on CPU; the weights load either way
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor, c: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"x must have shape (B, {', '.join(map(str, self.shape))}), got {tuple(x.shape)}")
        emb = with_label(self, self.embed(fourier_features(c, self.n_features)), labels)
        x = x.contiguous(memory_format=torch.channels_last)
        h1 = self.down1(self.inp(x), emb)                                        # H
        h2 = self.down2(nn.functional.avg_pool2d(h1, 2), emb)                    # H/2
        h3 = self.mid(nn.functional.avg_pool2d(h2, 2), emb)                      # H/4
        h3 = self.mid2(self.attention(h3), emb)
        u2 = self.up2(torch.cat([nn.functional.interpolate(h3, scale_factor=2.0), h2], 1), emb)
        u1 = self.up1(torch.cat([nn.functional.interpolate(u2, scale_factor=2.0), h1], 1), emb)
        out = self.out(u1)
        c_img = self.shape[0]
        data_part = out[:, :c_img].flatten(1)
        extra_part = out[:, c_img:].mean(dim=(2, 3))
        return torch.cat([data_part, extra_part], dim=1)


def build_network(config: dict) -> nn.Module:
    """Rebuild a network from its `config` dict (as stored in checkpoints)."""
    cfg = dict(config)
    kind = cfg.pop("kind", None)
    if kind == "mlp":
        return MLP(**cfg)
    if kind == "unet":
        cfg["channels"] = tuple(cfg["channels"])
        return UNet(**cfg)
    raise ValueError(f"unknown network kind {kind!r} in config; expected 'mlp' or 'unet'")


def count_parameters(net: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)

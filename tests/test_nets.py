"""Facts about pfgm_lite/nets.py: output shapes, rebuilding from config, and clear errors."""
from __future__ import annotations

import pytest
import torch

from pfgm_lite.nets import MLP, NO_LABEL, SelfAttention, UNet, build_network, count_parameters, fourier_features

SMALL = (8, 16, 16)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_fourier_features():
    c = torch.linspace(-7, 7, 11)
    f = fourier_features(c, 16)
    assert f.shape == (11, 16)
    # sin^2 + cos^2 = 1 per frequency, so each row has squared norm n_features / 2
    # (16 float32 terms of size <= 1: error <= 16 eps32 = 2e-6 absolute, 2.4e-7 of 8, inside rtol 1.3e-6)
    torch.testing.assert_close((f**2).sum(1), torch.full((11,), 8.0))
    # the lowest frequency is 1/8: the first feature is sin(c / 8)
    # (float32 exp(log(1/8)) is 1/8 to a few eps32 and |c| <= 7: the sines agree to ~1e-6, inside atol 1e-5)
    torch.testing.assert_close(f[:, 0], torch.sin(c / 8))


@pytest.mark.parametrize("data_dim", [1, 2, 5])
def test_mlp_output_shape(data_dim):
    net = MLP(data_dim, width=16, depth=2)
    out = net(torch.randn(7, data_dim), torch.randn(7))
    assert out.shape == (7, data_dim + 1)
    assert MLP(data_dim, extra=0, width=16)(torch.randn(3, data_dim), torch.randn(3)).shape == (3, data_dim)


@pytest.mark.parametrize("channels, size", [(1, 28), (3, 32)])
def test_unet_output_shape(channels, size):
    net = UNet(channels, size, channels=SMALL)
    out = net(torch.randn(2, channels, size, size), torch.randn(2))
    assert out.shape == (2, channels * size * size + 1)


def test_unet_depends_on_condition():
    torch.manual_seed(0)
    net = UNet(1, 12, channels=(8, 8, 16), n_features=16)
    x = torch.randn(3, 1, 12, 12)
    assert not torch.allclose(net(x, torch.zeros(3)), net(x, torch.full((3,), 3.0)))


def test_self_attention_treats_pixels_as_a_set():
    # no positions enter attention: shuffling the pixels shuffles the output the same way
    torch.manual_seed(0)
    attn = SelfAttention(16)
    x = torch.randn(2, 16, 5, 5)
    perm = torch.randperm(25)
    shuffled = x.flatten(2)[:, :, perm].reshape(x.shape)
    out, out_shuffled = attn(x), attn(shuffled)
    assert out.shape == x.shape
    # the same sums over 25 pixels and 16 channels in another order: float32 rounding ~25 eps32 |terms| ~ 5e-6
    torch.testing.assert_close(out_shuffled, out.flatten(2)[:, :, perm].reshape(x.shape), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(out, x, atol=1e-3)   # and it does change its input
    with pytest.raises(ValueError, match="attention channels must be divisible by heads = 4, got 10"):
        SelfAttention(10)


def test_mlp_depends_on_condition():
    net = MLP(2, width=16)
    x = torch.randn(4, 2)
    assert not torch.allclose(net(x, torch.zeros(4)), net(x, torch.full((4,), 3.0)))


@pytest.mark.parametrize("make", [lambda: MLP(3, width=24, depth=2, n_features=8),
                                  lambda: UNet(1, 12, channels=(8, 8, 16), n_features=16)])
def test_build_network_reproduces_architecture(make):
    net = make()
    rebuilt = build_network(net.config)
    assert type(rebuilt) is type(net)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in net.state_dict().items()}
    assert count_parameters(rebuilt) == count_parameters(net)
    # with the weights loaded, the same function
    rebuilt.load_state_dict(net.state_dict())
    shape = (2, 3) if isinstance(net, MLP) else (2, 1, 12, 12)
    x, c = torch.randn(shape), torch.randn(2)
    torch.testing.assert_close(rebuilt(x, c), net(x, c), rtol=0, atol=0)   # same weights, inputs, kernels: bitwise
    # the config survives a checkpoint round trip (plain types only)
    assert build_network(dict(net.config)).config == net.config


def test_count_parameters():
    net = MLP(2, extra=1, width=10, depth=1, n_features=4)
    # inp (2+4)*10+10, cond 4*10+10, block 10*10+10, out 10*3+3
    assert count_parameters(net) == 70 + 50 + 110 + 33
    net.inp.requires_grad_(False)
    assert count_parameters(net) == 50 + 110 + 33


def test_wrong_input_shapes():
    with pytest.raises(ValueError, match=r"x must have shape \(B, 2\), got \(4, 3\)"):
        MLP(2, width=8)(torch.randn(4, 3), torch.randn(4))
    with pytest.raises(ValueError, match=r"x must have shape \(B, 2\), got \(4, 1, 2\)"):
        MLP(2, width=8)(torch.randn(4, 1, 2), torch.randn(4))
    with pytest.raises(ValueError, match=r"x must have shape \(B, 1, 28, 28\), got \(2, 784\)"):
        UNet(1, 28, channels=SMALL)(torch.randn(2, 784), torch.randn(2))
    with pytest.raises(ValueError, match=r"x must have shape \(B, 3, 32, 32\), got \(2, 1, 32, 32\)"):
        UNet(3, 32, channels=SMALL)(torch.randn(2, 1, 32, 32), torch.randn(2))


def test_bad_constructor_args():
    with pytest.raises(ValueError, match="width must be >= 1, got 0"):
        MLP(2, width=0)
    with pytest.raises(ValueError, match="data_dim must be >= 1, got 0"):
        MLP(0)
    with pytest.raises(TypeError, match="depth must be an int, got float"):
        MLP(2, depth=2.0)
    with pytest.raises(ValueError, match="n_features must be an even number >= 2, got 7"):
        MLP(2, n_features=7)
    with pytest.raises(ValueError, match="n_features must be an even number >= 2, got 0"):
        UNet(1, 28, n_features=0)
    with pytest.raises(ValueError, match="image_size must be divisible by 4, got 30"):
        UNet(1, 30)
    with pytest.raises(ValueError, match="channels must have 3 entries"):
        UNet(1, 28, channels=(8, 16))
    with pytest.raises(ValueError, match=r"channels\[2\] must be divisible by 4 \(the attention heads\), got \(8, 16, 18\)"):
        UNet(1, 28, channels=(8, 16, 18))
    with pytest.raises(ValueError, match="image_channels must be >= 1, got 0"):
        UNet(0, 28)
    with pytest.raises(ValueError, match="unknown network kind 'resnet'"):
        build_network(dict(kind="resnet"))


@pytest.mark.parametrize("make", [lambda: MLP(2, width=16, depth=1, num_classes=3),
                                  lambda: UNet(1, 8, SMALL, num_classes=3)], ids=["mlp", "unet"])
def test_a_class_conditional_network_reads_its_labels(make):
    torch.manual_seed(0)
    net = make()
    shape = (4, 2) if isinstance(net, MLP) else (4, 1, 8, 8)
    x, c = torch.randn(shape, generator=gen(1)), torch.full((4,), 0.3)
    with torch.no_grad():
        for p in net.label_embed.parameters():      # the embedding starts random; make its rows clearly apart
            p.copy_(torch.randn(p.shape, generator=gen(2)))
        by_label = [net(x, c, torch.full((4,), k)) for k in range(3)]
        none = net(x, c)
        no_label = net(x, c, torch.full((4,), NO_LABEL))
    assert all(not torch.allclose(by_label[i], by_label[j]) for i in range(3) for j in range(i))
    assert torch.equal(none, no_label)                                   # None means NO_LABEL for every row
    assert not any(torch.allclose(none, b) for b in by_label)            # "no label" is an entry of its own
    mixed = net(x, c, torch.tensor([0, 1, 2, NO_LABEL]))                 # each row reads its own label
    for row, label in enumerate([0, 1, 2]):
        torch.testing.assert_close(mixed[row], by_label[label][row])
    rebuilt = build_network(net.config)
    assert rebuilt.num_classes == 3 and count_parameters(rebuilt) == count_parameters(net)


def test_unconditional_networks_keep_their_config_and_take_no_labels():
    # the configs that every checkpoint made before labels stored: no num_classes key, and the same parameters
    assert "num_classes" not in MLP(2).config and "num_classes" not in UNet().config
    assert count_parameters(MLP(2, num_classes=0)) == count_parameters(MLP(2))
    with pytest.raises(ValueError, match=r"labels were given, but this MLP is unconditional \(num_classes = 0\)"):
        MLP(2, width=8, depth=1)(torch.randn(3, 2), torch.zeros(3), torch.zeros(3, dtype=torch.long))


@pytest.mark.parametrize("labels, error, message", [
    (torch.tensor([0, 1, 3]), ValueError, r"labels must lie in \[0, 3\) or be NO_LABEL \(-1\), got 0 to 3"),
    (torch.tensor([0, -2, 1]), ValueError, r"labels must lie in \[0, 3\) or be NO_LABEL \(-1\), got -2 to 1"),
    (torch.tensor([0.0, 1.0, 2.0]), TypeError, "labels must be an integer tensor, got torch.float32"),
    (torch.tensor([0, 1]), ValueError, r"labels must have shape \(3,\), one per row, got \(2,\)"),
])
def test_bad_labels_are_refused(labels, error, message):
    net = MLP(2, width=8, depth=1, num_classes=3)
    with pytest.raises(error, match=message):
        net(torch.randn(3, 2), torch.zeros(3), labels)
    with pytest.raises(ValueError, match="num_classes must be >= 0, got -1"):
        MLP(2, num_classes=-1)

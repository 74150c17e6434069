"""Facts about pfgm_lite/methods.py: a PFGM rebuilds from its config, `emphasis` moves training points into the
band without changing the target, PFGM.paper() is the official recipe (its z-velocity rule included), our
velocity cap never binds for the exact field, and bad options are refused clearly."""
from __future__ import annotations

import math

import pytest
import torch

from pfgm_lite import data, nets, sampling, train
from pfgm_lite import methods as methods_module
from pfgm_lite.field import log_z_velocity_from_normalized
from pfgm_lite.methods import PFGM, Batch, method_from_config
from pfgm_lite.perturb import band_exponents, hyperparameter_rule, hyperparameters_for

HP = hyperparameter_rule(16, 3.0)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("make", [lambda: PFGM(HP, (16,)), lambda: PFGM.paper(HP, (1, 4, 4), z_exp=0.1),
                                  lambda: PFGM(HP, (1, 4, 4), emphasis=0.5, clip="none")])
def test_config_round_trip(make):
    method = make()
    rebuilt = method_from_config(method.to_config())
    assert rebuilt.to_config() == method.to_config()
    assert type(rebuilt) is PFGM and rebuilt.emphasis == method.emphasis and rebuilt.z_exp == method.z_exp


def test_paper_is_the_official_recipe():
    paper = PFGM.paper(HP, (16,))
    assert (paper.gamma, paper.precondition, paper.restrict_M, paper.clip) == (5.0, False, True, "radius")
    assert (paper.z_velocity, paper.z_exp) == ("paper", 5.0)     # CIFAR-10's sampling.z_exp
    assert paper.emphasis == 0.0
    torch.testing.assert_close(paper.input_scale(torch.tensor([0.01, 1.0, 100.0])), torch.ones(3))


def official_log_z_velocity(v_x, v_z, z, gamma, z_exp, n_dims):
    """The official Poisson.ode, written out per sample: (B, N), (B,), (B,) -> dx/dlog z (B, N)."""
    out = []
    for vx, vz, zz in zip(v_x.double(), v_z.double(), z.double()):
        if zz < z_exp and gamma > 0:
            norm_1 = vx.norm() / math.sqrt(n_dims)
            x_norm = gamma * norm_1 / (1 - norm_1)
            x_norm = torch.sqrt(x_norm**2 + zz**2)
            vz = -math.sqrt(n_dims) * zz / (x_norm + gamma)
        out.append(zz * vx / (vz + 1e-5))
    return torch.stack(out)


def test_paper_velocity_follows_the_official_sampler():
    method = PFGM.paper(HP, (16,))
    v = torch.randn(40, 17, generator=gen(2)) * 0.2
    v[:, -1] = -v[:, -1].abs() - 0.05                       # a network's v_z: negative, as the target's
    z = torch.logspace(-3, 2, 40)                           # both sides of z_exp = 5
    x = torch.randn(40, 16, generator=gen(3))
    expected = official_log_z_velocity(v[:, :16], v[:, 16], z, 5.0, 5.0, 16)
    torch.testing.assert_close(method.velocity(v, x, z).double(), expected, rtol=1e-5, atol=1e-6)  # float32 inputs
    # below z_exp the network's v_z is not used at all; above it, it is
    other = v.clone()
    other[:, -1] = -1.0
    below = z < 5.0
    assert torch.equal(method.velocity(other, x, z)[below], method.velocity(v, x, z)[below])
    assert not torch.isclose(method.velocity(other, x, z)[~below], method.velocity(v, x, z)[~below]).all()


def test_paper_rule_matches_the_exact_inversion_where_z_is_small_against_the_field():
    """The rule estimates ||E_hat_x|| as gamma n / (1 - n), which ignores z: right when z << ||E_hat_x||. The official
    division by v_z + 1e-5 then scales the exact velocity by v_z / (v_z + 1e-5), a visible bias when |v_z| is small
    (2D, small z: v_z ~ -2e-4 at z = 1e-3, a 5% slow-down)."""
    y = data.sample_toy("moons", 200, gen(4)).double()
    hp = hyperparameters_for(y)
    paper = PFGM.paper(hp, (2,))
    x = torch.tensor([[3.0, 0.0], [0.0, -2.5], [-2.0, 2.0]], dtype=torch.float64)   # ||E_hat_x|| ~ 2-3
    for z_value in (1e-3, 1e-2, 1e-1):
        z = torch.full((3,), z_value, dtype=torch.float64)
        v = paper.target(x, z, Batch(large=y))
        exact = log_z_velocity_from_normalized(v[:, :2], z, 5.0)
        shifted = exact * (v[:, 2] / (v[:, 2] + 1e-5))[:, None]
        rel = ((paper.velocity(v, x, z) - shifted).norm(dim=1) / shifted.norm(dim=1)).max().item()
        assert rel < 0.1 * z_value**2, (z_value, rel)       # the neglected (z / ||E_hat_x||)^2, with ||E_hat_x|| > 2
        slow_down = (1 - v[:, 2] / (v[:, 2] + 1e-5)).abs().max().item()
        assert (slow_down > 0.01) == (z_value == 1e-3), (z_value, slow_down)


def test_exact_velocity_cap_never_binds_for_the_exact_field():
    """||E_hat_x|| <= ||x|| + max ||y_i||: the exact field's velocity is never changed by the cap."""
    y = data.sample_toy("8gaussians", 300, gen(5)).double()
    method = PFGM(hyperparameters_for(y), (2,))
    assert method.hp.max_norm == pytest.approx(y.norm(dim=1).max().item())
    z = torch.logspace(-3, 2, 400, dtype=torch.float64)
    x = 4 * torch.randn(400, 2, generator=gen(6), dtype=torch.float64) * torch.rand(400, 1, generator=gen(7),
                                                                                     dtype=torch.float64)
    v = method.target(x, z, Batch(large=y))
    uncapped = log_z_velocity_from_normalized(v[:, :2], z, method.gamma_at(x, z), max_ratio=1.0 - 1e-12)
    torch.testing.assert_close(method.velocity(v, x, z), uncapped, rtol=1e-9, atol=1e-12)
    # a prediction that claims a huge field (||v_x|| -> sqrt(N)) is capped at the bound
    bad = v.clone()
    bad[:, :2] = bad[:, :2] / bad[:, :2].norm(dim=1, keepdim=True) * math.sqrt(2) * 0.999
    capped = method.velocity(bad, x, z).norm(dim=1)
    assert (capped <= x.norm(dim=1) + method.hp.max_norm + 1e-9).all()
    assert (capped >= (x.norm(dim=1) + method.hp.max_norm) * (1 - 1e-9)).any()   # it does bind there


def test_paper_recipe_trains_and_samples():
    """PFGM.paper() end to end on moons: restrict_M in the training draws, the radius-clipped prior, and a network
    that after 150 steps carries prior samples to the data (an untrained one does not)."""
    y = data.sample_toy("moons", 4000, gen(8))
    method = PFGM.paper(hyperparameters_for(y), (2,))
    _, z = method.perturb(y, gen(9))
    x0, z0 = method.sample_prior(2000, gen(10))
    assert (x0.norm(dim=1) <= method.hp.upper_norm * (1 + 1e-6)).all() and (z0 == method.hp.z_max).all()
    assert (x0.norm(dim=1) > method.hp.upper_norm * (1 - 1e-6)).float().mean() > 0.4    # ~49% clipped in 2D
    torch.manual_seed(0)
    untrained = nets.MLP(2, width=32, depth=2)
    config = train.TrainConfig(steps=150, batch_size=128, large_batch_size=1024, warmup=10, ema_decay=0.9,
                               device="cpu")
    result = train.train(method, nets.MLP(2, width=32, depth=2), y, config, progress=False)
    distance = {}
    for name, net in [("trained", result.ema), ("untrained", untrained)]:
        out = sampling.sample(method, method.predictor(net), 500, solver="heun", steps=10, generator=gen(11))
        assert torch.isfinite(out.x).all()
        distance[name] = torch.cdist(out.x, y).min(dim=1).values.median().item()
    # measured: trained ~0.05-0.1, untrained ~1 and more; prior start points ~4 from the data
    assert distance["trained"] < 0.3 < distance["untrained"], distance


def test_emphasis_moves_training_points_into_the_band():
    y = torch.randn(20_000, 16, generator=gen(1)) * 0.75
    m_low, m_high = band_exponents(HP)
    noise_low, noise_high = (HP.sigma * (1 + HP.tau) ** m for m in (m_low, m_high))

    def share_in_band(method):
        x, _ = method.perturb(y, generator=gen(0))
        noise = (x - y).norm(dim=1) / math.sqrt(16)       # noise per dimension, ~ sigma (1 + tau)^m
        return ((noise > noise_low) & (noise < noise_high)).float().mean().item()

    plain, emphasized = share_in_band(PFGM(HP, (16,))), share_in_band(PFGM(HP, (16,), emphasis=0.5))
    band_share = (m_high - m_low) / HP.M
    assert abs(plain - band_share) < 0.05
    assert abs(emphasized - (0.5 + 0.5 * band_share)) < 0.05
    # the regression target at a given point does not depend on how the point was drawn
    x, z = torch.randn(5, 16), torch.rand(5) + 0.1
    batch = Batch(large=y[:256])
    torch.testing.assert_close(PFGM(HP, (16,), emphasis=0.5).target(x, z, batch), PFGM(HP, (16,)).target(x, z, batch))


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match=r"emphasis must be in \[0, 1\] \(a fraction of the training points\), got 2"):
        PFGM(HP, (16,), emphasis=2.0)
    with pytest.raises(ValueError, match="emphasis must be finite and >= 0, got -0.1"):
        PFGM(HP, (16,), emphasis=-0.1)
    with pytest.raises(TypeError, match="emphasis must be a number, got str"):
        PFGM(HP, (16,), emphasis="half")
    with pytest.raises(ValueError, match=r"hyper-parameters were made for N = 16 but data_shape \(1, 5, 5\) has N = 25"):
        PFGM(HP, (1, 5, 5))
    with pytest.raises(ValueError, match=r"z_velocity must be one of \('exact', 'paper'\), got 'network'"):
        PFGM(HP, (16,), z_velocity="network")
    with pytest.raises(ValueError, match="z_exp must be finite and >= 0, got -1"):
        PFGM(HP, (16,), z_exp=-1)
    with pytest.raises(ValueError, match="unknown method 'vp_sde' in config; known: 'ddpm', 'edm', 'flow_matching', "
                                         "'pfgm', 'pfgmpp'"):
        method_from_config(dict(name="vp_sde"))
    with pytest.raises(ValueError, match=r"a DDPM config needs 'data_shape' \(the shape of one sample\), got keys \[\]"):
        method_from_config(dict(name="ddpm"))


def test_predictor_in_chunks_gives_the_same_predictions():
    # a small U-Net (per-sample normalization, so chunks are independent): 10 images in chunks of 4 (4 + 4 + 2)
    hp = hyperparameter_rule(16, 3.0)
    method = PFGM(hp, (1, 4, 4))
    torch.manual_seed(0)
    net = nets.UNet(image_size=4, channels=(8, 8, 8))
    x, t = torch.randn(10, 1, 4, 4, generator=gen(1)), torch.rand(10, generator=gen(2)) + 0.1
    whole, chunked = method.predictor(net)(x, t), method.predictor(net, batch_size=4)(x, t)
    assert chunked.shape == whole.shape == (10, 17)
    # float32 convolutions over different batch sizes may pick other kernels: agreement to a few ulp of the outputs
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(method.predictor(net, batch_size=4)(x.flip(0), t), whole)   # order matters: not a stub
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        method.predictor(net, batch_size=0)


def test_the_conditional_target_is_the_field_of_the_points_own_class():
    """With labels, PFGM's target is the exact field of the large batch's charges of that class (in float64, by
    Coulomb's law written out), and NO_LABEL rows get the field of all charges."""
    hp = hyperparameters_for(data.sample_toy("moons", 2000, gen(0)))
    method = PFGM(hp, (2,))
    large = torch.cat([torch.randn(30, 2, generator=gen(1)) - 2, torch.randn(30, 2, generator=gen(2)) + 2]).double()
    large_labels = torch.tensor([0] * 30 + [1] * 30)
    x = torch.zeros(6, 2, dtype=torch.float64)                     # midway between the two classes
    z = torch.full((6,), 0.5, dtype=torch.float64)
    labels = torch.tensor([0, 1, nets.NO_LABEL, 0, 1, nets.NO_LABEL])
    got = method.target(x, z, Batch(large=large, labels=labels, large_labels=large_labels))

    def coulomb_direction(charges):                                 # the sum of (x~ - y~) / |x~ - y~|^3 in R^3
        diff = torch.cat([x, z[:, None]], 1)[:, None] - torch.cat([charges, torch.zeros(len(charges), 1,
                                                                                          dtype=torch.float64)], 1)
        e = (diff / diff.norm(dim=-1, keepdim=True) ** 3).sum(1)
        return e / e.norm(dim=1, keepdim=True)

    expected = {0: coulomb_direction(large[:30]), 1: coulomb_direction(large[30:]), -1: coulomb_direction(large)}
    for row, label in enumerate(labels.tolist()):
        direction = -got[row] / got[row].norm()                     # v points against the field
        torch.testing.assert_close(direction, expected[label][row])
    # and it matters: the two classes' fields point to opposite sides here, the unconditional one (nearly) up
    assert got[0, 0] < 0 < got[1, 0]
    plain = method.target(x, z, Batch(large=large))
    torch.testing.assert_close(got[2], plain[2])
    with pytest.raises(ValueError, match="holds no charge of class 2"):
        method.target(x[:1], z[:1], Batch(large=large, labels=torch.tensor([2]), large_labels=large_labels))


@pytest.mark.parametrize("make", [lambda: PFGM(HP, (16,)), lambda: methods_module.EDM((16,)),
                                  lambda: methods_module.FlowMatching((16,))], ids=["pfgm", "edm", "flow_matching"])
def test_guidance_combines_the_conditional_and_unconditional_predictions(make):
    method = make()
    torch.manual_seed(0)
    net = nets.MLP(16, extra=method.extra_outputs, width=32, depth=1, num_classes=4)
    with torch.no_grad():
        net.label_embed.weight.copy_(torch.randn(net.label_embed.weight.shape, generator=gen(5)))
    x, t = torch.randn(6, 16, generator=gen(6)), torch.full((6,), 0.4)
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    conditional = method.predictor(net, labels=labels)(x, t)
    unconditional = method.predictor(net)(x, t)
    assert not torch.allclose(conditional, unconditional)
    torch.testing.assert_close(method.predictor(net, labels=labels, guidance=0.0)(x, t), conditional)
    for w in (0.5, 3.0):
        guided = method.predictor(net, labels=labels, guidance=w, batch_size=5)(x, t)   # batches split the pair
        torch.testing.assert_close(guided, (1 + w) * conditional - w * unconditional)


@pytest.mark.parametrize("kwargs, message", [
    (dict(guidance=-1.0, labels=torch.zeros(3, dtype=torch.long)), "guidance must be finite and >= 0, got -1.0"),
    (dict(guidance=float("nan"), labels=torch.zeros(3, dtype=torch.long)), "guidance must be finite and >= 0"),
    (dict(guidance=2.0), "guidance = 2 needs labels"),
])
def test_bad_guidance_is_refused_before_any_work(kwargs, message):
    net = nets.MLP(16, width=8, depth=1, num_classes=2)
    with pytest.raises(ValueError, match=message):
        PFGM(HP, (16,)).predictor(net, **kwargs)
    with pytest.raises(ValueError, match="guidance = 1 needs a class-conditional network"):
        PFGM(HP, (16,)).predictor(nets.MLP(16, width=8, depth=1), labels=torch.zeros(3, dtype=torch.long), guidance=1)


def test_the_method_base_and_the_networks_mean_the_same_no_label():
    from pfgm_lite.methods import base

    assert base.NO_LABEL == nets.NO_LABEL

"""The GPU path the README promises, on a real CUDA GPU (marker `gpu`; skipped without one: `pytest -m gpu` runs
only these). Train a toy model on the GPU (bf16 autocast, the target in float32), checkpoint it, load it back
with load_model(device="cuda"), sample on the GPU, and take a bf16 step of the digits U-Net. One GPU cannot host two
NCCL ranks: the multi-process nccl path is tested without a GPU in test_distributed.py (a fake collective layer)."""
from __future__ import annotations

import pytest
import torch

from pfgm_lite import recipes, sampling
from pfgm_lite.checkpoint import load_checkpoint, load_model
from pfgm_lite.data import digit_split, sample_toy
from pfgm_lite.methods import PFGM
from pfgm_lite.nets import MLP
from pfgm_lite.perturb import hyperparameters_for
from pfgm_lite.train import TrainConfig, loss_on_batch, train

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_train_checkpoint_load_and_sample_on_the_gpu(tmp_path):
    data = sample_toy("moons", 5000, torch.Generator().manual_seed(0))
    for method in (PFGM(hyperparameters_for(data), (2,)), recipes.toy_edm(data)):
        torch.manual_seed(0)
        net = MLP(2, extra=method.extra_outputs, width=64, depth=2)
        config = TrainConfig(steps=50, batch_size=128, large_batch_size=512, device="cuda")
        result = train(method, net, data, config, out_dir=tmp_path / method.name, progress=False)
        assert next(result.ema.parameters()).is_cuda and len(result.losses) == 50
        assert all(torch.isfinite(torch.tensor(result.losses)))
        assert load_checkpoint(tmp_path / method.name)["step"] == 50
        loaded, ema, _ = load_model(tmp_path / method.name, device="cuda")
        assert next(ema.parameters()).device.type == "cuda"
        out = sampling.sample(loaded, loaded.predictor(ema), 256, solver="heun", steps=10, device="cuda",
                              generator=torch.Generator().manual_seed(1))
        assert out.x.is_cuda and out.x.shape == (256, 2) and torch.isfinite(out.x).all() and out.nfe == 20


def test_a_bf16_step_of_the_digits_unet():
    images = digit_split()[0][:256].cuda()
    method = recipes.digits_method(images.cpu())
    torch.manual_seed(0)
    net = recipes.digits_network().cuda()
    generator = torch.Generator().manual_seed(2)
    loss = loss_on_batch(method, net, images, 32, generator, autocast=torch.bfloat16)
    assert loss.dtype == torch.float32 and torch.isfinite(loss) and loss.requires_grad   # the target stays float32
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    fp32 = loss_on_batch(method, net, images, 32, torch.Generator().manual_seed(2))
    # the same draws and weights in float32: bf16 keeps 8 significant bits, so a few percent apart at most
    assert abs(loss.item() - fp32.item()) < 0.05 * fp32.item()

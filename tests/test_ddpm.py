"""DDPM denoiser: schedule inversion, U-Net shapes, reverse processes, checkpoints, a short real training run."""
from __future__ import annotations

import math

import pytest
import torch
from helpers import sample_or_skip
from lookalike.retrieval.checkpoint import CheckpointError
from lookalike.retrieval.denoise.diffusion import build_diffusion, load_diffusion, save_diffusion
from lookalike.retrieval.denoise.noise import add_noise, psnr, to_unit
from lookalike.retrieval.denoise.schedule import NoiseSchedule
from lookalike.retrieval.denoise.unet import UNet

pytestmark = pytest.mark.usefixtures("one_torch_thread")
_sample = sample_or_skip


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_noise_to_step_mapping_inverts_schedule(kind):
    s = NoiseSchedule(kind, 1000)
    for t in [0, 1, 10, 57, 144, 258, 500, 999]:
        assert s.t_of_sigma(s.sigma_of_t(t)) == t
    for sigma in [0.05, 0.1, 0.3, 0.5, 1.0, 1.5]:
        t = s.t_of_sigma(sigma)
        ab = s.abar(t)
        assert math.sqrt(1 - ab) / math.sqrt(ab) == pytest.approx(sigma, rel=0.03)
    assert s.t_of_sigma(0.0) == -1
    # sigma = 1.0 is where abar = 0.5
    assert s.abar(s.t_of_sigma(1.0)) == pytest.approx(0.5, abs=0.01)
    with pytest.raises(ValueError):
        s.t_of_sigma(-0.1)


def test_unet_shapes_odd_sizes_and_time_dependence():
    torch.manual_seed(0)
    net = UNet(in_channels=1, base=16)
    for p in net.conv_out.parameters():  # zero-init output would hide the time dependence
        torch.nn.init.normal_(p, std=0.1)
    x = torch.randn(2, 1, 28, 28)
    a = net(x, torch.tensor([5, 5]))
    b = net(x, torch.tensor([500, 500]))
    assert a.shape == x.shape
    assert not torch.allclose(a, b)
    assert net(torch.randn(1, 1, 30, 26), torch.tensor([3])).shape == (1, 1, 30, 26)
    assert UNet(in_channels=3, base=16)(torch.randn(1, 3, 32, 32), torch.tensor([1])).shape == (1, 3, 32, 32)


def test_oracle_denoiser_recovers_image_from_t_star():
    """With a perfect noise predictor, DDIM and DDPM started at t*(sigma) return the clean image."""
    x = to_unit(_sample("mnist").images[:4])
    model = build_diffusion(1, 28, base=16)
    g = torch.Generator().manual_seed(0)
    sigma = 0.5
    y = add_noise(x, sigma, g, realistic=False)
    t_star = model.schedule.t_of_sigma(sigma)
    a = model.schedule.abar(t_star)

    class Oracle(torch.nn.Module):  # knows x0, returns the eps consistent with x_t
        in_channels = 1

        def forward(self, xt, t):
            ab = model.abar[t].view(-1, 1, 1, 1)
            return (xt - ab.sqrt() * x) / (1 - ab).sqrt()

    model.unet = Oracle()
    for method in ("ddim", "ddpm"):
        out = model.denoise(y, sigma, method, steps=10, generator=g)
        assert float(psnr(out, x).mean()) > 60
    # the start point is sqrt(abar_t*) * y, i.e. x_t* with the query's own noise
    assert a == pytest.approx(1 / (1 + sigma ** 2), rel=0.03)


def test_zero_sigma_is_identity_and_step_table():
    model = build_diffusion(1, 28, base=16)
    y = torch.rand(2, 1, 28, 28) * 2 - 1
    assert torch.equal(model.denoise(y, 0.0, "ddim", 20), y)
    seq = model.step_sequence(144, 20)
    assert seq[0] == 144 and seq[-1] == 0 and len(seq) == 20 and seq == sorted(seq, reverse=True)
    with pytest.raises(ValueError):
        model.denoise(y, 0.5, "euler", 5)


def test_checkpoint_roundtrip_and_foreign_file(tmp_path):
    model = build_diffusion(3, 32, base=16)
    path = tmp_path / "m.pt"
    save_diffusion(model, path, {"dataset": "cifar10", "command": "test"})
    back = load_diffusion(path)
    assert back.image_size == 32 and back.channels == 3 and back.meta["dataset"] == "cifar10"
    for k, v in model.unet.state_dict().items():
        assert torch.equal(v, back.unet.state_dict()[k])
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match="not a lookalike checkpoint"):
        load_diffusion(foreign)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_diffusion(junk)
    with pytest.raises(CheckpointError, match="not found"):
        load_diffusion(tmp_path / "missing.pt")


@pytest.mark.slow
def test_short_training_run_lowers_loss_and_writes_grid(tmp_path):
    _sample("mnist", "train")
    from lookalike.training.ddpm.train import TrainConfig, train_ddpm

    torch.manual_seed(0)
    out = tmp_path / "tiny.pt"
    cfg = TrainConfig(dataset="mnist", out=str(out), epochs=1, max_steps=40, batch_size=16, base=8,
                      grid_every=1, eval_images=10, command="test")
    model, info = train_ddpm(cfg, progress=False)
    assert out.is_file() and out.with_suffix(".json").is_file()
    assert list(tmp_path.glob("tiny-grid-epoch*.png"))
    assert info["steps"] == 40
    assert info["final_loss"] < 0.9  # starts at ~1.0 (zero-initialised output predicts eps = 0)
    assert load_diffusion(out).meta["steps"] == info["steps"]

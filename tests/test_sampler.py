"""Rectified-flow core: target/loss conventions and the Euler sampler."""
import torch

from flexivid.diffusion.flow import add_noise, flow_loss, predict_x0, sample_timesteps, shift_timesteps, velocity_target
from flexivid.diffusion.sampler import FlowEulerSampler


def test_interpolation_and_target():
    x0, noise = torch.randn(3, 3, 2, 4, 4), torch.randn(3, 3, 2, 4, 4)
    t = torch.tensor([0.0, 0.5, 1.0])
    xt = add_noise(x0, noise, t)
    assert torch.equal(xt[0], x0[0]) and torch.equal(xt[2], noise[2])
    v = velocity_target(x0, noise)
    assert torch.allclose(predict_x0(xt, v, t), x0, atol=1e-6)
    assert flow_loss(v, v) == 0


def test_timestep_sampling_ranges():
    g = torch.Generator().manual_seed(0)
    for m in ("logit_normal", "uniform"):
        t = sample_timesteps(10000, m, generator=g)
        assert 0 < t.min() and t.max() < 1 and abs(t.mean() - 0.5) < 0.02
    assert (shift_timesteps(torch.tensor([0.5]), 3.0) > 0.5).all()


def test_euler_sampler_exact_for_constant_velocity():
    """With the true velocity of a straight path, Euler lands exactly on x0 from pure noise."""
    x0, noise = torch.randn(2, 3, 2, 4, 4), torch.randn(2, 3, 2, 4, 4)
    s = FlowEulerSampler(shift=2.0)
    s.set_timesteps(7)
    assert len(s.timesteps) == 7 and s.sigmas[0] == 1 and s.sigmas[-1] == 0
    x = noise
    for i, _ in enumerate(s.timesteps):
        x = s.step(noise - x0, i, x)
    assert torch.allclose(x, x0, atol=1e-5)

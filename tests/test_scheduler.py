"""Rectified-flow core: target/loss conventions and the scheduler (Euler steps + a step plan per step)."""
import math

import pytest
import torch

from flexivid.diffusion.flow import add_noise, flow_loss, predict_x0, sample_timesteps, shift_timesteps, velocity_target
from flexivid.diffusion.scheduler import FlexiScheduler
from flexivid.training.losses import draw_noise

MODES = {"full": (1, 2, 2), "coarse_time": (2, 2, 2), "coarse_space": (1, 4, 4)}


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


def test_timestep_defaults_draw_what_they_drew_before_the_options():
    """loc 0, scale 1, shift 1 are bit-identical to the plain draws, and draw_noise keeps its order."""
    def gen():
        return torch.Generator().manual_seed(7)
    assert torch.equal(sample_timesteps(4096, "logit_normal", generator=gen()),
                       torch.sigmoid(torch.randn(4096, generator=gen())))
    assert torch.equal(sample_timesteps(4096, "uniform", generator=gen()), torch.rand(4096, generator=gen()))
    x0 = torch.zeros(5, 3, 2, 4, 4)
    drop, t, noise = draw_noise(x0, gen(), "logit_normal", 0.3)
    g = gen()
    assert torch.equal(drop, torch.rand(5, generator=g) < 0.3)
    assert torch.equal(t, torch.sigmoid(torch.randn(5, generator=g)))
    assert torch.equal(noise, torch.randn(x0.shape, generator=g))


@pytest.mark.parametrize("loc,scale", [(0.0, 1.0), (-0.5, 0.6), (1.0, 1.6)])
def test_logit_normal_loc_and_scale(loc, scale):
    t = sample_timesteps(40000, "logit_normal", generator=torch.Generator().manual_seed(1), loc=loc, scale=scale)
    z = torch.logit(t.double())
    assert abs(z.mean() - loc) < 0.03 and abs(z.std() - scale) < 0.03
    assert abs(t.median() - torch.sigmoid(torch.tensor(loc))) < 0.01  # sigmoid is monotone: median -> median


def test_timestep_shift_moves_draws_to_high_noise():
    # uniform t, shifted: P(t' <= q) = P(t <= q / (s - (s - 1) q)), e.g. s = 3 puts 25% of draws above 0.9 (not 10%)
    s, n = 3.0, 40000
    t = sample_timesteps(n, "uniform", generator=torch.Generator().manual_seed(2), shift=s)
    for q in (0.25, 0.5, 0.9, 0.95):
        assert abs((t <= q).double().mean() - q / (s - (s - 1) * q)) < 0.01, q
    # on the logit-normal the shift is a move of the mean by log(s): sigmoid(z) shifted is sigmoid(z + log s)
    shifted = sample_timesteps(n, "logit_normal", generator=torch.Generator().manual_seed(3), shift=s)
    moved = sample_timesteps(n, "logit_normal", generator=torch.Generator().manual_seed(3), loc=math.log(s))
    assert torch.allclose(shifted, moved, atol=1e-6)


def test_euler_scheduler_exact_for_constant_velocity():
    """With the true velocity of a straight path, Euler lands exactly on x0 from pure noise."""
    x0, noise = torch.randn(2, 3, 2, 4, 4), torch.randn(2, 3, 2, 4, 4)
    s = FlexiScheduler(MODES, shift=2.0)
    s.set_timesteps(7)
    assert len(s.timesteps) == 7 and s.sigmas[0] == 1 and s.sigmas[-1] == 0
    x = noise
    for t, plan in s:
        assert plan.kind == "cfg" and plan.cond_mode == "full"
        x = s.step(noise - x0, t, x)
    assert torch.allclose(x, x0, atol=1e-5) and s.step_index == 7


def test_scheduler_owns_the_step_plans_and_its_index():
    s = FlexiScheduler(MODES, guided=True)
    s.set_timesteps(4, "weak_first:coarse_space:3/1")  # cond full from step 1, guide full from step 3
    assert [p.kind for _, p in s] == ["cfg", "weak_to_strong", "weak_to_strong", "cfg"]
    assert [p.guide_mode for _, p in s] == ["coarse_space", "coarse_space", "coarse_space", "full"]
    off = FlexiScheduler(MODES, guided=False)
    off.set_timesteps(2, "coarse_time:1,full:1")
    assert [(p.kind, p.cond_mode) for _, p in off] == [("cond_only", "coarse_time"), ("cond_only", "full")]
    x, v = torch.zeros(1, 3, 1, 2, 2), torch.ones(1, 3, 1, 2, 2)
    t0, t1 = off.timesteps
    assert torch.equal(off.step(v, t0, x), x - 0.5) and off.step_index == 1  # its own index: dt = 0.5 - 1
    assert torch.equal(off.step(v, t1, x - 0.5), x - 1.0) and off.step_index == 2
    with pytest.raises(ValueError, match="set_timesteps"):
        off.step(v, t1, x)
    with pytest.raises(ValueError, match="schedule has 2 steps but steps=3"):
        off.set_timesteps(3, s.schedule.__class__(("full",) * 2, ("full",) * 2))

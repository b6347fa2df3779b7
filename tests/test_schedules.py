"""Patch schedules: spec parsing and FLOPs over both guidance branches (budgets: tests/test_calibration.py)."""
import pytest

from flexivid.config import ModelConfig
from flexivid.diffusion.schedules import (PatchSchedule, cost_order, flops_fraction, full_schedule, parse_schedule,
                                          schedule_flops, weak_first)
from flexivid.models.flops import forward_flops

CFG = ModelConfig(preset="tiny", text_dim=384)
MODES = {"full": (1, 2, 2), "coarse_time": (2, 2, 2), "coarse_space": (1, 4, 4)}
LATENT = (3, 8, 32, 32)
TEXT = 7


def test_presets_and_order_strings():
    assert cost_order(MODES) == ["coarse_space", "coarse_time"]  # fewest tokens first
    assert parse_schedule("full", 4, MODES).cond == ("full",) * 4
    s = parse_schedule("weak_first:coarse_time:3", 5, MODES)
    assert s.cond == s.guide == ("coarse_time",) * 3 + ("full",) * 2
    # The paper's x/y counts FULL steps at the end: cond full for the last 3, guide for the last 1.
    xy = parse_schedule("weak_first:coarse_space:3/1", 5, MODES)
    assert xy.cond == ("coarse_space",) * 2 + ("full",) * 3
    assert xy.guide == ("coarse_space",) * 4 + ("full",)
    assert str(xy) == "weak_first:coarse_space:3/1"
    assert parse_schedule("weak_first", 6, MODES).cond == ("coarse_space",) * 3 + ("full",) * 3
    inter = parse_schedule("interleaved:2:1", 4, MODES)
    assert inter.cond == ("coarse_space", "coarse_space", "coarse_time", "full")
    assert parse_schedule("interleaved", 6, MODES).order() == "coarse_space:2,coarse_time:2,full:2"
    user = parse_schedule("coarse_time:1,coarse_space:2,full:1", 4, MODES)
    assert user.cond == ("coarse_time", "coarse_space", "coarse_space", "full")
    assert parse_schedule(user.order(), 4, MODES) == PatchSchedule(user.cond, user.guide, user.order())


@pytest.mark.parametrize("spec, match", [
    ("coarse_space:2,full:1", "sum to --steps=4, they sum to 3"),
    ("coarse_space:2,blurry:2", "unknown mode 'blurry'.*full, coarse_time, coarse_space"),
    ("weak_first:coarse_time:9", "in 0..4"),
    ("weak_first:coarse_time:5/1", "each in 0..4"),
    ("interleaved:3:3", "summing to at most --steps=4"),
    ("fastest", "unknown schedule 'fastest'; use full, weak_first"),
    ("coarse_time:x,full:2", "must be an integer"),
])
def test_bad_specs_name_the_fix(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_schedule(spec, 4, MODES)


def test_interleaved_needs_two_weak_modes():
    with pytest.raises(ValueError, match="needs >= 2 weak modes.*use weak_first"):
        parse_schedule("interleaved", 4, {"full": (1, 2, 2), "coarse_time": (2, 2, 2)})


def fwd(mode, text_len, lora_rank=0):
    return forward_flops(CFG, MODES[mode], LATENT, text_len, lora_rank=0 if mode == "full" else lora_rank)


def test_flops_count_both_branches():
    steps = 4
    full_cfg = fwd("full", TEXT) + fwd("full", 1)  # conditional attends to the prompt, the null branch to 1 token
    assert schedule_flops(full_schedule(steps), CFG, MODES, LATENT, TEXT) == steps * full_cfg
    s = weak_first(steps, "coarse_time", 1)
    weak_cfg = fwd("coarse_time", TEXT) + fwd("coarse_time", 1)
    assert schedule_flops(s, CFG, MODES, LATENT, TEXT) == weak_cfg + 3 * full_cfg
    # x/y with a full conditional and a weak guide: the guide is the weak CONDITIONAL (prompt tokens)...
    xy = weak_first(steps, "coarse_time", 0, 1)
    w2s = fwd("full", TEXT) + fwd("coarse_time", TEXT)
    assert schedule_flops(xy, CFG, MODES, LATENT, TEXT) == w2s + 3 * full_cfg
    # ... unless weak-to-strong is off (plain CFG with a weak null branch).
    cfg_mixed = fwd("full", TEXT) + fwd("coarse_time", 1)
    assert schedule_flops(xy, CFG, MODES, LATENT, TEXT, weak_to_strong=False) == cfg_mixed + 3 * full_cfg
    # Guidance off: one branch. Unmerged LoRA costs extra in weak modes only.
    no_guide = fwd("coarse_time", TEXT) + 3 * fwd("full", TEXT)
    assert schedule_flops(s, CFG, MODES, LATENT, TEXT, guidance=False) == no_guide
    assert schedule_flops(s, CFG, MODES, LATENT, TEXT, lora_rank=8) > schedule_flops(s, CFG, MODES, LATENT, TEXT)
    assert flops_fraction(full_schedule(7), CFG, MODES, LATENT, TEXT) == 1.0
    assert 0 < flops_fraction(weak_first(4, "coarse_space", 4), CFG, MODES, LATENT, TEXT) < 0.5



"""CFG / weak-to-strong guidance: formulas, which predictions a step needs, and batched = packed = separate."""
import pytest
import torch

from flexivid.config import ModelConfig
from flexivid.diffusion.guidance import (branch_predictions, cfg, guided_velocity, plan_step, s2_from_s1,
                                         weak_to_strong)
from flexivid.models.dit import FlexiVideoDiT
from flexivid.models.modes import ModeSpec, flexify, lora_specs

MODES = {"full": (1, 2, 2), "coarse_time": (2, 2, 2), "coarse_space": (1, 4, 4)}


def test_formulas():
    u, c = torch.tensor([1.0, -2.0]), torch.tensor([3.0, 0.0])
    assert torch.equal(cfg(u, c, 4.0), torch.tensor([9.0, 6.0]))  # u + 4 (c - u)
    assert torch.equal(weak_to_strong(u, c, 2.2), u + 2.2 * (c - u))
    assert s2_from_s1(4) == pytest.approx(2.2)
    assert s2_from_s1(1) == 1.0  # no guidance stays no guidance
    assert (1 - 6.0) / (1 - s2_from_s1(6.0)) == pytest.approx(2.5)


def test_plan_step():
    assert plan_step("full", "full", MODES).kind == "cfg"
    w2s = plan_step("full", "coarse_space", MODES)
    assert (w2s.kind, w2s.guide_mode, w2s.guide_text) == ("weak_to_strong", "coarse_space", True)
    assert plan_step("coarse_time", "coarse_space", MODES).kind == "weak_to_strong"  # 2x vs 4x fewer tokens
    assert plan_step("coarse_space", "full", MODES).kind == "cfg"  # guide stronger than cond: plain CFG
    off = plan_step("full", "coarse_space", MODES, weak_to_strong=False)
    assert (off.kind, off.guide_text) == ("cfg", False)
    none = plan_step("full", "full", MODES, guided=False)
    assert (none.kind, none.guide_mode) == ("cond_only", None)
    with pytest.raises(ValueError, match="unknown mode 'blurry'"):
        plan_step("blurry", "full", MODES)


class StubModel:
    """Velocity = a constant per (mode, conditional?) so the combination can be read off."""

    values = {("full", True): 5.0, ("full", False): 1.0, ("coarse_space", True): 3.0, ("coarse_space", False): 2.0}

    def __call__(self, x, t, text=None, text_mask=None, mode="full"):
        cond = [text is not None and (text_mask is None or bool(text_mask[i].any())) for i in range(x.shape[0])]
        return torch.stack([torch.full_like(x[i], self.values[mode, c]) for i, c in enumerate(cond)])

    def drop_text(self, text, text_mask, drop):  # a dropped row: all-False mask (the real model's null token)
        return text, ~drop[:, None].expand(-1, text.shape[1])

    def can_pack(self, modes):
        return False


def test_guided_velocity_uses_the_weak_conditional():
    x, t, text = torch.zeros(1, 3, 1, 2, 2), torch.ones(1), torch.ones(1, 2, 384)
    s1 = 4.0
    v = guided_velocity(StubModel(), x, t, text, None, plan_step("full", "full", MODES), s1)
    assert torch.allclose(v, torch.full_like(x, 1.0 + s1 * (5.0 - 1.0)))
    v = guided_velocity(StubModel(), x, t, text, None, plan_step("full", "coarse_space", MODES), s1)
    assert torch.allclose(v, torch.full_like(x, 3.0 + 2.2 * (5.0 - 3.0)))  # v(c; weak) + s2 (v(c; strong) - v(c; weak))
    v = guided_velocity(StubModel(), x, t, text, None, plan_step("full", "coarse_space", MODES, weak_to_strong=False),
                        s1)
    assert torch.allclose(v, torch.full_like(x, 2.0 + s1 * (5.0 - 2.0)))


def tiny_model(lora: bool) -> FlexiVideoDiT:
    torch.manual_seed(0)
    model = FlexiVideoDiT(ModelConfig(preset="tiny", text_dim=384))
    weak = {m: p for m, p in MODES.items() if m != "full"}
    if lora:
        flexify(model, lora_specs(weak, 4))
        with torch.no_grad():  # LoRA B starts at zero; make the adapters matter
            for n, p in model.named_parameters():
                if "lora_B" in n:
                    p.normal_(std=0.05)
    else:
        for m, p in weak.items():
            model.add_mode(m, ModeSpec(p))
    with torch.no_grad():  # zero-initialised gates / out-projections would hide differences between paths
        for n, p in model.named_parameters():
            if p.abs().sum() == 0:
                p.normal_(std=0.05)
    return model.eval()


@pytest.mark.parametrize("lora", [False, True], ids=["add_mode", "flexified"])
def test_execution_paths_agree(lora):
    """Batched (one mode), packed (same weights) and two-call (different adapters) predictions equal plain calls."""
    model = tiny_model(lora)
    g = torch.Generator().manual_seed(1)
    x, t = torch.randn(2, 3, 2, 8, 8, generator=g), torch.tensor([0.7, 0.3])
    text = torch.randn(2, 5, 384, generator=g)
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    with torch.inference_mode():
        for cond, guide in [("full", "full"), ("coarse_time", "coarse_time"), ("full", "coarse_space"),
                            ("coarse_space", "full")]:
            plan = plan_step(cond, guide, MODES)
            guide_text = (text, mask) if plan.guide_text else (None, None)
            ref = model(x, t, text, mask, cond), model(x, t, *guide_text, guide)
            assert model.can_pack([cond, guide]) == (not lora or cond == guide)
            got = branch_predictions(model, x, t, text, mask, plan)
            for a, b in zip(got, ref):
                assert torch.allclose(a, b, atol=1e-5), (cond, guide, (a - b).abs().max())
            assert not torch.allclose(ref[0], ref[1], atol=1e-3)  # the two branches really differ

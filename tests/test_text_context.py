"""Text encoded once per sampling call (``FlexiVideoDiT.encode_text``, ``guidance.PromptText``) gives the per-step
path's outputs bit for bit (float32, CPU): every mode, merged and unmerged adapters, dense and packed, null text."""
import pytest
import torch

from flexivid.config import ModelConfig
from flexivid.diffusion.guidance import PromptText, guided_velocity, plan_step, step_layouts
from flexivid.models.dit import FlexiVideoDiT, TextContext
from flexivid.models.modes import flexify, lora_specs

from conftest import randomize_zero_init

MODES = {"coarse_time": (2, 2, 2), "coarse_space": (1, 4, 4)}


def _model(merged: bool) -> FlexiVideoDiT:
    torch.manual_seed(0)
    cfg = ModelConfig(preset="tiny", in_channels=3, text_dim=32, patch_size=(1, 2, 2))
    model = flexify(randomize_zero_init(FlexiVideoDiT(cfg)), lora_specs(MODES, 4)).eval()
    with torch.no_grad():  # LoRA B starts at zero: make the adapters matter
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(std=0.05)
    if merged:
        model.mode_adapters.merge()
    return model


def _inputs():
    g = torch.Generator().manual_seed(1)
    x, t = torch.randn(2, 3, 4, 8, 8, generator=g), torch.rand(2, generator=g)
    text = torch.randn(2, 5, 32, generator=g)
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[0, 3:] = False  # padding matters
    return x, t, text, mask


@pytest.mark.parametrize("merged", [False, True], ids=["peft", "merged"])
def test_context_equals_tokens_bitwise(merged):
    model = _model(merged)
    x, t, text, mask = _inputs()
    with torch.inference_mode():
        ctx, null = model.encode_text(text, mask), model.encode_text(None, None, batch=2)
        for mode in model.modes:
            assert torch.equal(model(x, t, ctx, None, mode), model(x, t, text, mask, mode)), mode
            assert torch.equal(model(x, t, null, None, mode), model(x, t, None, None, mode)), mode
        # packed rows (same weights): one packed call from contexts equals the one from tokens
        packable = ["full", "full"] if merged else ["coarse_space", "coarse_space"]
        by_ctx = model.forward_packed([(x, t, ctx, None, packable[0]),
                                       (x[:1], t[:1], model.encode_text(None, None, batch=1), None, packable[1])])
        by_tok = model.forward_packed([(x, t, text, mask, packable[0]), (x[:1], t[:1], None, None, packable[1])])
        for a, b in zip(by_ctx, by_tok):
            assert torch.equal(a, b)
        # the comparison can fail: another prompt gives other outputs
        assert not torch.equal(model(x, t, model.encode_text(text.flip(0), mask.flip(0)), None, "full"),
                               model(x, t, ctx, None, "full"))


def test_one_context_serves_every_block_stack():
    """Cross-attention is not adapted per mode, so the K/V of the base blocks are those of every merged stack."""
    model = _model(merged=True)
    _, _, text, mask = _inputs()
    with torch.inference_mode():
        ctx = model.encode_text(text, mask)
        for mode, stack in model.mode_adapters.merged.items():
            for blk, (k, v) in zip(stack, ctx.kv, strict=True):
                k2, v2 = blk.cross_attn.encode(ctx.text)
                assert torch.equal(k, k2) and torch.equal(v, v2), mode


def test_bad_context_input_is_one_line():
    model = _model(merged=False)
    x, t, text, mask = _inputs()
    ctx = model.encode_text(text, mask)
    with pytest.raises(ValueError, match="TextContext carries its own mask"):
        model(x, t, ctx, mask)
    with pytest.raises(ValueError, match="TextContext has 2 rows but the latents have 1"):
        model(x[:1], t[:1], ctx)
    with pytest.raises(ValueError, match="needs batch="):
        model.encode_text(None)
    with pytest.raises(ValueError, match=r"\(B=2, L, Dt=32\)"):
        model.encode_text(text[..., :7], None)
    assert isinstance(ctx, TextContext) and len(ctx.kv) == model.config.depth


@pytest.mark.parametrize("merged", [False, True], ids=["peft", "merged"])
def test_prompt_text_encodes_once_and_equals_tokens(merged):
    """guided_velocity from one PromptText (text work once per call) = from the tokens (text work every step)."""
    model = _model(merged)
    x, t, text, mask = _inputs()
    calls = []
    encode = model.encode_text
    model.encode_text = lambda *a, **k: calls.append(1) or encode(*a, **k)
    plans = [plan_step("full", "full", model.modes), plan_step("coarse_time", "coarse_time", model.modes),
             plan_step("full", "coarse_space", model.modes),  # weak-to-strong: packed (peft) or two calls (merged)
             plan_step("full", "coarse_space", model.modes, weak_to_strong=False),  # CFG with a null weak guide
             plan_step("full", "full", model.modes, guided=False)]
    with torch.inference_mode():
        prompt = PromptText(model, text, mask)
        for plan in plans:
            for _ in range(2):  # a second step with the same plan encodes nothing new
                got = guided_velocity(model, x, t, prompt, None, plan, 4.0)
            assert torch.equal(got, guided_velocity(model, x, t, text, mask, plan, 4.0)), plan
    layouts = {layout for plan in plans for layout in step_layouts(plan)}
    assert set(prompt.cache) == layouts == {"pair", "cond", "null"}
    per_step = sum(len(step_layouts(p)) for p in plans)  # the tokens path encodes per call of each comparison
    assert len(calls) == len(layouts) + per_step
    with pytest.raises(ValueError, match="unknown text layout"):
        prompt.args("both")

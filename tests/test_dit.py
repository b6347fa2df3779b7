"""FlexiVideoDiT: modes, token counts, shared coordinates, bad input, packing."""
import copy

import pytest
import torch

from flexivid.config import ModelConfig
from flexivid.models.dit import FlexiVideoDiT
from flexivid.models.modes import ModeSpec
from flexivid.models.positions import axis_dims, token_coordinates

from conftest import randomize_zero_init

MODES = {"coarse_time": (2, 2, 2), "coarse_space": (1, 4, 4)}


def _inputs(b=2, t=4, hw=8, text_dim=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 3, t, hw, hw, generator=g)
    text = torch.randn(b, 5, text_dim, generator=g)
    mask = torch.ones(b, 5, dtype=torch.bool)
    mask[0, 3:] = False
    return x, torch.rand(b, generator=g), text, mask


def test_full_mode_bit_identical_to_plain_model(tiny_cfg):
    torch.manual_seed(0)
    plain = randomize_zero_init(FlexiVideoDiT(tiny_cfg))
    flex = copy.deepcopy(plain)
    for name, patch in MODES.items():
        flex.add_mode(name, ModeSpec(patch))
    x, t, text, mask = _inputs()
    assert torch.equal(plain(x, t, text, mask), flex(x, t, text, mask, "full"))
    assert set(flex.modes) == {"full", *MODES}


def test_token_counts_per_mode():
    m = FlexiVideoDiT(ModelConfig(preset="tiny", in_channels=4, patch_size=(1, 2, 2), modes=MODES))
    shape = (4, 16, 32, 32)
    assert {k: m.num_tokens(k, shape) for k in m.modes} == {"full": 4096, "coarse_time": 2048, "coarse_space": 1024}


def test_coarse_tokens_sit_at_base_grid_centres():
    base = token_coordinates((2, 4, 4), (1, 1, 1))
    coarse = token_coordinates((1, 2, 2), (2, 2, 2))
    # a coarse token's coordinate is the mean of the base tokens it covers: one coordinate system for all modes
    groups = base.reshape(1, 2, 2, 2, 2, 2, 3).permute(0, 2, 4, 1, 3, 5, 6).reshape(4, 8, 3).mean(1)
    assert torch.allclose(coarse, groups)
    assert sum(axis_dims(64)) == 64 and all(d % 2 == 0 for d in axis_dims(48))


def test_outputs_have_input_shape_and_modes_differ(tiny_cfg):
    m = randomize_zero_init(FlexiVideoDiT(ModelConfig(**{**tiny_cfg.__dict__, "modes": MODES})))
    x, t, text, mask = _inputs()
    outs = {k: m(x, t, text, mask, k) for k in m.modes}
    assert all(o.shape == x.shape for o in outs.values())
    assert not torch.allclose(outs["full"], outs["coarse_space"])


def test_unconditional_branch_equals_dropped_text(tiny_cfg):
    m = randomize_zero_init(FlexiVideoDiT(tiny_cfg))
    x, t, text, mask = _inputs()
    dropped = m(x, t, *m.drop_text(text, mask, torch.tensor([True, True])))
    assert torch.allclose(dropped, m(x, t, None, None), atol=1e-5)


def test_packed_forward_equals_separate(tiny_cfg):
    m = randomize_zero_init(FlexiVideoDiT(ModelConfig(**{**tiny_cfg.__dict__, "modes": MODES})))
    x, t, text, mask = _inputs()
    reqs = [(x, t, text, mask, "full"), (x[:1], t[:1], None, None, "coarse_space"), (x, t, text, mask, "coarse_time")]
    for a, b in zip(m.forward_packed(reqs), [m(*r) for r in reqs]):
        assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("bad,match", [
    (dict(x=torch.randn(1, 3, 3, 8, 8), mode="coarse_time"), r"\(3, 8, 8\).*coarse_time.*\(2, 2, 2\)"),
    (dict(x=torch.randn(1, 3, 4, 6, 6), mode="coarse_space"), r"\(4, 6, 6\).*coarse_space.*\(1, 4, 4\)"),
    (dict(mode="coarse_hw"), r"unknown mode 'coarse_hw'.*full, coarse_time, coarse_space"),
    (dict(text_mask=torch.ones(1, 4, dtype=torch.bool)), r"text_mask shape \(1, 4\).*\(1, 5\)"),
    (dict(text=torch.randn(1, 5, 7)), r"\(B=1, L, Dt=32\).*\(1, 5, 7\)"),
    (dict(x=torch.randn(1, 4, 4, 8, 8)), r"\(B, 3, T, H, W\)"),
])
def test_bad_input_raises_value_error(tiny_cfg, bad, match):
    m = FlexiVideoDiT(ModelConfig(**{**tiny_cfg.__dict__, "modes": MODES}))
    args = dict(x=torch.randn(1, 3, 4, 8, 8), t=torch.rand(1), text=torch.randn(1, 5, 32), text_mask=None,
                mode="full")
    args.update(bad)
    with pytest.raises(ValueError, match=match):
        m(**args)


def test_unknown_preset_and_duplicate_mode(tiny_cfg):
    with pytest.raises(ValueError, match="unknown model preset 'huge'.*tiny"):
        FlexiVideoDiT(ModelConfig(preset="huge"))
    m = FlexiVideoDiT(tiny_cfg)
    m.add_mode("coarse_time", ModeSpec((2, 2, 2)))
    with pytest.raises(ValueError, match="already exists"):
        m.add_mode("coarse_time", ModeSpec((2, 2, 2)))


@pytest.mark.slow  # torch.compile traces
@pytest.mark.parametrize("mode", [None, "reduce-overhead"])
def test_compiled_stack_matches_eager(tiny_cfg, mode):
    """compile_blocks: regional (per block) or, for CUDA graphs, the whole stack as one function (traced with the
    eager backend here; CUDA graphs need a GPU). Both give the eager outputs, dense and packed, in every mode."""
    from flexivid.models.modes import flexify, lora_specs

    torch.manual_seed(0)
    model = flexify(randomize_zero_init(FlexiVideoDiT(tiny_cfg)), lora_specs(dict(MODES), 4)).eval()
    with torch.no_grad():  # LoRA B starts at zero: make the adapters matter
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.05)
    x, t, text, mask = _inputs()
    reqs = [(x, t, text, mask, "full"), (x[:1], t[:1], None, None, "full")]
    with torch.no_grad():
        ref = {m: model(x, t, text, mask, m) for m in model.modes}
        ref_packed = model.forward_packed(reqs)
        torch._dynamo.reset()
        model.compile_blocks(mode=mode, backend="eager")
        assert (model._trunk is not None) == (mode == "reduce-overhead")
        for m in model.modes:
            assert torch.allclose(model(x, t, text, mask, m), ref[m], atol=1e-5), m
        for got, want in zip(model.forward_packed(reqs), ref_packed):
            assert torch.allclose(got, want, atol=1e-5)
    torch._dynamo.reset()

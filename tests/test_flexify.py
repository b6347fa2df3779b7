"""flexify: weak modes + one LoRA per mode; full mode untouched; switching; merge; export."""
import copy

import pytest
import torch
from peft.tuners.lora import LoraLayer

from flexivid.models.dit import FlexiVideoDiT
from flexivid.models.modes import flexify, lora_specs
from flexivid.models.serialization import load_model, save_model

from conftest import randomize_zero_init

MODES = {"coarse_time": (2, 2, 2), "coarse_space": (1, 4, 4)}


def lora_layers(model):
    return [m for m in model.modules() if isinstance(m, LoraLayer)]


@pytest.fixture
def pair(tiny_cfg):
    torch.manual_seed(0)
    base = randomize_zero_init(FlexiVideoDiT(tiny_cfg))
    flex = flexify(copy.deepcopy(base), lora_specs(MODES, 4))
    for mode in MODES:  # a trained adapter is non-zero; make sure switching is observable
        for n, p in flex.mode_adapters.parameters_of(mode).items():
            if "lora_B" in n:
                torch.nn.init.normal_(p, std=0.05)
    x = torch.randn(2, 3, 4, 8, 8)
    return base, flex, (x, torch.rand(2), torch.randn(2, 5, 32), None)


def test_full_mode_bit_identical_after_flexify(pair):
    """A trainable base and its flexified (frozen) copy give bit-identical full-mode outputs, in the conditional and
    in the unconditional (null-text) branch."""
    base, flex, (x, t, text, mask) = pair
    assert all(p.requires_grad for p in base.parameters())
    assert not any(p.requires_grad for n, p in flex.named_parameters() if n in dict(base.named_parameters()))
    for branch in ((text, mask), (None, None)):
        ref = base(x, t, *branch)
        flex(x, t, *branch, "coarse_time")  # activating another mode first must not leak into full
        assert torch.equal(flex(x, t, *branch, "full"), ref)


def test_trainable_parameters_are_exactly_adapters_and_new_layers(pair):
    _, flex, _ = pair
    trainable = {n for n, p in flex.named_parameters() if p.requires_grad}
    expected = set()
    for mode in MODES:
        expected |= set(flex.mode_adapters.parameters_of(mode))
    assert trainable == expected
    assert all(("lora_" in n) or n.startswith(("patch_embed.proj.", "deembed.linear.", "mode_embed.")) for n in trainable)
    assert not any("cross_attn" in n for n in trainable) and not any(".full." in n for n in trainable)
    n_lora = sum(1 for n in trainable if "lora_A" in n)
    assert n_lora == 2 * 4 * flex.config.depth  # 2 modes x (qkv, proj, fc1, fc2) per block
    flex(*pair[2], "coarse_space")
    assert {n for n, p in flex.named_parameters() if p.requires_grad} == expected  # switching keeps the set


def test_mode_selects_exactly_its_adapter(pair):
    _, flex, inp = pair
    flex.mode_adapters.activate("coarse_space")
    assert all(layer.active_adapters == ["coarse_space"] and not layer.disable_adapters for layer in lora_layers(flex))
    flex.mode_adapters.activate("full")
    assert all(layer.disable_adapters for layer in lora_layers(flex))
    a = flex(*inp, "coarse_time")
    for n, p in flex.mode_adapters.parameters_of("coarse_space").items():  # the other mode's adapter has no effect
        if "lora" in n:
            p.data.add_(1.0)
    assert torch.equal(flex(*inp, "coarse_time"), a)


def test_merge_adapters_routes_each_mode_to_its_merged_stack(pair):
    _, flex, inp = pair
    ref = {m: flex(*inp, m) for m in ["full", *MODES]}
    keys = set(flex.state_dict())
    flex.mode_adapters.merge()
    assert set(flex.mode_adapters.merged) == set(MODES) and set(flex.state_dict()) == keys  # exports are unchanged
    assert not any("lora" in n for n, _ in flex.mode_adapters.merged["coarse_time"].named_parameters())
    assert torch.equal(flex(*inp, "full"), ref["full"])  # full keeps the base blocks, bit-identical
    for mode in MODES:
        out = flex(*inp, mode)
        assert torch.allclose(out, ref[mode], atol=1e-5)
        assert not torch.equal(out, flex(*inp, "full"))
    # the merged stacks are what runs: perturbing the peft adapter no longer changes the weak mode
    for n, p in flex.mode_adapters.parameters_of("coarse_space").items():
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=1.0)
    assert torch.allclose(flex(*inp, "coarse_space"), ref["coarse_space"], atol=1e-5)
    flex.compile_blocks(backend="eager")  # regional compile covers the merged stacks too
    assert all(blk._compiled_call_impl is not None for blk in flex.mode_adapters.merged["coarse_time"])
    assert torch.allclose(flex(*inp, "coarse_time"), ref["coarse_time"], atol=1e-5)


def test_export_reload_and_unknown_mode(pair, tmp_path):
    _, flex, inp = pair
    save_model(flex, tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m" / "adapters").iterdir()) == ["coarse_space.safetensors",
                                                                             "coarse_time.safetensors"]
    re = load_model(tmp_path / "m")
    for mode in ["full", *MODES]:
        assert torch.equal(re(*inp, mode), flex(*inp, mode))
    only = load_model(tmp_path / "m", modes=["coarse_time"])
    assert set(only.modes) == {"full", "coarse_time"}
    with pytest.raises(ValueError, match="coarse_hw.*it has: full, coarse_time, coarse_space"):
        load_model(tmp_path / "m", modes=["coarse_hw"])
    with pytest.raises(FileNotFoundError, match="no exported flexivid model"):
        load_model(tmp_path / "nothing")


def test_weak_mode_starts_as_upsampled_base_on_pooled_input(tiny_cfg):
    """At init (adapters zero) a weak mode's tokenizer + de-tokenizer reproduce the base ones on the pooled input.

    Bound: exact up to float64 rounding (1e-10) for the token path. The full network differs by design because
    attention sees the coarse tokens at their base-grid coordinates (RoPE) rather than at a re-indexed grid.
    """
    m = FlexiVideoDiT(tiny_cfg).double()
    randomize_zero_init(m)
    flexify(m, lora_specs({"coarse_space": (1, 4, 4)}, 4))
    x = torch.randn(1, 3, 2, 8, 8, dtype=torch.float64)
    tok, grid = m.patch_embed(x, "coarse_space")
    ref, _ = m.patch_embed(torch.nn.functional.avg_pool3d(x, (1, 2, 2)), "full")
    assert torch.allclose(tok, ref, atol=1e-10)
    out = m.deembed(tok, "coarse_space", grid, (1, 4, 4))
    base = m.deembed(ref, "full", grid, (1, 2, 2))  # (1, 3, 2, 4, 4) on the pooled grid, one 2x2 patch per token
    up = torch.nn.functional.interpolate(
        base.unfold(3, 2, 2).unfold(4, 2, 2).permute(0, 2, 3, 4, 1, 5, 6).reshape(-1, 3, 2, 2), size=(4, 4),
        mode="bilinear", align_corners=False).reshape(1, 2, 2, 2, 3, 4, 4).permute(0, 4, 1, 2, 5, 3, 6)
    assert torch.allclose(out, up.reshape(1, 3, 2, 8, 8), atol=1e-10)

"""FlexiDiT around diffusers' WanTransformer3DModel (tiny random Wan: 2 layers, head dim 12)."""
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("diffusers")
from diffusers import WanTransformer3DModel  # noqa: E402

from flexivid.integrations.layout import temporal_layout  # noqa: E402
from flexivid.integrations.wan import FlexiWanTransformer, wan_rope  # noqa: E402
from flexivid.models.modes import lora_specs  # noqa: E402

TINY = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=4, out_channels=4,
            text_dim=16, freq_dim=32, ffn_dim=32, num_layers=2, rope_max_seq_len=64)
MODES = {"coarse_time": (2, 2, 2), "coarse_space": (1, 4, 4)}


def tiny_wan(seed=0):
    torch.manual_seed(seed)
    return WanTransformer3DModel(**TINY).eval()


def inputs(frames=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(2, 4, frames, 8, 8, generator=g), torch.tensor([900.0, 250.0]),
            torch.randn(2, 7, 16, generator=g))


def randomize_lora(flexi, mode, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in flexi.named_parameters():
            if f"lora_B.{mode}." in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)


@torch.no_grad()
def test_full_is_bit_identical_to_the_original_with_trained_adapters():
    x, t, text = inputs()
    ref = tiny_wan()(x, t, text, return_dict=False)[0]
    flexi = FlexiWanTransformer(tiny_wan(), lora_specs(MODES, 4))
    for i, m in enumerate(MODES):
        randomize_lora(flexi, m, i)
    flexi(x, t, text, mode="coarse_space")  # leave a weak adapter active before the full call
    assert torch.equal(flexi(x, t, text, return_dict=False)[0], ref)
    assert torch.equal(flexi(x, t, text, mode="full").sample, ref)


def test_rope_tables_equal_wans_at_the_base_patch_and_sit_at_base_grid_centres():
    wan = tiny_wan()
    x = torch.zeros(1, 4, 5, 8, 12)
    cos, sin = wan.rope(x)
    c2, s2 = wan_rope(((0, 5, "body"),), (1, 2, 2), (1, 2, 2), (8, 12), 12, 10000.0, "cpu")
    assert torch.equal(cos, c2) and torch.equal(sin, s2)
    # coarse_time on 5 latent frames: frame 0 alone at t=0, then pairs (1,2), (3,4) centred at t=1.5, 3.5
    layout = temporal_layout((5, 8, 12), (2, 2, 2), "coarse_time")
    assert layout == ((0, 1, "first"), (1, 5, "body"))
    ct, _ = wan_rope(layout, (2, 2, 2), (1, 2, 2), (8, 12), 12, 10000.0, "cpu")
    n = 24  # tokens per frame group
    t_freq = 1.0 / 10000.0 ** (torch.arange(0, 4, 2, dtype=torch.float64) / 4)  # Wan: t axis gets 12 - 2*4 dims
    for token, t_pos in ((0, 0.0), (n, 1.5), (2 * n, 3.5)):
        want = torch.cos(t_pos * t_freq).repeat_interleave(2).float()
        assert torch.equal(ct[0, token, 0, :4], want)
    # coarse_space: 2x2 base tokens per token, centred at 0.5, 2.5, ...
    cs, _ = wan_rope(((0, 5, "body"),), (1, 4, 4), (1, 2, 2), (8, 12), 12, 10000.0, "cpu")
    hw_freq = 1.0 / 10000.0 ** (torch.arange(0, 4, 2, dtype=torch.float64) / 4)
    assert torch.equal(cs[0, 1, 0, 8:], torch.cos(2.5 * hw_freq).repeat_interleave(2).float())  # w index 1
    assert torch.equal(cs[0, 3, 0, 4:8], torch.cos(2.5 * hw_freq).repeat_interleave(2).float())  # h index 1


def test_odd_and_bad_frame_counts():
    assert temporal_layout((21, 60, 104), (2, 2, 2), "ct") == ((0, 1, "first"), (1, 21, "body"))
    assert temporal_layout((20, 60, 104), (2, 2, 2), "ct") == ((0, 20, "body"),)
    assert temporal_layout((21, 60, 104), (1, 4, 4), "cs") == ((0, 21, "body"),)
    with pytest.raises(ValueError, match="T=22 do not fit mode 'ct4' temporal patch 4"):
        temporal_layout((22, 60, 104), (4, 2, 2), "ct4")
    with pytest.raises(ValueError, match="latent H=6 is not divisible by mode 'cs' patch 4"):
        temporal_layout((21, 6, 8), (1, 4, 4), "cs")


@torch.no_grad()
def test_embed_and_deembed_are_flexivids_projections():
    wan = tiny_wan()
    flexi = FlexiWanTransformer(wan, {"cs": (1, 4, 4), "ct": (2, 2, 2)})
    x = torch.randn(1, 4, 4, 8, 8)
    base = lambda v: wan.patch_embedding(v).flatten(2).transpose(1, 2)  # noqa: E731
    # "paper" projection: a weak token equals the base token of its average-pooled patch
    torch.testing.assert_close(flexi._embed(x, "cs", "body"), base(F.avg_pool3d(x, (1, 2, 2))), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(flexi._embed(x, "ct", "body"), base(F.avg_pool3d(x, (2, 1, 1))), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(flexi._embed(x[:, :, :1], "ct", "first"), base(x[:, :, :1]))
    # de-embed: one token's output patch is the trilinear upsample of Wan's base output patch
    tok = torch.randn(1, 1, wan.proj_out.in_features)
    base_patch = wan.proj_out(tok).reshape(1, 2, 2, 4).permute(3, 0, 1, 2)[None]  # (1, C, 1, 2, 2)
    for mode, patch in (("cs", (1, 4, 4)), ("ct", (2, 2, 2))):
        want = F.interpolate(base_patch.double(), size=patch, mode="trilinear", align_corners=False).float()
        torch.testing.assert_close(flexi._deembed(tok, mode, "body", patch), want, rtol=1e-5, atol=1e-5)


def test_lora_isolation_per_mode():
    x, t, text = inputs()
    flexi = FlexiWanTransformer(tiny_wan(), lora_specs(MODES, 4))
    with torch.no_grad():
        before = {m: flexi(x, t, text, mode=m).sample for m in ("full", *MODES)}
        randomize_lora(flexi, "coarse_time", 3)
        after = {m: flexi(x, t, text, mode=m).sample for m in ("full", *MODES)}
    assert not torch.equal(before["coarse_time"], after["coarse_time"])
    assert torch.equal(before["coarse_space"], after["coarse_space"])
    assert torch.equal(before["full"], after["full"])
    # a weak mode's loss trains exactly that mode's parameters
    randomize_lora(flexi, "coarse_space", 4)  # lora_B starts at zero, which would stop lora_A's gradient
    flexi(x, t, text, mode="coarse_space").sample.square().mean().backward()
    with_grad = {n for n, p in flexi.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    owned = set(flexi.mode_parameters("coarse_space"))
    assert with_grad == owned
    assert all(not p.requires_grad for n, p in flexi.named_parameters() if n.startswith("transformer.")
               and "lora_" not in n)


@torch.no_grad()
def test_weak_modes_shapes_and_flops():
    x, t, text = inputs(frames=5)
    flexi = FlexiWanTransformer(tiny_wan(), {**MODES, "big": (2, 4, 4)})
    for mode, tokens in (("full", 80), ("coarse_time", 16 + 32), ("coarse_space", 20), ("big", 4 + 8)):
        assert flexi(x, t, text, mode=mode).sample.shape == x.shape
        assert flexi.num_tokens(mode, x.shape[2:]) == tokens
    full = flexi.forward_flops("full", x.shape[1:], 7)
    assert flexi.forward_flops("coarse_space", x.shape[1:], 7) < full / 2
    with pytest.raises(ValueError, match="unknown mode 'nope'"):
        flexi(x, t, text, mode="nope")


@torch.no_grad()
def test_merged_stacks_match_the_peft_path_and_drop_the_adapter_flops():
    x, t, text = inputs()
    flexi = FlexiWanTransformer(tiny_wan(), lora_specs(MODES, 4))
    for i, m in enumerate(MODES):
        randomize_lora(flexi, m, i)
    peft = {m: flexi(x, t, text, mode=m).sample for m in ("full", *MODES)}
    unmerged = flexi.forward_flops("coarse_time", x.shape[1:], 7)
    flexi.mode_adapters.merge()
    for m in MODES:
        torch.testing.assert_close(flexi(x, t, text, mode=m).sample, peft[m], rtol=1e-5, atol=1e-5)
    assert torch.equal(flexi(x, t, text).sample, peft["full"])
    assert flexi.forward_flops("coarse_time", x.shape[1:], 7) < unmerged


def test_merge_keeps_each_tensors_dtype_in_a_mixed_precision_wan():
    wan = tiny_wan()
    keep = wan._keep_in_fp32_modules  # as from_pretrained(torch_dtype=bf16) loads it: norms, tables, time MLP fp32
    for name, p in wan.named_parameters():
        if not any(k in name.split(".") for k in keep):
            p.data = p.data.to(torch.bfloat16)
    flexi = FlexiWanTransformer(wan, lora_specs(MODES, 4))
    flexi.mode_adapters.merge()
    stack = flexi.mode_adapters.blocks_for("coarse_time")
    assert stack[0].scale_shift_table.dtype == torch.float32 and stack[0].attn1.to_q.weight.dtype == torch.bfloat16
    x, t, text = inputs()
    with torch.no_grad():
        assert flexi(x.bfloat16(), t, text.bfloat16(), mode="coarse_time").sample.dtype == torch.bfloat16


def test_export_round_trip_onto_a_mixed_precision_wan(tmp_path):
    from flexivid.integrations.wan_export import load_flexified_wan, save_flexified_wan

    flexi = FlexiWanTransformer(tiny_wan(), lora_specs(MODES, 4))
    for i, m in enumerate(MODES):
        randomize_lora(flexi, m, i)
    save_flexified_wan(flexi, tmp_path / "export")
    wan = tiny_wan()
    keep = wan._keep_in_fp32_modules  # as from_pretrained(torch_dtype=bf16) loads it
    for name, p in wan.named_parameters():
        if not any(k in name.split(".") for k in keep):
            p.data = p.data.to(torch.bfloat16)
    x, t, text = inputs()
    x, text = x.bfloat16(), text.bfloat16()
    with torch.no_grad():
        ref = wan(x, t, text).sample
        loaded = load_flexified_wan(wan, tmp_path / "export")
        assert torch.equal(loaded(x, t, text).sample, ref)
    assert wan.scale_shift_table.dtype == torch.float32 and wan.proj_out.weight.dtype == torch.bfloat16
    for m in MODES:
        want, got = flexi.mode_parameters(m), loaded.mode_parameters(m)
        assert set(want) == set(got) and all(torch.equal(want[n].to(got[n].dtype), got[n]) for n in want)
        assert got[f"mode_embed.{m}"].dtype == torch.bfloat16
    with pytest.raises(ValueError, match="mode\\(s\\) nope not in"):
        load_flexified_wan(tiny_wan(), tmp_path / "export", modes=["nope"])

"""The same mode parts on a second diffusers architecture: LTX-Video (tiny random LTXVideoTransformer3DModel)."""
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("diffusers")
from diffusers import LTXVideoTransformer3DModel  # noqa: E402

from flexivid.integrations.layout import temporal_layout  # noqa: E402
from flexivid.integrations.ltx import FlexiLTXTransformer, pack  # noqa: E402
from flexivid.models.modes import lora_specs  # noqa: E402

TINY = dict(in_channels=8, out_channels=8, num_attention_heads=2, attention_head_dim=12, cross_attention_dim=24,
            num_layers=2, caption_channels=16)
MODES = {"coarse_time": (2, 1, 1), "coarse_space": (1, 2, 2)}
THW = (5, 4, 6)  # latent frames (odd, as LTX's causal VAE gives), rows, columns
SCALE = (8 / 25, 32, 32)  # LTXPipeline's rope_interpolation_scale: (VAE temporal factor / fps, spatial, spatial)


def tiny_ltx():
    torch.manual_seed(0)
    return LTXVideoTransformer3DModel(**TINY).eval()


def call(model, mode=None, seed=1):
    g = torch.Generator().manual_seed(seed)
    video = torch.randn(2, 8, *THW, generator=g)
    kw = dict(hidden_states=pack(video, (1, 1, 1)), encoder_hidden_states=torch.randn(2, 7, 16, generator=g),
              timestep=torch.tensor([900.0, 300.0]), encoder_attention_mask=torch.ones(2, 7),
              num_frames=THW[0], height=THW[1], width=THW[2], rope_interpolation_scale=SCALE, return_dict=False)
    with torch.no_grad():
        return model(**kw, **({} if mode is None else {"mode": mode}))[0]


def randomize_lora(flexi, mode, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in flexi.named_parameters():
            if f"lora_B.{mode}." in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)


def test_full_is_bit_identical_and_lora_is_isolated_per_mode():
    ref = call(tiny_ltx())
    flexi = FlexiLTXTransformer(tiny_ltx(), lora_specs(MODES, 4))
    before = {m: call(flexi, m) for m in MODES}
    randomize_lora(flexi, "coarse_time", 0)
    assert torch.equal(call(flexi, "full"), ref)
    assert not torch.equal(call(flexi, "coarse_time"), before["coarse_time"])
    assert torch.equal(call(flexi, "coarse_space"), before["coarse_space"])
    for m in MODES:
        out = call(flexi, m)
        assert out.shape == ref.shape and torch.isfinite(out).all()
    trainable = {n for n, p in flexi.named_parameters() if p.requires_grad}
    assert trainable == {n for m in MODES for n in flexi.mode_adapters.parameters_of(m)}


def test_rope_coordinates_match_ltx_at_the_base_patch_and_embed_is_the_projection():
    ltx = tiny_ltx()
    flexi = FlexiLTXTransformer(ltx, MODES)
    x = torch.zeros(1, 5 * 4 * 6, 24)
    own = ltx.rope(x, *THW, rope_interpolation_scale=SCALE)
    ours = ltx.rope(x, video_coords=flexi._video_coords(((0, 5, "body"),), (1, 1, 1), THW, SCALE, x))
    for a, b in zip(own, ours):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert temporal_layout(THW, MODES["coarse_time"], "coarse_time") == ((0, 1, "first"), (1, 5, "body"))
    video = torch.randn(1, 8, 1, 4, 6)
    with torch.no_grad():  # "paper" projection: a weak token equals LTX's token of its average-pooled patch
        weak = flexi.embed["coarse_space"]["body"](pack(video, (1, 2, 2)))
        pooled = ltx.proj_in(pack(F.avg_pool3d(video, (1, 2, 2)), (1, 1, 1)))
    torch.testing.assert_close(weak, pooled, rtol=1e-5, atol=1e-5)

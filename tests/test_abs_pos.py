"""model.abs_pos: absolute positions make a token's frame visible; "none" keeps the old model bit for bit."""
import pytest
import torch
from einops import rearrange

from flexivid.config import ConfigError, ModelConfig, config_from_dict
from flexivid.models.dit import FlexiVideoDiT
from flexivid.models.positions import abs_pos_table, sincos_embedding

TINY = dict(hidden_size=32, depth=1, num_heads=2, patch_size=(1, 2, 2), text_dim=16)


def token_patches(v, patch=(1, 2, 2)):
    pt, ph, pw = patch
    return rearrange(v, "b c (t pt) (h ph) (w pw) -> b (t h w) (c pt ph pw)", pt=pt, ph=ph, pw=pw)


def test_none_keeps_the_parameters_and_zero_init_keeps_the_function():
    torch.manual_seed(0)
    old = FlexiVideoDiT(ModelConfig(**TINY))
    new = FlexiVideoDiT(ModelConfig(**TINY, abs_pos="thw"))
    assert set(new.state_dict()) - set(old.state_dict()) == {"pos_embed.weight", "pos_embed.bias"}
    missing, unexpected = new.load_state_dict(old.state_dict(), strict=False)
    assert set(missing) == {"pos_embed.weight", "pos_embed.bias"} and not unexpected
    x, t, text = torch.randn(2, 3, 4, 8, 8), torch.full((2,), 0.3), torch.randn(2, 5, 16)
    with torch.no_grad():
        assert torch.equal(new(x, t, text), old(x, t, text))  # step 0 of continued pretraining is the old model


def test_uniform_input_tells_frames_apart_only_with_absolute_positions():
    """Identical tokens: with RoPE alone every token outputs the same patch (attention averages equal values);
    with absolute positions (trained, i.e. a non-zero projection) the frames differ."""
    torch.manual_seed(0)
    x, t, text = torch.full((1, 3, 4, 8, 8), -0.5), torch.tensor([0.9]), torch.randn(1, 5, 16)
    for abs_pos in ("none", "t", "thw"):
        model = FlexiVideoDiT(ModelConfig(**TINY, abs_pos=abs_pos))
        for p in model.parameters():  # trained-like weights: no zero-initialised layer stays zero
            torch.nn.init.normal_(p, std=0.2)
        with torch.no_grad():
            tokens = token_patches(model(x, t, text))[0]  # (N, C*pt*ph*pw)
        spread = (tokens - tokens.mean(0)).abs().max() / tokens.abs().mean()
        if abs_pos == "none":
            assert spread < 1e-5
        else:
            assert spread > 1e-2
            per_frame = tokens.view(4, 16, -1).mean(1)
            assert (per_frame[0] - per_frame[-1]).abs().max() > 1e-3  # first and last frame differ


def test_weak_modes_use_patch_centres():
    """A coarse-time token covering frames 2 and 3 sits at frame 2.5, like its RoPE coordinate."""
    full = abs_pos_table((4, 2, 2), (1, 1, 1), 32, "t", "cpu").view(4, 4, 32)
    coarse = abs_pos_table((2, 2, 2), (2, 1, 1), 32, "t", "cpu").view(2, 4, 32)
    torch.testing.assert_close(coarse[1, 0], sincos_embedding(torch.tensor([2.5]), 32)[0])
    torch.testing.assert_close(full[3, 0], sincos_embedding(torch.tensor([3.0]), 32)[0])
    thw = abs_pos_table((2, 3, 4), (1, 1, 1), 30, "thw", "cpu")
    assert thw.shape == (24, 30)
    model = FlexiVideoDiT(ModelConfig(**TINY, abs_pos="t", modes={"coarse_time": (2, 2, 2)}))
    assert model(torch.randn(1, 3, 4, 8, 8), torch.tensor([0.5]), mode="coarse_time").shape == (1, 3, 4, 8, 8)


def test_bad_value_is_a_config_error():
    with pytest.raises(ConfigError, match="model.abs_pos"):
        config_from_dict({"model": {"abs_pos": "xyz"}})

"""The mode table (ModeSpec, typed config) and ModeAdapters on a transformer flexivid did not write."""
import pytest
import torch
from torch import nn

from flexivid.config import ConfigError, config_from_dict, config_to_dict
from flexivid.models.modes import ModeAdapters, ModeSpec, lora_specs


def test_mode_spec_validation_and_yaml_forms():
    assert ModeSpec((2, 2, 2)).adapter == "none" and ModeSpec((2, 2, 2), "lora", 8).scale_alpha == 8.0
    with pytest.raises(ValueError, match="rank >= 1"):
        ModeSpec((2, 2, 2), "lora")
    with pytest.raises(ValueError, match="unknown mode adapter 'dora'"):
        ModeSpec((2, 2, 2), "dora")
    with pytest.raises(ValueError, match="lora modes only"):
        ModeSpec((2, 2, 2), "shared", rank=4)
    cfg = config_from_dict({"model": {"modes": {"a": [2, 2, 2], "b": {"patch": [1, 4, 4], "adapter": "lora",
                                                                       "rank": 4}}}})
    assert cfg.model.modes == {"a": ModeSpec((2, 2, 2)), "b": ModeSpec((1, 4, 4), "lora", 4)}
    assert config_to_dict(cfg.model)["modes"]["b"] == {"patch": [1, 4, 4], "adapter": "lora", "rank": 4, "alpha": None}
    with pytest.raises(ConfigError, match="model.modes.b.*unknown mode key"):
        config_from_dict({"model": {"modes": {"b": {"patch": [1, 4, 4], "size": 3}}}})
    assert lora_specs({"a": (2, 2, 2)}, 4, shared=True) == {"a": ModeSpec((2, 2, 2), "shared")}


class Block(nn.Module):  # diffusers-like names: attn1.to_q / to_out.0, ffn.net.0.proj / ffn.net.2
    def __init__(self, d):
        super().__init__()
        self.attn1 = nn.Module()
        self.attn1.to_q, self.attn1.to_out = nn.Linear(d, d), nn.ModuleList([nn.Linear(d, d)])
        self.ffn = nn.Module()
        self.ffn.net = nn.ModuleList([nn.Module(), nn.GELU(), nn.Linear(4 * d, d)])
        self.ffn.net[0].proj = nn.Linear(d, 4 * d)

    def forward(self, x):
        x = x + self.attn1.to_out[0](torch.tanh(self.attn1.to_q(x)))
        return x + self.ffn.net[2](self.ffn.net[1](self.ffn.net[0].proj(x)))


class Host(nn.Module):
    def __init__(self, d=8):
        super().__init__()
        self.stem, self.layers = nn.Linear(d, d), nn.ModuleList([Block(d), Block(d)])
        self.modes = {}
        self.ctl = ModeAdapters(self, self.modes, blocks="layers", targets=TARGETS)

    def forward(self, x, mode="full"):
        self.ctl.activate(mode)
        x = self.stem(x)
        for blk in self.ctl.blocks_for(mode):
            x = blk(x)
        return x


TARGETS = ("attn1.to_q", "attn1.to_out.0", "ffn.net.0.proj", "ffn.net.2")


def test_mode_adapters_wrap_a_foreign_block_stack():
    torch.manual_seed(0)
    host = Host()
    x = torch.randn(3, 8)
    ref = host(x)
    host.ctl.add("coarse", ModeSpec((1, 2, 2), "lora", 4))
    host.ctl.add("plain", ModeSpec((2, 1, 1)))
    assert set(host.modes) == {"coarse", "plain"}  # the host's own table holds the specs
    host.ctl.freeze_base()
    trainable = {n for n, p in host.named_parameters() if p.requires_grad}
    assert trainable == set(host.ctl.parameters_of("coarse")) and len(trainable) == 2 * 4 * 2  # A and B per target
    assert all(".layers." in f".{n}" and "lora_" in n for n in trainable)
    with torch.no_grad():
        for n, p in host.ctl.parameters_of("coarse").items():
            if "lora_B" in n:
                p.normal_(std=0.1)
    weak = host(x, "coarse")
    assert not torch.allclose(weak, ref, atol=1e-3)
    assert torch.equal(host(x, "full"), ref) and torch.equal(host(x, "plain"), ref)  # no adapter: base weights
    assert {n for n, p in host.named_parameters() if p.requires_grad} == trainable  # switching keeps the set
    assert host.ctl.same_weights("full", "plain") and not host.ctl.same_weights("full", "coarse")
    assert host.ctl.lora_rank("coarse") == 4 and host.ctl.lora_rank("plain") == 0
    keys = set(host.state_dict())
    host.ctl.merge()
    assert set(host.state_dict()) == keys and host.ctl.lora_rank("coarse") == 0
    assert torch.allclose(host(x, "coarse"), weak, atol=1e-5) and torch.equal(host(x, "full"), ref)
    with pytest.raises(ValueError, match="already exists"):
        host.ctl.add("plain", ModeSpec((2, 1, 1)))

"""Analytic FLOPs vs torch.utils.flop_counter on a tiny model (within 2%), and the CLI."""
import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from flexivid.config import ModelConfig
from flexivid.models.dit import FlexiVideoDiT
from flexivid.models.flops import forward_flops, main, mode_flops_table
from flexivid.models.modes import flexify, lora_specs


@pytest.mark.parametrize("lora", [0, 4])
def test_formula_matches_flop_counter(tiny_cfg, lora):
    m = FlexiVideoDiT(tiny_cfg)
    if lora:
        flexify(m, lora_specs({"coarse_time": (2, 2, 2), "coarse_space": (1, 4, 4)}, lora))
    x, t, text = torch.randn(2, 3, 4, 16, 16), torch.rand(2), torch.randn(2, 6, 32)
    for mode, patch in m.modes.items():
        # The math SDPA path decomposes into counted matmuls; the fused CPU kernel is not registered with the counter.
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:
            m(x, t, text, None, mode)
        expected = forward_flops(m.config, patch, (3, 4, 16, 16), text_len=6, batch=2,
                                 lora_rank=lora if mode != "full" else 0)
        assert abs(fc.get_total_flops() / expected - 1) < 0.02, mode


def test_weak_mode_ratios_and_cli(capsys):
    cfg = ModelConfig(preset="reference", in_channels=4)
    tab = mode_flops_table(cfg, {"full": (1, 2, 2), "coarse_time": (2, 2, 2), "coarse_space": (1, 4, 4)},
                           (4, 16, 32, 32), 32)
    assert tab["full"][0] == 4096 and tab["full"][2] == 1.0
    # fewer tokens cut linear FLOPs proportionally and attention FLOPs quadratically
    assert 1 / 4 < tab["coarse_time"][2] < 1 / 2 and 1 / 16 < tab["coarse_space"][2] < 1 / 4
    main(["--preset", "reference", "--latent", "4", "16", "32", "32"])
    out = capsys.readouterr().out
    assert "coarse_space" in out and "4096" in out and "1024" in out

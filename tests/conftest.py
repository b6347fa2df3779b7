"""Shared tiny fixtures: every test runs on the CPU in seconds."""
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(2)


@pytest.fixture
def tiny_cfg():
    from flexivid.config import ModelConfig

    return ModelConfig(preset="tiny", in_channels=3, text_dim=32, patch_size=(1, 2, 2))


def randomize_zero_init(model, std=0.02, seed=0):
    """Give zero-initialised weights (gates, de-embed, LoRA B) random values so tests see every path."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.numel() and p.abs().sum() == 0:
                p.copy_(torch.randn(p.shape, generator=g) * std)
    return model


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` are skipped on machines without CUDA."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)

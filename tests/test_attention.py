"""Attention backends: selection, and packed (block-diagonal) attention equal to separate attention."""
import pytest
import torch

from flexivid.models import attention as A


def test_packed_equals_separate_fp32():
    g = torch.Generator().manual_seed(0)
    q_lens, kv_lens = [7, 3, 7, 12], [5, 1, 5, 9]
    q = torch.randn(1, sum(q_lens), 4, 16, generator=g)
    k = torch.randn(1, sum(kv_lens), 4, 16, generator=g)
    v = torch.randn(1, sum(kv_lens), 4, 16, generator=g)
    packed = A.packed_attention(q, k, v, A.Segments(q_lens, kv_lens), "sdpa")
    sep = [A.attention(qi[None], ki[None], vi[None]) for qi, ki, vi in
           zip(q[0].split(q_lens), k[0].split(kv_lens), v[0].split(kv_lens))]
    assert torch.allclose(packed, torch.cat(sep, 1), atol=1e-5)


def test_padding_mask_equals_truncated_keys():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 6, 2, 8, generator=g) for _ in range(3))
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1] * 6]).bool()
    out = A.attention(q, k, v, kv_mask=mask)
    assert torch.allclose(out[0], A.attention(q[:1], k[:1, :3], v[:1, :3])[0], atol=1e-6)


def test_backend_resolution_on_cpu(monkeypatch):
    monkeypatch.delenv("FLEXIVID_ATTENTION", raising=False)
    assert A.resolve_backend("auto", "cpu") == "sdpa"
    assert A.resolve_backend("sdpa", "cpu") == "sdpa"
    with pytest.raises(RuntimeError, match="xformers.*cannot run"):
        A.resolve_backend("xformers", "cpu")
    monkeypatch.setenv("FLEXIVID_ATTENTION", "sdpa")
    assert A.resolve_backend("xformers", "cpu") == "sdpa"  # the env var overrides the config
    monkeypatch.setenv("FLEXIVID_ATTENTION", "flash")
    with pytest.raises(ValueError, match="allowed: auto, xformers, sdpa"):
        A.resolve_backend("auto", "cpu")


def test_xformers_probe_is_cached_and_explains(monkeypatch):
    A._probe_cache.clear()
    ok, reason = A.xformers_status()
    assert A.xformers_status() is A._probe_cache["xformers"]
    if not torch.cuda.is_available():
        assert not ok and ("CPU" in reason or "not installed" in reason)
    assert "attention backend: sdpa" in A.describe_backend("auto", "cpu")

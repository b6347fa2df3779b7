"""Attention backends: xformers memory-efficient attention where its kernels run, PyTorch SDPA otherwise.

Import success is not enough to use xformers: a wheel built for another torch/CUDA imports fine and then raises
``NotImplementedError`` for every input. So the backend is chosen by *running* a tiny call once and
caching the answer. Selection order: ``FLEXIVID_ATTENTION`` env var, then the model config, then ``auto``.

All functions take the xformers layout ``(B, N, H, Dh)``.

Packing: sequences of different lengths (e.g. a full-mode conditional branch and a weak-mode guidance branch) run
in one call as one row ``(1, sum(N_i), H, Dh)`` with a block-diagonal mask (xformers ``BlockDiagonalMask``). PyTorch
has no block-diagonal SDPA on every device, so the SDPA path runs equal-length segments batched together instead,
which computes the same function.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)
BACKENDS = ("auto", "xformers", "sdpa")
_probe_cache: dict[str, tuple[bool, str]] = {}


def xformers_status() -> tuple[bool, str]:
    """(runs, reason): whether xformers' memory-efficient attention actually runs on this machine's GPU."""
    if "xformers" in _probe_cache:
        return _probe_cache["xformers"]
    try:
        import xformers.ops as xops

        if not torch.cuda.is_available():
            result = (False, "xformers has no CPU kernels and no CUDA device is present")
        else:
            q = torch.randn(1, 8, 1, 64, device="cuda", dtype=torch.float16)
            xops.memory_efficient_attention(q, q, q)
            mask = xops.fmha.BlockDiagonalMask.from_seqlens([3, 5])
            q2 = torch.randn(1, 8, 1, 64, device="cuda", dtype=torch.float16)
            xops.memory_efficient_attention(q2, q2, q2, attn_bias=mask)
            result = (True, f"xformers {getattr(__import__('xformers'), '__version__', '?')} kernels run")
    except ImportError:
        result = (False, "xformers is not installed")
    except Exception as e:  # noqa: BLE001 - any failure of the probe call means "does not run here"
        result = (False, f"xformers imports but its kernels do not run: {type(e).__name__}: {str(e).splitlines()[0][:160]}")
    _probe_cache["xformers"] = result
    return result


def resolve_backend(requested: str = "auto", device: torch.device | str | None = None) -> str:
    """Name the backend that will run: ``xformers`` or ``sdpa``.

    ``requested`` is overridden by the env var ``FLEXIVID_ATTENTION``. An explicit ``xformers`` that cannot run
    raises a RuntimeError saying why; ``auto`` picks xformers on CUDA when its kernels run.
    """
    requested = os.environ.get("FLEXIVID_ATTENTION", requested) or "auto"
    if requested not in BACKENDS:
        raise ValueError(f"unknown attention backend {requested!r}; allowed: {', '.join(BACKENDS)}")
    on_cuda = device is not None and torch.device(device).type == "cuda"
    if requested == "sdpa":
        return "sdpa"
    ok, reason = xformers_status() if on_cuda or requested == "xformers" else (False, "not on a CUDA device")
    if requested == "xformers":
        if not ok or not on_cuda:
            raise RuntimeError(f"attention backend 'xformers' was requested but cannot run: {reason}; use 'sdpa' or 'auto'")
        return "xformers"
    return "xformers" if ok and on_cuda else "sdpa"


def describe_backend(requested: str = "auto", device=None) -> str:
    """One line for logs: which backend runs and why."""
    on_cuda = device is not None and torch.device(device).type == "cuda"
    why = xformers_status()[1] if on_cuda else "CPU: SDPA"
    requested = os.environ.get("FLEXIVID_ATTENTION", requested)
    return f"attention backend: {resolve_backend(requested, device)} (requested {requested}; {why})"


@dataclass
class Segments:
    """Block-diagonal layout of a packed row: query segment lengths and matching key/value segment lengths."""

    q_seqlens: list[int]
    kv_seqlens: list[int]


def sdpa_bias(kv_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Padding mask ``(B, L)`` bool -> additive SDPA mask ``(B, 1, 1, L)`` (0 keep, -inf drop), made as SDPA makes it
    from a bool mask, so passing it gives the same numbers without converting on every call."""
    bias = torch.zeros(kv_mask.shape, dtype=dtype, device=kv_mask.device).masked_fill_(~kv_mask, float("-inf"))
    return bias[:, None, None, :]


def attention(q, k, v, kv_mask: torch.Tensor | None = None, backend: str = "sdpa",
              kv_bias: torch.Tensor | None = None) -> torch.Tensor:
    """Dense attention. ``q (B, N, H, Dh)``, ``k, v (B, L, H, Dh)``, optional ``kv_mask (B, L)`` bool (True = keep).
    ``kv_bias``: ``sdpa_bias(kv_mask)`` computed once by the caller; SDPA uses it instead of converting the mask.

    Returns ``(B, N, H, Dh)``.
    """
    if backend == "xformers" and kv_mask is None:
        import xformers.ops as xops

        return xops.memory_efficient_attention(q, k, v)
    if backend == "xformers":
        # Padding mask -> drop padded keys and run block-diagonal (Open-Sora v1.2's cross-attention layout).
        b, n = q.shape[:2]
        lens = kv_mask.sum(1).tolist()
        keep = kv_mask.reshape(-1)
        kk, vv = k.reshape(-1, *k.shape[2:])[keep][None], v.reshape(-1, *v.shape[2:])[keep][None]
        out = packed_attention(q.reshape(1, b * n, *q.shape[2:]), kk, vv, Segments([n] * b, lens), "xformers")
        return out.reshape(b, n, *q.shape[2:])
    mask = kv_bias if kv_bias is not None else None if kv_mask is None else kv_mask[:, None, None, :]
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask)
    return out.transpose(1, 2)


def packed_attention(q, k, v, segments: Segments, backend: str = "sdpa") -> torch.Tensor:
    """Block-diagonal attention over a packed row.

    ``q (1, sum(q_seqlens), H, Dh)``, ``k, v (1, sum(kv_seqlens), H, Dh)``; query segment i attends only to key
    segment i. Returns ``(1, sum(q_seqlens), H, Dh)``; equals running each segment separately.
    """
    if backend == "xformers":
        import xformers.ops as xops

        bias = xops.fmha.BlockDiagonalMask.from_seqlens(segments.q_seqlens, segments.kv_seqlens)
        return xops.memory_efficient_attention(q, k, v, attn_bias=bias)
    qs = q[0].split(segments.q_seqlens)
    ks, vs = k[0].split(segments.kv_seqlens), v[0].split(segments.kv_seqlens)
    out: list[torch.Tensor | None] = [None] * len(qs)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, (nq, nk) in enumerate(zip(segments.q_seqlens, segments.kv_seqlens)):
        groups.setdefault((nq, nk), []).append(i)
    for idx in groups.values():  # equal shapes batch into one SDPA call
        res = attention(torch.stack([qs[i] for i in idx]), torch.stack([ks[i] for i in idx]),
                        torch.stack([vs[i] for i in idx]), backend="sdpa")
        for j, i in enumerate(idx):
            out[i] = res[j]
    return torch.cat(out, dim=0)[None]

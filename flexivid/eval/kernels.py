"""Per-mode step time and achieved TFLOP/s of FlexiVideoDiT forwards (random weights), with the bf16 matmul peak.

Timing follows the device method: warm-up first, CUDA events around the region, median of repeats, the baseline
(full mode) measured in the same run on the same card. FLOPs come from ``flexivid.models.flops`` (mult and add
counted separately), so TFLOP/s here use the same convention as the paper's 345-417 TFLOP/s figures.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch

from ..config import ModelConfig
from ..models.attention import describe_backend
from ..models.dit import FlexiVideoDiT
from ..models.flops import forward_flops


def time_fn(fn, warmup: int = 3, repeats: int = 10) -> float:
    """Median seconds of ``fn()``; CUDA events on GPU, perf_counter on CPU."""
    for _ in range(warmup):
        fn()
    times = []
    cuda = torch.cuda.is_available()
    for _ in range(repeats):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def matmul_peak_tflops(n: int = 8192, dtype=torch.bfloat16) -> float:
    """Measured dense matmul rate (TFLOP/s) on this device: the ceiling achieved figures are compared with."""
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    if dev == "cpu":
        n = min(n, 1024)
    a, b = torch.randn(n, n, device=dev, dtype=dtype), torch.randn(n, n, device=dev, dtype=dtype)
    sec = time_fn(lambda: a @ b, warmup=3, repeats=10)
    return 2 * n**3 / sec / 1e12


@dataclass
class KernelRow:
    preset: str
    mode: str
    patch: tuple
    tokens: int
    batch: int
    compiled: bool
    ms: float
    tflops: float
    pct_peak: float
    ratio_time: float  # step time / full step time (same preset, batch, compile)
    ratio_flops: float  # FLOPs / full FLOPs


def kernel_table(preset: str, latent: tuple, modes: dict, batch: int = 2, text_len: int = 32,
                 compile_modes: tuple = (False, True), dtype=torch.bfloat16, peak: float | None = None,
                 repeats: int = 10, log=print) -> list[KernelRow]:
    """Time one forward per mode for a preset with random weights.

    Args:
        latent: ``(C, T, H, W)`` of one sample. modes: name -> patch; must include ``full``.
    """
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    cfg = ModelConfig(preset=preset, in_channels=latent[0], patch_size=tuple(modes["full"]),
                      modes={k: v for k, v in modes.items() if k != "full"})
    model = FlexiVideoDiT(cfg).to(dev, dtype).eval()
    log(describe_backend(cfg.attention_backend, dev))
    peak = peak or matmul_peak_tflops()
    x = torch.randn(batch, *latent, device=dev, dtype=dtype)
    t = torch.rand(batch, device=dev)
    text = torch.randn(batch, text_len, cfg.text_dim, device=dev, dtype=dtype)
    mask = torch.ones(batch, text_len, dtype=torch.bool, device=dev)
    rows = []
    for compiled in compile_modes:
        if compiled:
            model.compile_blocks()
        fn = model
        full_ms = None
        for mode, patch in modes.items():
            with torch.inference_mode():
                sec = time_fn(lambda: fn(x, t, text, mask, mode), warmup=3, repeats=repeats)
            fl = forward_flops(cfg, patch, latent, text_len, batch)
            full_fl = forward_flops(cfg, modes["full"], latent, text_len, batch)
            full_ms = full_ms or sec * 1e3
            row = KernelRow(preset, mode, tuple(patch), model.num_tokens(mode, latent), batch, compiled, sec * 1e3,
                            fl / sec / 1e12, 100 * fl / sec / 1e12 / peak, sec * 1e3 / full_ms, fl / full_fl)
            log(f"{preset:12s} {mode:13s} tokens={row.tokens:6d} b={batch} compile={compiled!s:5s} "
                f"{row.ms:8.2f} ms  {row.tflops:6.1f} TFLOP/s ({row.pct_peak:4.1f}% of peak)  "
                f"time ratio {row.ratio_time:.3f} vs FLOPs ratio {row.ratio_flops:.3f}")
            rows.append(row)
        torch._dynamo.reset()
    del model
    if dev == "cuda":
        torch.cuda.empty_cache()
    return rows

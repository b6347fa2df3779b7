"""Per-mode step time and achieved TFLOP/s of FlexiVideoDiT forwards (random weights), with two calibrations
measured in the same run: the bf16 matmul peak and a plain DiT block stack of the same size.

Timing follows the device method: warm-up first, CUDA events around the region, median of repeats, the baseline
(full mode) measured in the same run on the same card. FLOPs come from ``flexivid.models.flops`` (mult and add
counted separately), so TFLOP/s here use the same convention as the paper's 345-417 TFLOP/s figures.

Each forward is a sampling step's: its prompt's text encoded beforehand (``encode_text``; the FLOPs still count the
text side, a few tokens). It runs three ways: ``eager``; ``compiled`` (regional ``torch.compile`` of the blocks, the
host launching every kernel); ``graphed`` (the compiled forward captured in one CUDA graph, so the row is GPU time with
no host in the way; CUDA only). The ``plain`` row is facebookresearch/DiT's block (adaLN-Zero, self-attention,
MLP; no RoPE, QK-norm or cross-attention) at the same width, depth, heads and token count: the figure a DiT trunk
of this size reaches on this card, which the full mode is compared with.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from ..models.attention import describe_backend
from ..models.dit import FlexiVideoDiT, Mlp, apply_preset
from ..models.flops import forward_flops
from ..presets import preset_modes

RUNS = ("eager", "compiled", "graphed")


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


def graphed(fn, warmup: int = 3):
    """``fn`` (no arguments, fixed inputs) captured in a CUDA graph; returns the replay callable."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


def matmul_peak_tflops(n: int = 8192, dtype=torch.bfloat16) -> float:
    """Measured dense matmul rate (TFLOP/s) on this device: the ceiling achieved figures are compared with."""
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    if dev == "cpu":
        n = min(n, 1024)
    a, b = torch.randn(n, n, device=dev, dtype=dtype), torch.randn(n, n, device=dev, dtype=dtype)
    sec = time_fn(lambda: a @ b, warmup=3, repeats=10)
    return 2 * n**3 / sec / 1e12


class PlainDiTBlock(nn.Module):
    """facebookresearch/DiT's block: adaLN-Zero modulation from ``c (B, D)``, self-attention, GELU MLP."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x, c):
        """x (B, N, D), c (B, D) -> (B, N, D)."""
        sh1, sc1, g1, sh2, sc2, g2 = self.adaLN_modulation(c)[:, None].chunk(6, dim=-1)
        q, k, v = self.qkv(self.norm1(x) * (1 + sc1) + sh1).unflatten(-1, (3, self.heads, -1)).permute(2, 0, 3, 1, 4)
        x = x + g1 * self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2))
        return x + g2 * self.mlp(self.norm2(x) * (1 + sc2) + sh2)


class PlainDiTStack(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.blocks = nn.ModuleList(PlainDiTBlock(dim, heads, mlp_ratio) for _ in range(depth))

    def forward(self, x, c):
        for blk in self.blocks:
            x = blk(x, c)
        return x

    @staticmethod
    def flops(dim: int, depth: int, mlp_ratio: float, tokens: int, batch: int) -> int:
        """Matmul FLOPs (mult and add counted) of one forward, the convention of ``models.flops``."""
        n, f = tokens, int(dim * mlp_ratio)
        per_block = 2 * n * dim * 3 * dim + 4 * n * n * dim + 2 * n * dim * dim + 4 * n * dim * f + 2 * dim * 6 * dim
        return batch * depth * per_block


@dataclass
class KernelRow:
    preset: str
    mode: str  # a model mode, or "plain" (the DiT calibration stack)
    patch: tuple
    tokens: int
    batch: int
    run: str  # eager | compiled | graphed
    ms: float
    tflops: float
    pct_peak: float
    ratio_time: float  # step time / full step time (same preset, batch, run)
    ratio_flops: float  # FLOPs / full FLOPs


@dataclass
class KernelCase:
    """The random-weight model, plain DiT stack (None without ``plain``) and fixed inputs of one kernel case."""

    cfg: ModelConfig
    model: FlexiVideoDiT
    stack: PlainDiTStack | None
    x: torch.Tensor  # (B, C, T, H, W) latents
    t: torch.Tensor  # (B,)
    text: torch.Tensor  # (B, L, Dt) prompt tokens
    mask: torch.Tensor  # (B, L) all True
    tokens: int  # full-mode tokens of one sample
    xs: torch.Tensor | None  # (B, tokens, D): the plain stack's input
    cs: torch.Tensor | None  # (B, D): its conditioning

    def compile(self) -> None:
        """Regional ``torch.compile`` of both block stacks (what the ``compiled`` and ``graphed`` runs time)."""
        self.model.compile_blocks()
        if self.stack is not None:
            for blk in self.stack.blocks:
                blk.compile(dynamic=False)


def build_case(preset: str, latent: tuple, modes: dict, batch: int = 2, text_len: int = 32,
               dtype=torch.bfloat16, plain: bool = True) -> KernelCase:
    """The kernel table's models and inputs on this machine's device (``kernel_table`` for the arguments)."""
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    cfg = ModelConfig(preset=preset, in_channels=latent[0], patch_size=tuple(modes["full"]),
                      modes={k: v for k, v in modes.items() if k != "full"})
    model = FlexiVideoDiT(cfg).to(dev, dtype).eval()
    x = torch.randn(batch, *latent, device=dev, dtype=dtype)
    t = torch.rand(batch, device=dev)
    text = torch.randn(batch, text_len, cfg.text_dim, device=dev, dtype=dtype)
    mask = torch.ones(batch, text_len, dtype=torch.bool, device=dev)
    tokens = model.num_tokens("full", latent)
    stack = xs = cs = None
    if plain:
        c = apply_preset(cfg)
        stack = PlainDiTStack(c.hidden_size, c.depth, c.num_heads, c.mlp_ratio).to(dev, dtype).eval()
        xs = torch.randn(batch, tokens, c.hidden_size, device=dev, dtype=dtype)
        cs = torch.randn(batch, c.hidden_size, device=dev, dtype=dtype)
    return KernelCase(cfg, model, stack, x, t, text, mask, tokens, xs, cs)


def runner(fn, run: str, warmup: int = 3):
    """``fn`` as a run times it: itself (eager, compiled) or its CUDA graph's replay (graphed)."""
    if run == "graphed":
        return graphed(fn, warmup)
    return fn


def kernel_table(preset: str, latent: tuple, modes: dict, batch: int = 2, text_len: int = 32,
                 runs: tuple = RUNS, dtype=torch.bfloat16, peak: float | None = None,
                 repeats: int = 10, plain: bool = True, log=print, warmup: int = 3,
                 deadline: float | None = None) -> list[KernelRow]:
    """Time one forward per mode for a preset with random weights, then the plain DiT stack (``plain``).

    Args:
        latent: ``(C, T, H, W)`` of one sample. modes: name -> patch; must include ``full``.
        runs: any of ``eager``, ``compiled``, ``graphed`` (``graphed`` is skipped without CUDA).
        warmup: calls before timing (and before a graph capture). deadline: ``time.perf_counter()`` after which no
            further row starts (rows not timed are logged as skipped); the plain row is timed right after ``full``
            so a cut run still has its calibration.
    """
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    bad = set(runs) - set(RUNS)
    if bad:
        raise ValueError(f"unknown kernel runs {sorted(bad)}; allowed: {', '.join(RUNS)}")
    runs = tuple(r for r in RUNS if r in runs and (r != "graphed" or dev == "cuda"))  # eager before the compile
    case = build_case(preset, latent, modes, batch, text_len, dtype, plain)
    cfg, model, stack, x, t, text, mask = case.cfg, case.model, case.stack, case.x, case.t, case.text, case.mask
    log(describe_backend(cfg.attention_backend, dev))
    peak = peak or matmul_peak_tflops()
    full_fl = forward_flops(cfg, modes["full"], latent, text_len, batch)
    rows = []

    def add(mode, patch, tokens, run, sec, fl, full_ms):
        row = KernelRow(preset, mode, tuple(patch), tokens, batch, run, sec * 1e3, fl / sec / 1e12,
                        100 * fl / sec / 1e12 / peak, sec * 1e3 / full_ms, fl / full_fl)
        log(f"{preset:12s} {mode:13s} tokens={row.tokens:6d} b={batch} {run:8s} {row.ms:8.2f} ms  "
            f"{row.tflops:6.1f} TFLOP/s ({row.pct_peak:4.1f}% of peak)  "
            f"time ratio {row.ratio_time:.3f} vs FLOPs ratio {row.ratio_flops:.3f}")
        rows.append(row)
        return row

    full_tokens, xs, cs = case.tokens, case.xs, case.cs
    if stack is not None:
        c = apply_preset(cfg)
        plain_fl = PlainDiTStack.flops(c.hidden_size, c.depth, c.mlp_ratio, full_tokens, batch)
    compiled = False
    for run in runs:
        if run != "eager" and not compiled:  # compiled and graphed share one compile
            case.compile()
            compiled = True
        full_ms = None
        with torch.inference_mode():
            ctx = model.encode_text(text, mask)  # the text side, once: as a sampler's steps run the model
            order = ["full", *(["plain"] if stack is not None else []), *(m for m in modes if m != "full")]
            for mode in order:
                if deadline is not None and time.perf_counter() > deadline:
                    log(f"{preset:12s} {mode:13s} {run:8s} skipped: past the time budget")
                    continue
                if mode == "plain":
                    sec = time_fn(runner(lambda: stack(xs, cs), run, warmup), warmup=warmup, repeats=repeats)
                    add("plain", modes["full"], full_tokens, run, sec, plain_fl, full_ms)
                    continue
                fn = runner(lambda m=mode: model(x, t, ctx, None, m), run, warmup)
                sec = time_fn(fn, warmup=warmup, repeats=repeats)
                full_ms = full_ms or sec * 1e3
                add(mode, modes[mode], model.num_tokens(mode, latent), run, sec,
                    forward_flops(cfg, modes[mode], latent, text_len, batch), full_ms)
    torch._dynamo.reset()
    del model, stack, case
    if dev == "cuda":
        torch.cuda.empty_cache()
    return rows


def plain_ratio(rows: list[KernelRow]) -> dict[tuple[str, str], float]:
    """``(preset, run) -> full-mode TFLOP/s / plain-stack TFLOP/s`` (the calibration the targets are stated in)."""
    out = {}
    for r in rows:
        if r.mode == "plain":
            full = next(f for f in rows if f.preset == r.preset and f.run == r.run and f.mode == "full")
            out[r.preset, r.run] = full.tflops / r.tflops
    return out


# (preset, latent (C, T, H, W), base patch, batch): the reference DiT-XL trunk at 16x32x32 latents (4096 tokens),
# the FlexiDiT paper's video size (32x48x88 latent -> 33,792 tokens at (1,2,2)), the shipped model at batch 16 with
# CFG (32 rows), and a CPU-sized case.
KERNEL_CASES = {
    "reference": ("reference", (4, 16, 32, 32), (1, 2, 2), 2),
    "paper_video": ("paper_video", (4, 32, 48, 88), (1, 2, 2), 2),
    "small": ("small", (3, 16, 64, 64), (1, 4, 4), 32),
    "tiny": ("tiny", (3, 4, 16, 16), (1, 2, 2), 2),
}


def weak_modes(base) -> dict:
    """full + the preset weak modes of a base patch."""
    return {"full": tuple(base), **preset_modes(base)}


def run_cases(cases, runs=RUNS, repeats: int = 10, log=print, warmup: int = 3,
              deadline: float | None = None) -> tuple[list[KernelRow], float]:
    """The kernel table of each named case in ``KERNEL_CASES``; returns ``(rows, measured peak TFLOP/s)``.
    ``warmup`` / ``deadline``: as ``kernel_table``."""
    unknown = [c for c in cases if c not in KERNEL_CASES]
    if unknown:
        raise ValueError(f"unknown kernel case(s) {unknown}; allowed: {', '.join(KERNEL_CASES)}")
    cuda = torch.cuda.is_available()
    peak = matmul_peak_tflops()
    log(f"bf16 matmul peak {peak:.1f} TFLOP/s" if cuda else f"fp32 matmul peak {peak:.3f} TFLOP/s (CPU)")
    rows = []
    for name in cases:
        preset, latent, base, batch = KERNEL_CASES[name]
        rows += kernel_table(preset, latent, weak_modes(base), batch=batch, runs=tuple(runs),
                             dtype=torch.bfloat16 if cuda else torch.float32, peak=peak, repeats=repeats, log=log,
                             warmup=warmup, deadline=deadline)
    return rows, peak


def kernel_markdown(rows: list[KernelRow], env: dict, peak: float) -> str:
    """The kernel table, then each preset's full mode against the plain DiT stack of the same run."""
    lines = [f"device: {env['device']}; torch {env['torch']}; matmul peak {peak:.1f} TFLOP/s "
             f"({'bf16' if env.get('cuda') else 'fp32'})", "",
             "| preset | mode | patch | tokens | batch | run | ms / forward | TFLOP/s | % peak | time ratio | "
             "FLOPs ratio | time / FLOPs ratio |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.preset} | {r.mode} | {r.patch} | {r.tokens} | {r.batch} | {r.run} | {r.ms:.2f} | "
                     f"{r.tflops:.1f} | {r.pct_peak:.1f} | {r.ratio_time:.3f} | {r.ratio_flops:.3f} | "
                     f"{r.ratio_time / r.ratio_flops:.2f} |")
    ratios = plain_ratio(rows)
    if ratios:
        lines += ["", "| preset | run | full TFLOP/s / plain DiT stack TFLOP/s |", "|---|---|---|"]
        lines += [f"| {p} | {run} | {v:.3f} |" for (p, run), v in ratios.items()]
    return "\n".join(lines) + "\n"

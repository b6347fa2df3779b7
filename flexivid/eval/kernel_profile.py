"""Where the full mode's forward spends its time beside the plain DiT stack of the same size: one ``torch.profiler``
run of each (the kernel table's random-weight models and inputs, ``eval.kernels.build_case``), kernel time grouped
into categories, the per-category difference, and the full mode's top kernels.

On the GPU the rows are CUDA kernels of the graphed forward (compiled blocks captured in one CUDA graph, as the
kernel table's ``graphed`` row), each kernel's duration; on the CPU they are the eager forward's op self times, so a
row is counted once and the categories sum to the total either way.
"""
from __future__ import annotations

from collections import defaultdict

import torch

from .kernels import KERNEL_CASES, build_case, runner, weak_modes
from .timing import profiled_events

CATEGORIES = ("matmul", "attention", "norm+elementwise", "copies", "other")

# First match wins, so the order matters: Inductor's fused kernels ("triton_poi_" / "triton_red_" / "triton_per_")
# are element-wise or reductions whatever source ops their names list (a QK-norm + RoPE kernel names
# "scaled_dot_product" because its output feeds the attention), cutlass/cuDNN attention kernels name "cutlass" or
# "gemm"-like parts, Inductor's matmul templates start with "triton_tem_", and a copy kernel is an elementwise kernel
# by its name.
_RULES = (
    ("norm+elementwise", ("triton_poi_", "triton_red_", "triton_per_")),
    ("attention", ("flash", "fmha", "efficient_attention", "attention", "sdpa", "attn")),
    ("matmul", ("gemm", "cutlass", "cublas", "nvjet", "xmma", "triton_tem_", "aten::mm", "aten::addmm", "aten::bmm",
                "aten::baddbmm", "aten::linear", "aten::matmul", "aten::convolution", "aten::mkldnn_convolution")),
    ("copies", ("memcpy", "memset", "copy_kernel", "catarraybatchedcopy", "aten::copy_", "aten::clone", "aten::cat",
                "aten::contiguous", "aten::_to_copy", "aten::constant_pad_nd", "aten::stack")),
    ("norm+elementwise", ("triton_", "elementwise", "vectorized", "reduce", "norm", "softmax", "gelu", "silu",
                          "aten::add", "aten::mul", "aten::sub", "aten::div", "aten::neg", "aten::rsqrt", "aten::pow",
                          "aten::mean", "aten::sum", "aten::cos", "aten::sin", "aten::exp", "aten::tanh",
                          "aten::where", "aten::fill_", "aten::zero_", "aten::masked_fill")),
)


def categorise(name: str) -> str:
    """The category (one of ``CATEGORIES``) of a CUDA kernel or CPU op name."""
    low = name.lower()
    for cat, keys in _RULES:
        if any(k in low for k in keys):
            return cat
    return "other"


def group(rows) -> dict[str, float]:
    """``[(name, time), ...]`` -> time per category (every one of ``CATEGORIES``, in that order) and ``total``."""
    out = dict.fromkeys(CATEGORIES, 0.0)
    for name, t in rows:
        out[categorise(name)] += t
    out["total"] = sum(out[c] for c in CATEGORIES)
    return out


def top_kernels(rows, n: int = 10) -> list[dict]:
    """The ``n`` names with the most time in ``[(name, time), ...]``: name, category, calls, time, share of all."""
    time, calls = defaultdict(float), defaultdict(int)
    for name, t in rows:
        time[name] += t
        calls[name] += 1
    total = sum(time.values()) or 1.0
    top = sorted(time, key=time.get, reverse=True)[:n]
    return [{"name": k, "category": categorise(k), "calls": calls[k], "time": time[k], "share": time[k] / total}
            for k in top]


def profile_rows(fn) -> list[tuple[str, float]]:
    """One profiled call of ``fn`` after one unprofiled one: ``(kernel name, us)`` per CUDA kernel on the GPU,
    ``(op name, self us)`` per CPU op on the CPU."""
    cuda = torch.cuda.is_available()
    want = torch.autograd.DeviceType.CUDA if cuda else torch.autograd.DeviceType.CPU
    events = [e for e in profiled_events(fn)[0] if getattr(e, "device_type", None) == want]
    if cuda:
        return [(e.name, e.time_range.end - e.time_range.start) for e in events]
    return [(e.name, e.self_cpu_time_total) for e in events]


def profile_case(case: str, log=print, top: int = 10) -> dict:
    """Profile one forward of the full mode and of the plain DiT stack of a ``KERNEL_CASES`` case: graphed on the
    GPU (bf16), eager on the CPU (fp32). Times in ms."""
    if case not in KERNEL_CASES:
        raise ValueError(f"unknown kernel case {case!r}; allowed: {', '.join(KERNEL_CASES)}")
    preset, latent, base, batch = KERNEL_CASES[case]
    cuda = torch.cuda.is_available()
    run = "graphed" if cuda else "eager"
    kc = build_case(preset, latent, weak_modes(base), batch, dtype=torch.bfloat16 if cuda else torch.float32)
    if cuda:
        kc.compile()
    with torch.inference_mode():
        ctx = kc.model.encode_text(kc.text, kc.mask)  # once, as a sampler does: not part of a step's forward
        rows = {"full": profile_rows(runner(lambda: kc.model(kc.x, kc.t, ctx, None, "full"), run)),
                "plain": profile_rows(runner(lambda: kc.stack(kc.xs, kc.cs), run))}
    ms = {k: {c: v / 1e3 for c, v in group(r).items()} for k, r in rows.items()}
    out = {"case": case, "preset": preset, "tokens": kc.tokens, "batch": batch, "run": run,
           "rows": "CUDA kernels" if cuda else "CPU op self time",
           "categories": {c: {"full_ms": ms["full"][c], "plain_ms": ms["plain"][c]} for c in (*CATEGORIES, "total")},
           "kernels": {k: len(r) for k, r in rows.items()},
           "top_full": [{k: v for k, v in x.items() if k != "time"} | {"ms": x["time"] / 1e3}
                        for x in top_kernels(rows["full"], top)]}
    log(f"{preset:12s} profile ({run}, {out['rows']}): full {ms['full']['total']:.2f} ms in {len(rows['full'])}, "
        f"plain {ms['plain']['total']:.2f} ms in {len(rows['plain'])}; "
        + ", ".join(f"{c} {ms['full'][c] - ms['plain'][c]:+.2f}" for c in CATEGORIES))
    torch._dynamo.reset()
    del kc, ctx
    if cuda:
        torch.cuda.empty_cache()
    return out


def profile_markdown(results: list[dict]) -> str:
    """Per case: time per category for full and plain and their difference, then the full mode's top kernels."""
    lines = []
    for r in results:
        cats = r["categories"]
        diff = cats["total"]["full_ms"] - cats["total"]["plain_ms"]
        lines += [f"### {r['preset']}: {r['tokens']} tokens, batch {r['batch']}, {r['run']} ({r['rows']}; "
                  f"{r['kernels']['full']} in full, {r['kernels']['plain']} in plain)", "",
                  "| category | full ms | plain ms | full - plain ms | share of the difference |",
                  "|---|---|---|---|---|"]
        for c in (*CATEGORIES, "total"):
            d = cats[c]["full_ms"] - cats[c]["plain_ms"]
            share = f"{100 * d / diff:.0f}%" if diff else "-"
            lines.append(f"| {c} | {cats[c]['full_ms']:.3f} | {cats[c]['plain_ms']:.3f} | {d:+.3f} | {share} |")
        lines += ["", f"Top {len(r['top_full'])} of the full mode:", "",
                  "| kernel | category | calls | ms | share of full |", "|---|---|---|---|---|"]
        lines += [f"| `{x['name'][:100]}` | {x['category']} | {x['calls']} | {x['ms']:.3f} | "
                  f"{100 * x['share']:.1f}% |" for x in r["top_full"]]
        lines.append("")
    return "\n".join(lines)

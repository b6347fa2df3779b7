#!/usr/bin/env python
"""Wall-clock of flexivid's patch modes on a Wan 2.1-1.3B-shaped diffusers transformer (random weights).

    python tools/benchmark_wan.py --output runs/wan_bench          # GPU: 1.3B shape, 480p 81 frames, bf16, compiled
    python tools/benchmark_wan.py --smoke --output /tmp/wan_smoke  # CPU: tiny model, seconds

What it measures, in one process:

1. Per mode, one guided denoising step as ``WanPipeline`` runs it (a conditional and an unconditional batch-1
   call), ``--repeats`` times round-robin over the modes after a warm-up (which compiles); median / min / max, and
   the time ratio to full next to the FLOPs ratio.
2. Each ``--schedule`` over ``--steps`` steps: its FLOPs fraction and the time composed from the per-step medians.
3. One real end-to-end run of ``WanPipeline`` (prompt embeddings given, latents out, no VAE) for full and for the
   first schedule, back to back, so the composed times are checked against a real loop.

Weak modes run as at sampling time, each on its own LoRA-merged copy of the blocks (``mode_adapters.merge``), so
they cost exactly the base linears; the adapters are freshly initialised (timing does not depend on their values).
Writes ``wan_benchmark.json`` and ``wan_benchmark.md`` (card, torch and diffusers versions included).
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

# Wan 2.1 T2V 1.3B (diffusers' Wan2.1-T2V-1.3B-Diffusers transformer config); the latent of 480x832, 81 frames.
WAN_1_3B = dict(patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16, out_channels=16,
                text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True, eps=1e-6)
LATENT_480P = (16, 21, 60, 104)
PIXELS_480P = (81, 480, 832)  # num_frames, height, width
SMOKE = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16, out_channels=16,
             text_dim=32, freq_dim=32, ffn_dim=32, num_layers=2)
MODES = {"coarse_time": (2, 2, 2), "coarse_space": (1, 4, 4)}
SCHEDULES = ["coarse_space:40,full:10", "coarse_space:35,coarse_time:5,full:10"]  # ~30% and ~32% of the FLOPs
SMOKE_SCHEDULES = ["coarse_space:3,full:1", "coarse_space:2,coarse_time:1,full:1"]


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output", required=True, help="folder for wan_benchmark.json / .md")
    ap.add_argument("--smoke", action="store_true", help="tiny model and latent on the CPU (tests the script)")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=5, help="round-robin repeats of the per-mode step timing")
    ap.add_argument("--schedule", action="append", default=None,
                    help=f"schedule spec (repeatable; default: {' and '.join(SCHEDULES)})")
    ap.add_argument("--no-compile", action="store_true",
                    help="eager blocks (default: regional torch.compile; --smoke is always eager)")
    ap.add_argument("--guidance-scale", type=float, default=5.0)
    a = ap.parse_args(argv)
    if a.smoke:
        a.steps, a.repeats, a.no_compile = min(a.steps, 4), min(a.repeats, 2), True
    a.schedule = a.schedule or list(SMOKE_SCHEDULES if a.smoke else SCHEDULES)
    if a.steps < 1 or a.repeats < 1:
        ap.error("--steps and --repeats must be >= 1")
    return a


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def compiled_graphs() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def main(argv=None) -> int:
    a = parse_args(argv)
    import diffusers
    from diffusers import UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel

    from flexivid.diffusion.schedules import parse_schedule
    from flexivid.fileio import atomic_write
    from flexivid.integrations.wan import FlexiWanTransformer
    from flexivid.models.modes import lora_specs

    t_start = time.perf_counter()
    device = torch.device("cpu" if a.smoke or not torch.cuda.is_available() else "cuda")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    cfg, latent = (SMOKE, (16, 5, 8, 8)) if a.smoke else (WAN_1_3B, LATENT_480P)
    frames, height, width = (17, 64, 64) if a.smoke else PIXELS_480P
    text_len = 8 if a.smoke else 512
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    log = lambda msg: print(f"[{time.perf_counter() - t_start:6.1f}s] {msg}", flush=True)  # noqa: E731
    log(f"{card} | torch {torch.__version__} | diffusers {diffusers.__version__} | {dtype} | latent {latent}")

    torch.manual_seed(0)
    with torch.device(device):
        wan = WanTransformer3DModel(**cfg).eval()
    keep = wan._keep_in_fp32_modules  # as from_pretrained(torch_dtype=bf16) leaves them (rope, norms, time MLP)
    for name, t in [*wan.named_parameters(), *wan.named_buffers()]:
        if not any(k in name.split(".") for k in keep):
            t.data = t.data.to(dtype)
    flexi = FlexiWanTransformer(wan, lora_specs(MODES, rank=64)).eval()
    flexi.mode_adapters.freeze_all()
    flexi.mode_adapters.merge()  # the sampling path: each weak mode runs its own LoRA-merged copy of the blocks
    if not a.no_compile:
        flexi.compile_blocks()
    modes = ["full", *MODES]
    g = torch.Generator(device).manual_seed(0)
    x = torch.randn(1, *latent, device=device, dtype=dtype, generator=g)
    text = torch.randn(1, text_len, cfg["text_dim"], device=device, dtype=dtype, generator=g)
    null = torch.randn(1, text_len, cfg["text_dim"], device=device, dtype=dtype, generator=g)
    t = torch.full((1,), 900.0, device=device)

    @torch.no_grad()  # as WanPipeline.__call__: the compiled graphs guard on the grad mode
    def guided_step(mode):
        flexi(x, t, text, mode=mode, return_dict=False)
        flexi(x, t, null, mode=mode, return_dict=False)

    for mode in modes:  # warm-up: compiles each token count once
        log(f"warm-up {mode}: {timed(lambda: guided_step(mode), device):.2f} s (first), "
            f"{timed(lambda: guided_step(mode), device):.3f} s (second)")
    times = {m: [] for m in modes}
    for _ in range(a.repeats):
        for mode in modes:
            times[mode].append(timed(lambda: guided_step(mode), device))
    flops = {m: 2 * flexi.forward_flops(m, latent, text_len) for m in modes}
    med = {m: statistics.median(v) for m, v in times.items()}
    rows = [dict(mode=m, patch=list(flexi.modes[m]), tokens=flexi.num_tokens(m, latent[1:]),
                 tflops_step=flops[m] / 1e12,
                 flops_ratio=flops[m] / flops["full"], ms_median=1e3 * med[m], ms_min=1e3 * min(times[m]),
                 ms_max=1e3 * max(times[m]), time_ratio=med[m] / med["full"],
                 time_over_flops=(med[m] / med["full"]) / (flops[m] / flops["full"])) for m in modes]
    log("per-mode step times done")

    pipe = WanPipeline(tokenizer=None, text_encoder=None, vae=None, transformer=flexi,
                       scheduler=UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                                         flow_shift=3.0 if a.smoke else 5.0))
    pipe.set_progress_bar_config(disable=True)

    def e2e(spec, steps=a.steps):
        flexi.set_schedule(spec, steps)
        kw = dict(prompt_embeds=text, negative_prompt_embeds=null, num_frames=frames, height=height, width=width,
                  num_inference_steps=steps, guidance_scale=a.guidance_scale, output_type="latent",
                  generator=torch.Generator(device).manual_seed(0))
        return timed(lambda: pipe(**kw), device), flexi.flops_fraction()

    e2e(",".join(f"{m}:1" for m in modes), len(modes))  # warm-up: the pipeline loop, each mode once
    graphs = compiled_graphs()
    log(f"pipeline warm-up done; {graphs} compiled graphs")
    scheds = []
    full_real, _ = e2e("full")
    log(f"end-to-end full: {full_real:.2f} s")
    full_composed = a.steps * med["full"]
    for i, spec in enumerate(a.schedule):
        sched = parse_schedule(spec, a.steps, flexi.modes)
        composed = sum(med[m] for m in sched.cond)
        frac = sum(flops[m] for m in sched.cond) / (a.steps * flops["full"])
        real = None
        if i == 0:  # one real loop checks the composition; more would not fit the time limit at 480p
            real, frac_run = e2e(spec)
            if abs(frac_run - frac) > 1e-9:  # the pipeline's own record must agree with the per-mode counts
                raise RuntimeError(f"FLOPs fraction of the pipeline run {frac_run} != composed {frac}")
            log(f"end-to-end {spec}: {real:.2f} s, FLOPs {frac:.3f}")
        scheds.append(dict(schedule=spec, flops_fraction=frac, composed_s=composed,
                           composed_speedup=full_composed / composed, real_s=real,
                           real_speedup=None if real is None else full_real / real))
    recompiled = compiled_graphs() - graphs  # must be 0: a compile inside a timed run would inflate it
    result = dict(card=card, torch=torch.__version__, diffusers=diffusers.__version__, dtype=str(dtype),
                  compiled=not a.no_compile, config=cfg, latent=list(latent), text_len=text_len, batch=1,
                  steps=a.steps, repeats=a.repeats, guidance_scale=a.guidance_scale, modes=rows,
                  full=dict(composed_s=full_composed, real_s=full_real), schedules=scheds,
                  step_times_s=times, graphs_compiled_while_timing=recompiled, total_s=time.perf_counter() - t_start)
    out = Path(a.output)
    atomic_write(out / "wan_benchmark.json", lambda p: Path(p).write_text(json.dumps(result, indent=2)))
    atomic_write(out / "wan_benchmark.md", lambda p: Path(p).write_text(markdown(result)))
    print(markdown(result))
    return 0


def markdown(r: dict) -> str:
    lines = [f"{r['card']} | torch {r['torch']} | diffusers {r['diffusers']} | {r['dtype']} | "
             f"{'compiled (regional)' if r['compiled'] else 'eager'} | latent {tuple(r['latent'])} | "
             f"text {r['text_len']} tokens | batch 1, guided (2 calls per step) | "
             f"{r['repeats']} round-robin repeats", "",
             "| mode | patch | tokens | TFLOPs / step | FLOPs ratio | ms / step (median) | min | max | time ratio | "
             "time ratio / FLOPs ratio |", "|---|---|---|---|---|---|---|---|---|---|"]
    for m in r["modes"]:
        lines.append(f"| {m['mode']} | {tuple(m['patch'])} | {m['tokens']} | {m['tflops_step']:.1f} | "
                     f"{m['flops_ratio']:.3f} | {m['ms_median']:.1f} | {m['ms_min']:.1f} | {m['ms_max']:.1f} | "
                     f"{m['time_ratio']:.3f} | {m['time_over_flops']:.2f} |")
    lines += ["", f"{r['steps']}-step schedules (WanPipeline, UniPC): composed = sum of per-step medians; real = one "
              f"end-to-end run of full, then of the first schedule", "",
              "| schedule | FLOPs fraction | composed s | composed speed-up | real s | real speed-up |",
              "|---|---|---|---|---|---|",
              f"| full | 1.000 | {r['full']['composed_s']:.2f} | 1.00x | {r['full']['real_s']:.2f} | 1.00x |"]
    for s in r["schedules"]:
        real = "- | -" if s["real_s"] is None else f"{s['real_s']:.2f} | {s['real_speedup']:.2f}x"
        lines.append(f"| {s['schedule']} | {s['flops_fraction']:.3f} | {s['composed_s']:.2f} | "
                     f"{s['composed_speedup']:.2f}x | {real} |")
    return "\n".join(lines) + (f"\n\ntotal wall-clock of the benchmark: {r['total_s']:.0f} s; graphs compiled while "
                               f"timing the end-to-end runs: {r['graphs_compiled_while_timing']}\n")


if __name__ == "__main__":
    sys.exit(main())

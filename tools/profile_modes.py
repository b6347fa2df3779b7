#!/usr/bin/env python
"""Where a weak step's time goes: one model call per mode of a checkpoint, LoRA (as the pipeline runs it) vs merged.

For each mode this times one forward of the checkpoint's model at the pipeline's guided batch (``--batch`` prompts,
doubled for CFG), eager and with regional ``torch.compile``:

- ``lora``: the peft LoRA of the mode active, as ``VideoPipeline`` runs it;
- ``merged``: ``mode_adapters.merge()``, each LoRA mode on its own LoRA-merged blocks (the pipeline's default).

and writes ``<output>/profile_modes.md`` / ``.json``: ms per call, time ratio to full against the FLOPs ratio, plus the
top CUDA kernels of one eager call per mode (torch.profiler), so the per-step cost that does not shrink with the token
count is visible::

    python tools/profile_modes.py --checkpoint checkpoints/flexivid-small --batch 16 --output runs/profile
"""
import argparse
import copy
import json
import sys
from pathlib import Path

import torch

from flexivid.errors import OneLineParser, report_errors
from flexivid.eval.kernel_profile import profile_rows, top_kernels
from flexivid.eval.kernels import time_fn
from flexivid.models.flops import forward_flops
from flexivid.models.serialization import load_model, read_spec


def kernel_summary(fn, top: int) -> list[dict]:
    """The ``top`` kernels of one call of ``fn`` by device time (CPU op self time on a machine without CUDA), then
    the total; each kernel counted once (``eval.kernel_profile.profile_rows``)."""
    rows = profile_rows(fn)
    total = sum(t for _, t in rows)
    return [{"name": x["name"][:90], "calls": x["calls"], "us": x["time"], "share": x["share"]}
            for x in top_kernels(rows, top)] + [{"name": "(all)", "calls": len(rows), "us": total, "share": 1.0}]


def main(argv=None) -> int:
    ap = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="checkpoints/flexivid-small")
    ap.add_argument("--batch", type=int, default=16, help="prompts; the model call is twice this (CFG)")
    ap.add_argument("--text-len", type=int, default=16)
    ap.add_argument("--compile", default="both", choices=["off", "on", "both"])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--top", type=int, default=12, help="kernels listed per mode")
    ap.add_argument("--output", default="runs/profile", help="output folder")
    return report_errors(run, ap.parse_args(argv))


def run(a) -> int:
    cuda = torch.cuda.is_available()
    dev, dtype = ("cuda", torch.bfloat16) if cuda else ("cpu", torch.float32)
    model = load_model(a.checkpoint, dev, dtype).eval()
    clip = read_spec(a.checkpoint).clip
    latent = (model.config.in_channels, clip.num_frames, clip.height, clip.width)
    b = 2 * a.batch
    x = torch.randn(b, *latent, device=dev, dtype=dtype)
    t = torch.rand(b, device=dev)
    text = torch.randn(b, a.text_len, model.config.text_dim, device=dev, dtype=dtype)
    mask = torch.ones(b, a.text_len, dtype=torch.bool, device=dev)
    variants = {"lora": model}
    if model.mode_adapters.lora_modes:  # the pipeline's default: each LoRA mode routed to its merged block stack
        variants["merged"] = copy.deepcopy(model)
        variants["merged"].mode_adapters.merge()

    def flops(variant, mode):  # merged linears carry no adapter FLOPs
        r = variants[variant].mode_adapters.lora_rank(mode)
        return forward_flops(model.config, model.modes[mode], latent, a.text_len, b, lora_rank=r)
    device = torch.cuda.get_device_name() if cuda else "CPU"
    print(f"device: {device}; {a.checkpoint}; model call batch {b} ({a.batch} prompts x CFG), latent {latent}")
    rows, kernels = [], {}
    for compiled in {"off": [False], "on": [True], "both": [False, True]}[a.compile]:
        for vname, net in variants.items():
            if compiled:
                torch._dynamo.reset()
                net.compile_blocks()
            full_ms = None
            for mode in net.modes:
                fn = lambda: net(x, t, text, mask, mode)  # noqa: E731
                with torch.inference_mode():
                    ms = time_fn(fn, warmup=3, repeats=a.repeats) * 1e3
                    if not compiled:
                        kernels[f"{vname}/{mode}"] = kernel_summary(fn, a.top)
                full_ms = full_ms or ms
                fl = flops(vname, mode)
                row = dict(variant=vname, mode=mode, compiled=compiled, tokens=model.num_tokens(mode, latent), ms=ms,
                           time_ratio=ms / full_ms, flops_ratio=fl / flops(vname, "full"), tflops=fl / ms / 1e9)
                rows.append(row)
                print(f"{vname:6s} {mode:13s} compile={compiled!s:5s} {ms:8.2f} ms  time ratio {row['time_ratio']:.3f}"
                      f"  FLOPs ratio {row['flops_ratio']:.3f}  {row['tflops']:.1f} TFLOP/s")
    out = Path(a.output)
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"device: {device}; checkpoint {a.checkpoint}; model call batch {b} ({a.batch} prompts x CFG); "
             f"{'bf16' if cuda else 'fp32'}", "",
             "| adapters | mode | tokens | compile | ms / call | time ratio | FLOPs ratio | TFLOP/s |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['variant']} | {r['mode']} | {r['tokens']} | {r['compiled']} | {r['ms']:.2f} | {r['time_ratio']:.3f} "
              f"| {r['flops_ratio']:.3f} | {r['tflops']:.1f} |" for r in rows]
    for key, ks in kernels.items():
        lines += ["", f"**{key}, eager: top kernels by {'device' if cuda else 'CPU'} time**", "",
                  "| kernel | calls | us | share |", "|---|---|---|---|"]
        lines += [f"| `{k['name']}` | {k['calls']} | {k['us']:.0f} | {100 * k['share']:.1f}% |" for k in ks]
    (out / "profile_modes.md").write_text("\n".join(lines) + "\n")
    (out / "profile_modes.json").write_text(json.dumps({"device": device, "checkpoint": a.checkpoint, "batch": b,
                                                        "rows": rows, "kernels": kernels}, indent=2))
    print(f"wrote {out / 'profile_modes.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""GPU-only checks in one run: attention backend probe, xformers/SDPA parity, bf16 accuracy, packed attention.

    python tools/gpu_check.py --out runs/gpu_check.json

Each check compares against a float64 reference by relative error ||out - ref|| / ||ref|| (bf16 operands land
between 1e-3 and 1e-2). Prints a table and writes JSON. Exits non-zero if a check fails its tolerance.
"""
import argparse
import copy
import json
import sys

import torch

from flexivid.config import ModelConfig
from flexivid.models import attention as A
from flexivid.models.dit import FlexiVideoDiT


def rel(out, ref):
    return float((out.double() - ref.double()).norm() / ref.double().norm())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/gpu_check.json")
    a = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("error: no CUDA device; this script checks GPU-only behaviour", file=sys.stderr)
        return 2
    dev = "cuda"
    res = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "cuda": torch.version.cuda}
    ok_x, reason = A.xformers_status()
    res["xformers_runs"], res["xformers_reason"] = ok_x, reason
    res["backend_auto"] = A.resolve_backend("auto", dev)
    res["varlen_attn_available"] = hasattr(torch.nn.attention, "varlen") or _has_varlen()
    checks = []
    g = torch.Generator(device=dev).manual_seed(0)
    q_lens, kv_lens = [4096, 1024, 4096, 1024], [4096, 1024, 4096, 1024]
    q, k, v = (torch.randn(1, sum(q_lens), 16, 64, device=dev, generator=g) for _ in range(3))
    ref = torch.cat([A.attention(qi[None].double(), ki[None].double(), vi[None].double())
                     for qi, ki, vi in zip(q[0].split(q_lens), k[0].split(kv_lens), v[0].split(kv_lens))], 1)
    seg = A.Segments(q_lens, kv_lens)
    for backend in (["xformers"] if ok_x else []) + ["sdpa"]:
        out = A.packed_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), seg, backend)
        checks.append((f"packed attention bf16 ({backend}) vs fp64 separate", rel(out, ref), 1e-2))
    if ok_x:
        xo = A.attention(q[:, :4096].half(), k[:, :4096].half(), v[:, :4096].half(), backend="xformers")
        so = A.attention(q[:, :4096].half(), k[:, :4096].half(), v[:, :4096].half(), backend="sdpa")
        checks.append(("xformers vs SDPA fp16 (dense)", rel(xo, so), 5e-3))
    torch.manual_seed(0)
    cfg = ModelConfig(preset="small", in_channels=3, patch_size=(1, 4, 4),
                      modes={"coarse_time": (2, 4, 4), "coarse_space": (1, 8, 8)})
    model = FlexiVideoDiT(cfg).to(dev)
    with torch.no_grad():
        for p in model.parameters():  # zero-init gates would hide the trunk: give every weight a value
            if p.abs().sum() == 0:
                p.normal_(std=0.02)
    x = torch.randn(2, 3, 16, 64, 64, device=dev)
    t, text = torch.rand(2, device=dev), torch.randn(2, 16, 384, device=dev)
    m64, m16 = copy.deepcopy(model).double(), copy.deepcopy(model).bfloat16()
    with torch.no_grad():
        for mode in model.modes:
            ref = m64(x.double(), t, text.double(), None, mode)
            out = m16(x.bfloat16(), t, text.bfloat16(), None, mode)
            checks.append((f"model forward bf16 vs fp64, mode {mode}", rel(out, ref), 2e-2))
        reqs = [(x, t, text, None, "full"), (x, t, None, None, "coarse_space")]
        packed, sep = model.forward_packed(reqs), [model(*r) for r in reqs]
        checks.append(("model packed vs separate fp32 (full + coarse_space)",
                       max(rel(p_, s_) for p_, s_ in zip(packed, sep)), 1e-4))
    res["checks"] = [{"name": n, "rel_err": e, "tol": tol, "pass": e <= tol} for n, e, tol in checks]
    print(json.dumps({k: v for k, v in res.items() if k != "checks"}, indent=1))
    for c in res["checks"]:
        print(f"{'PASS' if c['pass'] else 'FAIL'}  {c['name']:60s} rel err {c['rel_err']:.2e} (tol {c['tol']:.0e})")
    with open(a.out, "w") as f:
        json.dump(res, f, indent=2)
    return 0 if all(c["pass"] for c in res["checks"]) else 1


def _has_varlen():
    try:
        from torch.nn.attention import varlen  # noqa: F401
        return True
    except ImportError:
        return False


if __name__ == "__main__":
    sys.exit(main())

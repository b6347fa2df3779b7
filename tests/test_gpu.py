"""GPU-only parity checks (marked ``gpu``; skipped without CUDA): attention backends, bf16 accuracy, packing.

    python -m pytest -m gpu tests            # on a GPU machine; -rA prints each check's relative error

Each check compares against a float64 reference by relative error ||out - ref|| / ||ref|| (bf16 operands land
between 1e-3 and 1e-2).
"""
import copy

import pytest
import torch

from flexivid.config import ModelConfig
from flexivid.models import attention as A
from flexivid.models.dit import FlexiVideoDiT
from flexivid.presets import preset_modes

pytestmark = pytest.mark.gpu
DEV = "cuda"


def rel(out, ref) -> float:
    return float((out.double() - ref.double()).norm() / ref.double().norm())


def backends() -> list[str]:
    return (["xformers"] if A.xformers_status()[0] else []) + ["sdpa"]


@pytest.fixture(scope="module")
def qkv():
    g = torch.Generator(device=DEV).manual_seed(0)
    lens = [4096, 1024, 4096, 1024]
    q, k, v = (torch.randn(1, sum(lens), 16, 64, device=DEV, generator=g) for _ in range(3))
    return q, k, v, lens


def test_auto_backend_runs_on_this_gpu():
    assert A.resolve_backend("auto", DEV) in ("xformers", "sdpa")
    print(f"{torch.cuda.get_device_name()}: auto backend {A.resolve_backend('auto', DEV)}, "
          f"xformers {A.xformers_status()}")


@pytest.mark.parametrize("backend", backends())
def test_packed_attention_bf16_matches_fp64_separate(qkv, backend):
    q, k, v, lens = qkv
    ref = torch.cat([A.attention(qi[None].double(), ki[None].double(), vi[None].double())
                     for qi, ki, vi in zip(q[0].split(lens), k[0].split(lens), v[0].split(lens))], 1)
    out = A.packed_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), A.Segments(lens, lens), backend)
    err = rel(out, ref)
    print(f"packed attention bf16 ({backend}) vs fp64 separate: rel err {err:.2e}")
    assert err <= 1e-2


def test_xformers_matches_sdpa(qkv):
    if not A.xformers_status()[0]:
        pytest.skip(f"xformers kernels do not run here: {A.xformers_status()[1]}")
    q, k, v, _ = (t[:, :4096].half() if torch.is_tensor(t) else t for t in qkv)
    err = rel(A.attention(q, k, v, backend="xformers"), A.attention(q, k, v, backend="sdpa"))
    print(f"xformers vs SDPA fp16 (dense): rel err {err:.2e}")
    assert err <= 5e-3


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    model = FlexiVideoDiT(ModelConfig(preset="small", in_channels=3, patch_size=(1, 4, 4),
                                      modes=preset_modes((1, 4, 4)))).to(DEV)
    with torch.no_grad():
        for p in model.parameters():  # zero-init gates would hide the trunk: give every weight a value
            if p.abs().sum() == 0:
                p.normal_(std=0.02)
    g = torch.Generator(device=DEV).manual_seed(1)
    x = torch.randn(2, 3, 16, 64, 64, device=DEV, generator=g)
    t, text = torch.rand(2, device=DEV, generator=g), torch.randn(2, 16, 384, device=DEV, generator=g)
    return model, x, t, text


@pytest.mark.parametrize("mode", ["full", "coarse_time", "coarse_space"])
def test_model_forward_bf16_matches_fp64(small_model, mode):
    model, x, t, text = small_model
    m64, m16 = copy.deepcopy(model).double(), copy.deepcopy(model).bfloat16()
    with torch.no_grad():
        err = rel(m16(x.bfloat16(), t, text.bfloat16(), None, mode), m64(x.double(), t, text.double(), None, mode))
    print(f"model forward bf16 vs fp64, mode {mode}: rel err {err:.2e}")
    assert err <= 2e-2


def test_model_packed_matches_separate(small_model):
    model, x, t, text = small_model
    reqs = [(x, t, text, None, "full"), (x, t, None, None, "coarse_space")]
    with torch.no_grad():
        err = max(rel(p, s) for p, s in zip(model.forward_packed(reqs), [model(*r) for r in reqs]))
    print(f"model packed vs separate fp32 (full + coarse_space): rel err {err:.2e}")
    assert err <= 1e-4

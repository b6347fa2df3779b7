"""PI-resize projections: each form against its own invariant, in float64."""

import pytest
import torch
import torch.nn.functional as F

from flexivid.models.patching import (FlexiDeEmbed, FlexiPatchEmbed, check_divisible, embed_projection,
                                      project_embed_kernel, resize_matrix)

PAIRS = [((1, 2, 2), (2, 2, 2)), ((1, 2, 2), (1, 4, 4)), ((1, 2, 2), (2, 4, 4)), ((2, 2, 2), (4, 2, 2)),
         ((1, 4, 4), (1, 8, 8)), ((1, 3, 3), (1, 6, 6)), ((1, 2, 3), (2, 4, 6))]


@pytest.mark.parametrize("src,dst", PAIRS + [(b, a) for a, b in PAIRS])
def test_resize_matrix_equals_trilinear_interpolate(src, dst):
    x = torch.randn(5, 1, *src, dtype=torch.float64)
    ref = F.interpolate(x, size=dst, mode="trilinear", align_corners=False).reshape(5, -1)
    assert torch.allclose(x.reshape(5, -1) @ resize_matrix(src, dst).T, ref, atol=1e-12)


def test_known_2_to_4_matrices():
    up = resize_matrix((1, 1, 2), (1, 1, 4))
    assert torch.allclose(up, torch.tensor([[1, 0], [.75, .25], [.25, .75], [0, 1]], dtype=torch.float64))
    down = resize_matrix((1, 1, 4), (1, 1, 2))
    assert torch.allclose(down, torch.tensor([[.5, .5, 0, 0], [0, 0, .5, .5]], dtype=torch.float64))
    # FlexiViT's pinv row for 2 -> 4 in 1D: .65 .45 .05 -.15 (FlexiViT)
    p = embed_projection((1, 1, 2), (1, 1, 4), "pinv")
    assert torch.allclose(p[:, 0], torch.tensor([.65, .45, .05, -.15], dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize("base,mode", PAIRS)
def test_pinv_invariant(base, mode):
    """FlexiViT: <resize(x), w'> == <x, w> for a base-size patch x resized to the mode size."""
    w = torch.randn(7, 3, *base, dtype=torch.float64)
    w2 = project_embed_kernel(w, base, mode, "pinv")
    x = torch.randn(4, 3, *base, dtype=torch.float64)
    xr = F.interpolate(x, size=mode, mode="trilinear", align_corners=False)
    lhs = torch.einsum("bcthw,dcthw->bd", xr, w2)
    rhs = torch.einsum("bcthw,dcthw->bd", x, w)
    assert torch.allclose(lhs, rhs, atol=1e-10)


@pytest.mark.parametrize("base,mode", PAIRS)
def test_paper_invariant(base, mode):
    """FlexiDiT: <x, w'> == <avgpool(x), w> for a mode-size patch x."""
    w = torch.randn(7, 3, *base, dtype=torch.float64)
    w2 = project_embed_kernel(w, base, mode, "paper")
    x = torch.randn(4, 3, *mode, dtype=torch.float64)
    pooled = F.avg_pool3d(x, kernel_size=tuple(m // b for m, b in zip(mode, base)))
    lhs = torch.einsum("bcthw,dcthw->bd", x, w2)
    rhs = torch.einsum("bcthw,dcthw->bd", pooled, w)
    assert torch.allclose(lhs, rhs, atol=1e-10)


def test_forms_differ_in_space_but_not_in_time():
    w = torch.randn(6, 3, 1, 2, 2, dtype=torch.float64)
    for form in ("paper", "pinv"):
        wt = project_embed_kernel(w, (1, 2, 2), (2, 2, 2), form)
        assert torch.allclose(wt, torch.cat([w / 2, w / 2], dim=2), atol=1e-12), form  # halve and duplicate
    a = project_embed_kernel(w, (1, 2, 2), (1, 4, 4), "paper")
    b = project_embed_kernel(w, (1, 2, 2), (1, 4, 4), "pinv")
    assert (a - b).abs().max() > 1e-3


def test_embed_module_matches_avgpool_and_deembed_upsamples():
    torch.manual_seed(0)
    emb = FlexiPatchEmbed(3, 16, (1, 2, 2)).double()
    emb.add_mode("coarse_space", (1, 4, 4))
    emb.add_mode("coarse_time", (2, 2, 2))
    x = torch.randn(2, 3, 4, 8, 8, dtype=torch.float64)
    for mode, k in (("coarse_space", (1, 2, 2)), ("coarse_time", (2, 1, 1))):
        tok, grid = emb(x, mode)
        ref, ref_grid = emb(F.avg_pool3d(x, k), "full")
        assert grid == ref_grid and torch.allclose(tok, ref, atol=1e-10)
    de = FlexiDeEmbed(16, 3, (1, 2, 2)).double()
    torch.nn.init.normal_(de.linear["full"].weight)
    de.add_mode("coarse_space", (1, 4, 4))
    tok = torch.randn(2, 4 * 2 * 2, 16, dtype=torch.float64)
    out = de(tok, "coarse_space", (4, 2, 2), (1, 4, 4))
    base = de(tok, "full", (4, 2, 2), (1, 2, 2))  # (2, 3, 4, 4, 4): each token's 2x2 patch
    patches = base.unfold(3, 2, 2).unfold(4, 2, 2)  # (2,3,4,2,2,2,2)
    up = F.interpolate(patches.permute(0, 2, 3, 4, 1, 5, 6).reshape(-1, 3, 2, 2), size=(4, 4), mode="bilinear",
                       align_corners=False)
    up = up.reshape(2, 4, 2, 2, 3, 4, 4).permute(0, 4, 1, 2, 5, 3, 6).reshape(2, 3, 4, 8, 8)
    assert torch.allclose(out, up, atol=1e-10)


def test_divisibility_error_names_shape_mode_and_patch():
    with pytest.raises(ValueError, match=r"\(5, 8, 8\).*coarse_time.*\(2, 2, 2\).*T=5"):
        check_divisible((5, 8, 8), (2, 2, 2), "coarse_time")
    with pytest.raises(ValueError, match="integer multiple"):
        FlexiPatchEmbed(3, 8, (1, 2, 2)).add_mode("odd", (1, 3, 3))


def test_projection_is_cached():
    assert embed_projection((1, 2, 2), (1, 4, 4), "paper") is embed_projection((1, 2, 2), (1, 4, 4), "paper")
    with pytest.raises(ValueError, match="allowed"):
        embed_projection((1, 2, 2), (1, 4, 4), "bicubic")


def test_patch_embed_equals_conv3d():
    emb = FlexiPatchEmbed(3, 8, (1, 2, 2))
    emb.add_mode("coarse_time", (2, 2, 2))
    x = torch.randn(2, 3, 4, 6, 6)
    for mode in ("full", "coarse_time"):
        tok, grid = emb(x, mode)
        ref = emb.proj[mode](x)
        assert grid == tuple(ref.shape[2:])
        assert torch.allclose(tok, ref.flatten(2).transpose(1, 2), atol=1e-5)

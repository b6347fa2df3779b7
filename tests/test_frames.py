"""Frame-wise PSNR / SSIM (accelerated schedule vs full schedule from the same seed)."""
import pytest
import torch
import torch.nn.functional as F

from flexivid.eval.frames import PSNR_CAP_DB, compare_videos, psnr, ssim


def video(seed=0, shape=(2, 3, 4, 32, 32)):
    """Smooth random video in [-1, 1] (blurred noise, so SSIM has structure to compare)."""
    x = torch.rand(shape, generator=torch.Generator().manual_seed(seed))
    b, c, t, h, w = shape
    x = F.avg_pool2d(x.reshape(b * c * t, 1, h, w), 5, stride=1, padding=2, count_include_pad=False)
    return (x.reshape(shape) * 2 - 1).clamp(-1, 1)


def noisy(x, sigma, seed=1):
    return (x + sigma * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))).clamp(-1, 1)


def reference_ssim(x, y):
    """Independent SSIM of [0, 1] frames (N, C, H, W) with scipy's Gaussian filter (radius 5 = 11x11, sigma 1.5),
    keeping the valid region and averaging channels, as VideoSys' cv2 code does."""
    from scipy.ndimage import gaussian_filter

    def blur(z):
        return gaussian_filter(z, sigma=1.5, truncate=5 / 1.5, mode="constant")[5:-5, 5:-5]

    scores = []
    for xi, yi in zip(x.double().numpy(), y.double().numpy()):
        per_channel = []
        for a, b in zip(xi, yi):
            mx, my = blur(a), blur(b)
            vx, vy, cxy = blur(a * a) - mx**2, blur(b * b) - my**2, blur(a * b) - mx * my
            c1, c2 = 0.01**2, 0.03**2
            per_channel.append((((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))).mean())
        scores.append(sum(per_channel) / len(per_channel))
    return torch.tensor(scores)


def test_identical_videos_hit_the_psnr_cap_and_ssim_one():
    x = video()
    assert torch.all(psnr(x, x.clone()) == PSNR_CAP_DB)
    torch.testing.assert_close(ssim(x, x.clone()), torch.ones(2), atol=1e-5, rtol=0)


def test_psnr_known_value():
    x = video() * 0.5  # stays inside [-1, 1] after the offset
    # +0.2 in [-1, 1] is +0.1 in [0, 1]: MSE 0.01 -> exactly 20 dB.
    torch.testing.assert_close(psnr(x + 0.2, x), torch.full((2,), 20.0), atol=1e-4, rtol=0)


def test_psnr_and_ssim_decrease_with_noise():
    x = video()
    psnrs = [float(psnr(noisy(x, s), x).mean()) for s in (0.01, 0.05, 0.2)]
    ssims = [float(ssim(noisy(x, s), x).mean()) for s in (0.01, 0.05, 0.2)]
    assert psnrs[0] > psnrs[1] > psnrs[2] and ssims[0] > ssims[1] > ssims[2]
    assert psnrs[0] < PSNR_CAP_DB and ssims[0] < 1.0


def test_ssim_matches_a_direct_gaussian_reference():
    x, y = video(0), noisy(video(0), 0.1)
    frames = lambda v: ((v + 1) / 2).permute(0, 2, 1, 3, 4).reshape(-1, 3, 32, 32)  # noqa: E731
    expected = reference_ssim(frames(x), frames(y)).reshape(2, 4).mean(1).float()
    torch.testing.assert_close(ssim(x, y), expected, atol=1e-6, rtol=0)


def test_averaging_is_per_frame():
    x = video(shape=(1, 3, 2, 32, 32))
    y = x.clone()
    y[:, :, 1] += 0.2 * (y[:, :, 1] < 0.8)  # only the second frame differs
    per_frame = [float(psnr(y[:, :, i:i + 1], x[:, :, i:i + 1])) for i in range(2)]
    assert float(psnr(y, x)) == pytest.approx(sum(per_frame) / 2, rel=1e-6)


def test_compare_videos_is_json_ready():
    x = video()
    result = compare_videos(noisy(x, 0.05), x)
    assert set(result) >= {"psnr", "ssim", "psnr_per_video", "ssim_per_video", "protocol"}
    assert len(result["psnr_per_video"]) == 2 and isinstance(result["ssim"], float)


def test_bad_input():
    x = video()
    with pytest.raises(ValueError, match="same shape"):
        psnr(x, x[:, :, :2])
    with pytest.raises(ValueError, match=r"\(B, 3, T, H, W\)"):
        ssim(x[:, 0], x[:, 0])
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.zeros(1, 3, 2, 8, 8), torch.zeros(1, 3, 2, 8, 8))

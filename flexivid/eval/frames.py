"""Frame-wise PSNR and SSIM between two videos: the TeaCache / PAB (VideoSys) fidelity protocol.

An accelerated sampling schedule (e.g. coarse patches early) is judged by how close its video stays to the full
schedule's video generated from the same seed and prompt. Both videos are ``(B, 3, T, H, W)`` in ``[-1, 1]``;
following VideoSys' ``common_metrics`` they are mapped to ``[0, 1]``, scored frame by frame, and averaged over frames
(and, in ``compare_videos``, over the batch):

- PSNR over all channels and pixels of a frame, data range 1; a frame with MSE < 1e-10 scores ``max_db`` (100 dB,
  VideoSys' cap) instead of inf, so one identical frame does not make the whole average infinite.
- SSIM (Wang et al. 2004): 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, per channel, averaged over the
  valid region (windows fully inside the frame) and the channels, exactly as VideoSys' cv2 code does.
  We do not call torchmetrics' SSIM: since 1.x it averages over reflection-padded borders as well, which moves
  scores by ~0.005 against the published TeaCache/PAB numbers; the window code below is 15 lines.
"""
from __future__ import annotations

import torch

PSNR_CAP_DB = 100.0
SSIM_KERNEL, SSIM_SIGMA = 11, 1.5


def _frames(video: torch.Tensor, reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """Validate two ``(B, 3, T, H, W)`` videos and return ``(B*T, 3, H, W)`` frames in [0, 1], plus B and T."""
    if not isinstance(video, torch.Tensor) or not isinstance(reference, torch.Tensor):
        raise TypeError("psnr/ssim expect torch tensors (B, 3, T, H, W) in [-1, 1]; convert numpy with "
                        "flexivid.video_io.from_uint8")
    if video.shape != reference.shape or video.ndim != 5 or video.shape[1] != 3:
        raise ValueError(f"psnr/ssim expect two videos of the same shape (B, 3, T, H, W), got {tuple(video.shape)} "
                         f"and {tuple(reference.shape)}; generate both with the same size and frame count")
    b, c, t, h, w = video.shape

    def to_frames(x: torch.Tensor) -> torch.Tensor:
        return ((x.float() + 1.0) / 2.0).permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)

    return to_frames(video), to_frames(reference.to(video.device)), b, t


def psnr(video: torch.Tensor, reference: torch.Tensor, max_db: float = PSNR_CAP_DB) -> torch.Tensor:
    """Per-video PSNR in dB, ``(B,)``: frame-wise PSNR (data range 1 on [0, 1]) averaged over the T frames.

    ``video``, ``reference``: ``(B, 3, T, H, W)`` in [-1, 1]. Frames with MSE < 1e-10 count as ``max_db``.
    """
    x, y, b, t = _frames(video, reference)
    mse = (x.double() - y.double()).pow(2).mean(dim=(1, 2, 3))  # float64: tiny MSEs stay exact
    db = torch.where(mse < 1e-10, torch.full_like(mse, max_db), -10.0 * torch.log10(mse.clamp_min(1e-30)))
    return db.reshape(b, t).mean(dim=1).float()


def _valid_gaussian(n: int, device) -> torch.Tensor:
    """``(n - 10, n)`` float64 matrix whose product with a signal is its 'valid' 11-tap Gaussian filtering.

    The window is separable, so two matrix products equal the 2-D convolution; float64 convolutions have no fast
    CPU kernel (a grouped ``conv2d`` took ~1 s per 16-frame 64x64 clip), while these products run on BLAS.
    """
    radius = SSIM_KERNEL // 2
    g = torch.exp(-(torch.arange(-radius, radius + 1, dtype=torch.float64, device=device) ** 2) / (2 * SSIM_SIGMA**2))
    g = g / g.sum()
    out = torch.zeros(n - 2 * radius, n, dtype=torch.float64, device=device)
    for k in range(SSIM_KERNEL):  # band k: output i reads input i + k
        out.diagonal(k).copy_(g[k].expand(n - 2 * radius))
    return out


def ssim(video: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per-video SSIM, ``(B,)``: frame-wise Gaussian SSIM (11x11, sigma 1.5, data range 1) averaged over frames.

    ``video``, ``reference``: ``(B, 3, T, H, W)`` in [-1, 1], with ``H, W >= 11``.
    """
    x, y, b, t = _frames(video, reference)
    if min(x.shape[-2:]) < SSIM_KERNEL:
        raise ValueError(f"SSIM needs frames of at least {SSIM_KERNEL}x{SSIM_KERNEL} pixels (its Gaussian window), "
                         f"got {x.shape[-2]}x{x.shape[-1]}")
    x, y = x.double(), y.double()  # float64: sigma^2 = E[x^2] - E[x]^2 cancels badly in float32
    rows, cols = _valid_gaussian(x.shape[-2], x.device), _valid_gaussian(x.shape[-1], x.device)

    def blur(z: torch.Tensor) -> torch.Tensor:  # per-channel Gaussian mean, 'valid' (no padding)
        return rows @ z @ cols.T  # (N, 3, H-10, W-10)

    mu_x, mu_y = blur(x), blur(y)
    var_x, var_y = blur(x * x) - mu_x**2, blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2  # (K * data_range)^2 with data range 1
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.mean(dim=(1, 2, 3)).reshape(b, t).mean(dim=1).float()


def compare_videos(video: torch.Tensor, reference: torch.Tensor) -> dict:
    """PSNR and SSIM of ``video`` against ``reference`` (both ``(B, 3, T, H, W)`` in [-1, 1]), batch-averaged.

    Returns a JSON-ready dict with the means, the per-video values and the protocol settings.
    """
    p, s = psnr(video, reference), ssim(video, reference)
    return {
        "psnr": float(p.mean()), "ssim": float(s.mean()),
        "psnr_per_video": [float(v) for v in p], "ssim_per_video": [float(v) for v in s],
        "num_videos": int(video.shape[0]), "num_frames": int(video.shape[2]),
        "protocol": f"frame-wise on [0, 1], averaged over frames then videos; PSNR capped at {PSNR_CAP_DB:g} dB; "
                    f"SSIM Gaussian {SSIM_KERNEL}x{SSIM_KERNEL} sigma {SSIM_SIGMA} (VideoSys/TeaCache convention)",
    }

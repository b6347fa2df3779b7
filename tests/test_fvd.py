"""FVD: the Frechet distance itself, the pipeline (sources, resize, cache, warnings) and its one-line errors.

Pipeline tests swap the I3D for a tiny fixed detector (32x32 input) so they run in milliseconds; one end-to-end test
uses the real I3D on a few 9-frame clips.
"""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from flexivid.eval import fvd
from flexivid.eval.fvd import FVDConfig, FVDError, compute_fvd, frechet_distance


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FLEXIVID_CACHE", str(tmp_path / "cache"))


class TinyDetector(nn.Module):
    """Fixed random conv + tanh; features = per-channel mean and std: (B, 3, T, 32, 32) -> (B, 8)."""

    input_size, name, checksum = 32, "tiny-test-detector", "tiny-v1"

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(3, 4, (3, 8, 8), stride=(1, 8, 8))
        with torch.no_grad():
            gen = torch.Generator().manual_seed(0)
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=gen) * 0.05)
            self.conv.bias.zero_()

    def forward(self, x):
        y = torch.tanh(self.conv(x)).flatten(2)
        return torch.cat([y.mean(-1), y.std(-1)], dim=1)


def clips(n=24, t=4, size=32, seed=0):
    """Random float clips (n, 3, t, size, size) in [-0.5, 0.5]: room to shift brightness without clipping."""
    return torch.rand(n, 3, t, size, size, generator=torch.Generator().manual_seed(seed)) - 0.5


def fvd_cfg(**kw):
    base = dict(num_real=24, num_fake=24, num_frames=4, batch_size=8, device="cpu", progress=False)
    return FVDConfig(**{**base, **kw})


def reference_frechet(x, y):
    """Independent reference: tr((S1 S2)^1/2) via the symmetric form S1^1/2 S2 S1^1/2 and eigendecompositions."""
    mu1, mu2, s1, s2 = x.mean(0), y.mean(0), np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    w, v = np.linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = np.linalg.eigvalsh(root1 @ s2 @ root1)
    return np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.sum(np.sqrt(np.clip(inner, 0, None)))


def test_frechet_distance_matches_reference_on_gaussians():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 32))
    b = rng.normal(size=(500, 32)) @ rng.normal(size=(32, 32)) * 0.5 + 0.3
    got = frechet_distance(*fvd.feature_stats(a), *fvd.feature_stats(b))
    assert got == pytest.approx(reference_frechet(a, b), rel=1e-8)
    # 1-D closed form: (m1 - m2)^2 + (s1 - s2)^2
    assert frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4.0 + 1.0)


def test_feature_stats_are_unbiased_float64():
    x = np.random.default_rng(1).normal(size=(10, 3)).astype(np.float32)
    mu, sigma = fvd.feature_stats(x)
    centred = x.astype(np.float64) - x.mean(0, dtype=np.float64)
    assert mu.dtype == sigma.dtype == np.float64
    np.testing.assert_allclose(sigma, centred.T @ centred / 9, rtol=1e-12)


def test_frechet_distance_handles_singular_covariances():
    feats = np.random.default_rng(2).normal(size=(4, 50))  # N < D: rank-deficient covariance
    mu, sigma = fvd.feature_stats(feats)
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-6 * np.trace(sigma)


def test_fvd_of_a_set_with_itself_is_zero():
    x = clips()
    result = compute_fvd(x, x.clone(), fvd_cfg(), detector=TinyDetector())
    assert abs(result["fvd"]) < 1e-8
    assert result["n_real"] == result["n_fake"] == 24


def test_fvd_grows_monotonically_with_a_brightness_shift():
    real, det = clips(), TinyDetector()
    shifts = (0.0, 0.1, 0.2, 0.4)
    values = [compute_fvd(real, clips(seed=1) + shift, fvd_cfg(), detector=det)["fvd"] for shift in shifts]
    assert all(a < b for a, b in zip(values, values[1:])), values


def test_result_records_every_convention():
    x = clips(size=48)  # exercises the resize to the detector's input size
    result = compute_fvd(x, x, fvd_cfg(stride=1), detector=TinyDetector())
    for key in ("fvd", "protocol", "n_real", "n_fake", "frames", "stride", "resize", "resize_detail", "input_range",
                "detector", "detector_sha256", "real_stats_cache", "num_processes"):
        assert key in result
    assert result["resize"] == "bilinear" and result["frames"] == 4 and result["input_range"].startswith("[-1, 1]")
    assert result["matches_stylegan_v_fvd2048_16f"] is False
    json.dumps(result)  # JSON-ready


def test_preprocess_modes():
    video = torch.rand(2, 3, 3, 40, 80) * 2 - 1
    whole = fvd.preprocess(video, "bilinear", size=32)
    crop = fvd.preprocess(video, "center_crop", size=32)
    assert whole.shape == crop.shape == (2, 3, 3, 32, 32)
    expected = nn.functional.interpolate(video[:, :, 0], size=(32, 64), mode="bilinear", align_corners=False)
    torch.testing.assert_close(crop[:, :, 0], expected[..., 16:48])


def test_warns_with_the_number_of_clips_used():
    with pytest.warns(UserWarning, match="only 24 real clips available.*2048 requested; using 24"):
        compute_fvd(clips(), clips(seed=1), fvd_cfg(num_real=2048), detector=TinyDetector())


def test_real_statistics_are_cached_and_keyed_by_settings(tmp_path):
    path = tmp_path / "real.npz"
    np.savez(path, videos=((clips(t=8).permute(0, 2, 3, 4, 1) + 1) * 127.5).round().to(torch.uint8).numpy())
    det, fake = TinyDetector(), clips(seed=3, t=8)
    first = compute_fvd(path, fake, fvd_cfg(), detector=det)
    second = compute_fvd(path, fake, fvd_cfg(), detector=det)
    other_stride = compute_fvd(path, fake, fvd_cfg(stride=2), detector=det)
    statuses = [r["real_stats_cache"] for r in (first, second, other_stride)]
    assert statuses == ["miss", "hit", "miss"]
    assert second["fvd"] == first["fvd"]
    assert compute_fvd(path, fake, fvd_cfg(use_cache=False), detector=det)["real_stats_cache"] == "off"


def test_dataset_source_with_stride():
    det, cfg = TinyDetector(), fvd_cfg(num_real=8, num_fake=8, num_frames=4, stride=2)
    same = compute_fvd("synthetic:train:height=32,width=32", "synthetic:train:height=32,width=32", cfg, detector=det)
    other = compute_fvd("synthetic:train:height=32,width=32", "synthetic:test:height=32,width=32", cfg, detector=det)
    assert abs(same["fvd"]) < 1e-8 < other["fvd"]
    assert same["protocol"] == "fvd8_4f_stride2"
    with pytest.raises(FVDError, match="dataset option 'colour=red'"):
        compute_fvd("synthetic:train:colour=red", clips(), cfg, detector=det)


@pytest.mark.slow  # the real I3D on real clips
def test_end_to_end_with_the_real_i3d(tmp_path):
    """Default detector on uint8 npz input: the FVD is the Frechet distance of the I3D logits of the clips mapped to
    [-1, 1] and resized whole-frame to 224 bilinear, computed here independently (a wrong range, resize or detector
    gives another number); the fp16 export of the weights moves logits by < 0.5% and this FVD by < 1%."""
    import torch.nn.functional as F

    from flexivid.eval.i3d import export_weights, load_i3d

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, size=(2, 9, 48, 48, 3), dtype=np.uint8)
    b = (a // 2 + 64).astype(np.uint8)  # a duller copy
    np.savez(tmp_path / "a.npz", a)
    np.savez(tmp_path / "b.npz", b)
    cfg = FVDConfig(num_real=2, num_fake=2, num_frames=9, batch_size=2, device="cpu", progress=False)
    result = compute_fvd(tmp_path / "a.npz", tmp_path / "b.npz", cfg)
    assert result["detector_sha256"].startswith("af5c50f0") and "400-d" in result["detector"]
    det = load_i3d("cpu")

    def logits(x, detector):
        v = torch.from_numpy(x).float().div(127.5).sub(1.0)  # (N, T, H, W, 3) in [-1, 1]
        frames = F.interpolate(v.flatten(0, 1).permute(0, 3, 1, 2), size=(224, 224), mode="bilinear",
                               align_corners=False)
        with torch.inference_mode():
            return detector(frames.reshape(2, 9, 3, 224, 224).permute(0, 2, 1, 3, 4)).double().numpy()

    la, lb = logits(a, det), logits(b, det)
    expected = frechet_distance(*fvd.feature_stats(la), *fvd.feature_stats(lb))
    assert result["fvd"] == pytest.approx(expected, rel=1e-4) and result["fvd"] > 1.0  # float32 conv round-off
    half = load_i3d("cpu", weights=str(export_weights(tmp_path / "i3d16.safetensors", torch.float16)))
    assert half.checksum.endswith("-float16")  # cached real statistics of the two never mix
    ha, hb = logits(a, half), logits(b, half)
    assert np.abs(ha - la).max() < 5e-3 * np.abs(la).max()  # fp16 storage: ~0.2% of the largest logit
    assert frechet_distance(*fvd.feature_stats(ha), *fvd.feature_stats(hb)) == pytest.approx(expected, rel=1e-2)


# ---------------------------------------------------------------------------------------------------- bad input

def test_clip_shorter_than_the_frame_count():
    with pytest.raises(FVDError, match="have 10 frames, need 16"):
        compute_fvd(clips(t=10), clips(t=10), fvd_cfg(num_frames=16), detector=TinyDetector())


def noise_frames(t, h, w, seed=0):
    # Random content: GIF writers merge identical consecutive frames, which would change the frame count.
    return np.random.default_rng(seed).integers(0, 256, size=(t, h, w, 3), dtype=np.uint8)


def test_video_file_shorter_than_the_frame_count(tmp_path):
    from flexivid.video_io import write_video

    write_video(tmp_path / "ok.gif", noise_frames(20, 32, 32))
    write_video(tmp_path / "short.gif", noise_frames(10, 32, 32))
    with pytest.raises(FVDError, match=r"short\.gif has 10 frames, need 16.*lower --num-frames"):
        compute_fvd(tmp_path, clips(t=16), fvd_cfg(num_real=2, num_frames=16), detector=TinyDetector())


def test_empty_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("no videos here")
    with pytest.raises(FVDError, match="no videos .* found in folder"):
        compute_fvd(tmp_path, clips(), fvd_cfg(), detector=TinyDetector())


def test_mismatched_resolutions_name_both_files(tmp_path):
    from flexivid.video_io import write_video

    write_video(tmp_path / "a.gif", noise_frames(4, 32, 32))
    write_video(tmp_path / "b.gif", noise_frames(4, 48, 32))
    with pytest.raises(FVDError, match=r"a\.gif is 32x32 but .*b\.gif is 48x32"):
        compute_fvd(tmp_path, clips(), fvd_cfg(num_real=2), detector=TinyDetector())


def test_float_range_checks():
    with pytest.raises(FVDError, match=r"looks like \[0, 1\]"):
        compute_fvd(clips() + 0.5, clips(), fvd_cfg(), detector=TinyDetector())
    with pytest.raises(FVDError, match=r"expected \[-1, 1\]"):
        compute_fvd(clips() * 255, clips(), fvd_cfg(), detector=TinyDetector())
    # Small overshoots of generated videos are clamped, as saving them to uint8 would.
    x = clips() * 2.4  # [-1.2, 1.2]
    same = compute_fvd(x, x.clamp(-1, 1).double(), fvd_cfg(), detector=TinyDetector())["fvd"]
    assert abs(same) < 1e-8


def test_unknown_source_and_bad_settings():
    with pytest.raises(FVDError, match="not an existing folder"):
        compute_fvd("does/not/exist", clips(), fvd_cfg(), detector=TinyDetector())
    with pytest.raises(FVDError, match="resize 'area'"):
        compute_fvd(clips(), clips(), fvd_cfg(resize="area"), detector=TinyDetector())
    with pytest.raises(FVDError, match="too few for I3D"):
        compute_fvd(clips(), clips(), fvd_cfg(num_frames=4))


def _cli():
    spec = importlib.util.spec_from_file_location("eval_fvd", Path(__file__).parents[1] / "tools" / "eval_fvd.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    rc = _cli().main(["--real", str(tmp_path), "--fake", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and err.startswith("error: no videos") and "\n" not in err


def test_cli_help_lists_the_convention(capsys):
    with pytest.raises(SystemExit):
        _cli().main(["--help"])
    out = capsys.readouterr().out
    assert "fvd2048_16f" in out and "center_crop" in out and "bilinear" in out


@pytest.mark.parametrize("damage", [b"", b"PK\x03\x04 cut short", None])
def test_damaged_statistics_cache_is_rebuilt_with_a_warning(tmp_path, damage):
    path = tmp_path / "real.npz"
    np.savez(path, videos=((clips(t=8).permute(0, 2, 3, 4, 1) + 1) * 127.5).round().to(torch.uint8).numpy())
    det, fake = TinyDetector(), clips(seed=3, t=8)
    first = compute_fvd(path, fake, fvd_cfg(), detector=det)
    (cached,) = (fvd_cache := Path(fvd.os.environ["FLEXIVID_CACHE"]) / "fvd_stats").glob("*.npz")
    if damage is None:  # a readable file with wrong contents: NaN covariance
        np.savez(cached, mu=np.zeros(4), sigma=np.full((4, 4), np.nan), n=2)
    else:
        cached.write_bytes(damage)
    with pytest.warns(UserWarning, match=r"cached real-set statistics .* recomputing"):
        again = compute_fvd(path, fake, fvd_cfg(), detector=det)
    assert again["real_stats_cache"] == "miss" and again["fvd"] == first["fvd"]
    assert compute_fvd(path, fake, fvd_cfg(), detector=det)["real_stats_cache"] == "hit"  # rewritten whole
    assert len(list(fvd_cache.glob("*.npz"))) == 1

"""Frechet Video Distance with the StyleGAN-V ``fvd2048_16f`` conventions by default.

Protocol (every item is recorded in the result dict, because each one moves the number):
- clips: ``num_frames`` (16) consecutive frames (``stride`` 1) from the start of each video; the first
  ``num_real`` / ``num_fake`` (2048 each) videos in sorted file order (or dataset/array order);
- resize: the WHOLE frame to 224x224, bilinear, no antialias, no crop (TF reference / StyleGAN-V / cd-fvd).
  ``resize="center_crop"`` instead scales the short side to 224 and centre-crops (VideoGPT); it reads ~+27% higher
  on downscaled clips, so never compare numbers across the two;
- input RGB in ``[-1, 1]`` (uint8 ``x / 127.5 - 1``; float overshoots up to 1.5 are clamped, [0, 1]-looking or
  [0, 255] floats are refused); features = the 400 I3D Kinetics logits before softmax;
- statistics: mean and unbiased covariance (``/(N-1)``) in float64; Frechet distance in float64 with a stable
  matrix square root. One process, order-independent, TF32 off (on an H100, TF32 moved I3D logits by up to 0.02;
  without it GPU and CPU logits agree to 2e-5).

Inputs ("sources"): a folder of videos, a ``.npz``/``.pt`` file with a uint8 ``(N, T, H, W, 3)`` or float
``(N, 3, T, H, W)`` array in [-1, 1], a dataset name (``synthetic:train``, ``synthetic:test``, with optional
DataConfig overrides ``synthetic:test:height=128,width=128``), or an in-memory array/tensor (Python API only).
Real-set statistics are cached (npz) under a key that hashes everything that changes them.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F

from ..fileio import atomic_write

RESIZE_MODES = ("bilinear", "center_crop")
RESIZE_DETAIL = {
    "bilinear": "whole frame -> 224x224, bilinear (align_corners=False), no antialias, no crop",
    "center_crop": "short side -> 224, bilinear (align_corners=False), no antialias, then centre crop 224x224",
}
VIDEO_SUFFIXES = (".mp4", ".avi", ".gif", ".mov", ".mkv", ".webm")
ARRAY_SUFFIXES = (".npz", ".pt", ".pth")
DATASETS = ("synthetic",)
_CACHE_VERSION = 1


class FVDError(ValueError):
    """Bad FVD input or a numerically invalid result; the message is one line naming the problem and the fix."""


@dataclass
class FVDConfig:
    """Settings of one FVD computation; the defaults are StyleGAN-V's ``fvd2048_16f``."""

    num_real: int = 2048
    num_fake: int = 2048
    num_frames: int = 16
    stride: int = 1  # temporal subsampling; match the generator's frame interval (Latte#115)
    resize: str = "bilinear"  # bilinear | center_crop
    batch_size: int = 16
    device: str | None = None  # None: cuda when available, else cpu
    use_cache: bool = True  # cache real-set statistics
    progress: bool = True
    num_workers: int = 4  # threads decoding videos from a folder

    def validate(self) -> None:
        if self.resize not in RESIZE_MODES:
            raise FVDError(f"resize '{self.resize}' is not one of {', '.join(RESIZE_MODES)}")
        for name in ("num_real", "num_fake", "num_frames", "stride", "batch_size", "num_workers"):
            low = 2 if name in ("num_real", "num_fake") else 1  # a covariance needs two clips
            if getattr(self, name) < low:
                raise FVDError(f"{name} must be >= {low}, got {getattr(self, name)} "
                               "(fvd2048_16f: 2048 clips, 16 frames)")


# ---- Statistics and the Frechet distance --------------------------------------------------------------------

def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(N, D)`` features -> mean ``(D,)`` and unbiased covariance ``(D, D)`` (``/(N-1)``), float64."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise FVDError(f"feature statistics need (N >= 2, D) features, got shape {features.shape}; use more clips")
    return features.mean(axis=0), np.cov(features, rowvar=False, ddof=1)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Frechet distance ``|mu1-mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))`` between two Gaussians, in float64.

    If ``sqrtm`` returns non-finite values (near-singular product, e.g. fewer clips than feature dimensions) it is
    retried with ``eps * I`` added to both covariances. Round-off gives ``sqrtm`` a tiny imaginary part, which is
    dropped; a large one means the covariances are not positive semi-definite and raises ``FVDError``.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise FVDError(f"statistics shapes differ: mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape} vs "
                       f"{sigma2.shape}; compute both sets with the same detector")
    diff = mu1 - mu2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "singular matrix" notes; finiteness is checked below
        covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            offset = np.eye(d) * eps
            covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if not np.isfinite(covmean).all():
        raise FVDError("matrix square root is not finite even with an eps offset; check features for NaN/inf")
    if np.iscomplexobj(covmean):
        imag = float(np.abs(covmean.imag).max())
        if imag > 1e-3 * max(1.0, float(np.abs(covmean.real).max())):
            raise FVDError(f"matrix square root has a large imaginary component ({imag:.3g}); the covariances are "
                           "not positive semi-definite (NaN features or too few clips?)")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


# ---- Preprocessing ------------------------------------------------------------------------------------------

def preprocess(video: torch.Tensor, resize: str = "bilinear", size: int = 224) -> torch.Tensor:
    """``(B, 3, T, H, W)`` in [-1, 1] -> ``(B, 3, T, size, size)`` float32, resized per frame (see RESIZE_DETAIL)."""
    if resize not in RESIZE_MODES:
        raise FVDError(f"resize '{resize}' is not one of {', '.join(RESIZE_MODES)}")
    b, c, t, h, w = video.shape
    frames = video.float().permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
    if resize == "bilinear":
        out_hw = (size, size)
    else:
        scale = size / min(h, w)
        out_hw = (max(size, round(h * scale)), max(size, round(w * scale)))
    if (h, w) != out_hw:
        frames = F.interpolate(frames, size=out_hw, mode="bilinear", align_corners=False, antialias=False)
    if resize == "center_crop":
        top, left = (out_hw[0] - size) // 2, (out_hw[1] - size) // 2
        frames = frames[:, :, top:top + size, left:left + size]
    return frames.reshape(b, t, c, size, size).permute(0, 2, 1, 3, 4).contiguous()


# ---- Sources: where clips come from -------------------------------------------------------------------------

def _uint8_to_clip(frames) -> torch.Tensor:
    """``uint8 (T, H, W, 3)`` numpy array or tensor -> float32 ``(3, T, H, W)`` in [-1, 1]."""
    frames = torch.from_numpy(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
    return frames.permute(3, 0, 1, 2).float().div(127.5).sub(1.0)


def _stat(path: Path) -> list:
    st = path.stat()
    return [str(path), st.st_size, st.st_mtime_ns]


# Every source has ``spec`` (what the user passed), ``identity`` (JSON-able description of the content for the
# stats cache key; None = never cached), ``len()``, and ``clips(n, cfg)`` yielding ``(label, (3, T, H, W) float clip
# in [-1, 1])`` for the first ``min(n, len)`` items, ``label`` naming the file/item in error messages.

class _FolderSource:
    def __init__(self, root: Path):
        self.spec = str(root)
        self.files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
        if not self.files:
            raise FVDError(f"no videos ({', '.join(VIDEO_SUFFIXES)}) found in folder {root}; point at the folder "
                           "that holds the clips")
        self.identity = {"kind": "folder", "path": str(root.resolve()),
                         "files": [[str(p.relative_to(root)), *_stat(p)[1:]] for p in self.files]}

    def __len__(self) -> int:
        return len(self.files)

    def clips(self, n, cfg):
        from flexivid.video_io import VideoReadError, read_video

        def read(path: Path) -> np.ndarray:
            try:
                return read_video(path, num_frames=cfg.num_frames, stride=cfg.stride)
            except VideoReadError as e:
                raise FVDError(f"{e}; lower --num-frames/--stride or remove the file") from None

        files = self.files[:n]
        # Decode a batch at a time on a few threads (PyAV/decord release the GIL); order is kept.
        with ThreadPoolExecutor(max_workers=cfg.num_workers) as pool:
            for i in range(0, len(files), cfg.batch_size):
                chunk = files[i:i + cfg.batch_size]
                for path, frames in zip(chunk, pool.map(read, chunk)):
                    if frames.shape[0] != cfg.num_frames:
                        raise FVDError(f"{path} gave {frames.shape[0]} frames, need {cfg.num_frames} at stride "
                                       f"{cfg.stride}; lower --num-frames/--stride or remove the file")
                    yield str(path), _uint8_to_clip(frames)


class _ArraySource:
    """uint8 ``(N, T, H, W, 3)`` or float ``(N, 3, T, H, W)`` in [-1, 1], from a file or memory."""

    def __init__(self, data, spec: str, identity=None):
        self.spec, self.identity = spec, identity
        data = torch.as_tensor(data) if isinstance(data, np.ndarray) else data
        if not isinstance(data, torch.Tensor) or data.ndim != 5:
            raise FVDError(f"{spec}: expected a 5-D array, uint8 (N, T, H, W, 3) or float (N, 3, T, H, W) in [-1, 1], "
                           f"got {getattr(data, 'shape', type(data).__name__)}")
        if data.dtype == torch.uint8:
            if data.shape[-1] != 3:
                raise FVDError(f"{spec}: uint8 videos must be (N, T, H, W, 3), got {tuple(data.shape)}")
            self.time_axis = 1
        elif data.is_floating_point():
            if data.shape[1] != 3:
                raise FVDError(f"{spec}: float videos must be (N, 3, T, H, W) in [-1, 1], got {tuple(data.shape)}")
            lo, hi = float(data.min()), float(data.max())
            if lo < -1.5 or hi > 1.5:  # not a small overshoot: [0, 255] pixels or unscaled latents
                raise FVDError(f"{spec}: float values span [{lo:.3g}, {hi:.3g}], expected [-1, 1]; "
                               "store uint8 frames or map to x / 127.5 - 1")
            if lo >= 0.0:
                raise FVDError(f"{spec}: float values span [{lo:.3g}, {hi:.3g}], which looks like [0, 1]; FVD "
                               "expects [-1, 1] (map with x * 2 - 1), [0, 1] input reads ~47% too low")
            self.time_axis = 2
        else:
            raise FVDError(f"{spec}: dtype {data.dtype} unsupported; use uint8 frames or float in [-1, 1]")
        self.data = data

    @classmethod
    def from_file(cls, path: Path) -> "_ArraySource":
        try:
            if path.suffix.lower() == ".npz":
                with np.load(path, allow_pickle=False) as npz:
                    data = dict(npz) if len(npz.files) > 1 else npz[npz.files[0]]
            else:  # weights_only: a .pt file cannot run code while loading
                data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # zip/pickle/torch errors: corrupt file or wrong format
            raise FVDError(f"cannot load {path}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}; "
                           "save videos with np.savez(path, videos=array) or torch.save(tensor, path)") from None
        if isinstance(data, dict):
            if "videos" not in data:
                raise FVDError(f"{path} holds {sorted(data)}; store the videos alone or under the name 'videos'")
            data = data["videos"]
        return cls(data, str(path), {"kind": "file", "file": _stat(path.resolve())})

    def __len__(self) -> int:
        return self.data.shape[0]

    def clips(self, n, cfg):
        length = self.data.shape[self.time_axis]
        need = (cfg.num_frames - 1) * cfg.stride + 1
        if length < need:
            raise FVDError(f"{self.spec}: videos have {length} frames, need {need} ({cfg.num_frames} frames at "
                           f"stride {cfg.stride}); lower --num-frames/--stride")
        idx = torch.arange(0, need, cfg.stride, device=self.data.device)  # tensors may live on the GPU
        for i in range(min(n, len(self))):
            clip = self.data[i].index_select(self.time_axis - 1, idx)
            # Generated float videos may overshoot [-1, 1] a little; clamp as writing them to uint8 would.
            yield f"{self.spec}[{i}]", _uint8_to_clip(clip) if clip.dtype == torch.uint8 else clip.float().clamp(-1, 1)


class _DatasetSource:
    """``synthetic:<split>[:key=value,...]`` -> SyntheticVideoDataset with DataConfig overrides."""

    def __init__(self, spec: str, n: int, cfg: FVDConfig):
        from flexivid.config import DataConfig

        parts = spec.split(":")
        name, split = parts[0], parts[1] if len(parts) > 1 else ""
        options = parts[2] if len(parts) > 2 else ""
        if name not in DATASETS or split not in ("train", "test") or len(parts) > 3:
            raise FVDError(f"dataset '{spec}' unknown; use synthetic:train or synthetic:test[:key=value,...]")
        # Frames, split and clip count come from the FVD settings so they cannot disagree with them. The stride is
        # applied here, to (num_frames - 1) * stride + 1 rendered frames, exactly as for video files.
        settable = [f.name for f in dataclasses.fields(DataConfig)
                    if f.name not in ("name", "split", "num_frames", "frame_stride", "num_clips")]
        self.span = (cfg.num_frames - 1) * cfg.stride + 1
        kwargs = dict(name=name, split=split, num_frames=self.span, frame_stride=1, num_clips=n)
        for item in filter(None, options.split(",")):
            key, _, value = item.partition("=")
            if key not in settable or not value:
                raise FVDError(f"dataset option '{item}' in '{spec}' invalid; use key=value with keys "
                               f"{', '.join(settable)}")
            kwargs[key] = int(value) if value.lstrip("-").isdigit() else value
        from flexivid.data import synthetic

        self.spec, self.config = spec, DataConfig(**kwargs)
        try:
            self.dataset = synthetic.SyntheticVideoDataset(self.config)
        except ValueError as e:  # the dataset's own one-line config errors
            raise FVDError(f"dataset '{spec}': {e}") from None
        self.identity = {"kind": "dataset", "config": dataclasses.asdict(self.config),
                         "code": _stat(Path(synthetic.__file__))}  # renderer edits change the data

    def __len__(self) -> int:
        return len(self.dataset)

    def clips(self, n, cfg):
        for i in range(min(n, len(self))):
            clip = self.dataset[i]["video"]
            if clip.shape[1] != self.span:
                raise FVDError(f"{self.spec}[{i}] has {clip.shape[1]} frames, expected {self.span}")
            yield f"{self.spec}[{i}]", clip[:, ::cfg.stride].float()


def open_source(src, n: int, cfg: FVDConfig):
    """Resolve a folder / .npz / .pt path, a dataset name, or an in-memory array/tensor into a clip source."""
    if isinstance(src, (np.ndarray, torch.Tensor)):
        return _ArraySource(src, f"<array {tuple(src.shape)}>")
    path = Path(os.fspath(src))
    if path.is_dir():
        return _FolderSource(path)
    if path.is_file():
        if path.suffix.lower() in ARRAY_SUFFIXES:
            return _ArraySource.from_file(path)
        raise FVDError(f"{path} is a single file; pass a folder of videos or a {'/'.join(ARRAY_SUFFIXES)} array file")
    if str(src).split(":")[0] in DATASETS:
        return _DatasetSource(str(src), n, cfg)
    raise FVDError(f"'{src}' is not an existing folder, a {'/'.join(ARRAY_SUFFIXES)} file, or a dataset name "
                   f"(synthetic:train, synthetic:test)")


# ---- Features and FVD ---------------------------------------------------------------------------------------

@contextlib.contextmanager
def _no_tf32():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def extract_features(source, n: int, cfg: FVDConfig, detector, device: torch.device,
                     desc: str = "clips") -> np.ndarray:
    """Detector features ``(min(n, len(source)), D)`` float64; checks that all clips share one resolution."""
    from tqdm import tqdm

    total, feats, batch, first = min(n, len(source)), [], [], None

    def flush():
        x = preprocess(torch.stack(batch).to(device), cfg.resize, detector.input_size)
        feats.append(detector(x).double().cpu().numpy())
        batch.clear()

    with _no_tf32(), torch.inference_mode(), tqdm(total=total, desc=desc, disable=not cfg.progress) as bar:
        for label, clip in source.clips(total, cfg):
            if first is None:
                first = (label, tuple(clip.shape[-2:]))
            elif tuple(clip.shape[-2:]) != first[1]:
                raise FVDError(f"mixed resolutions in one set: {first[0]} is {first[1][0]}x{first[1][1]} but "
                               f"{label} is {clip.shape[-2]}x{clip.shape[-1]}; resize the set to one resolution")
            batch.append(clip)
            if len(batch) == cfg.batch_size:
                flush()
            bar.update(1)
        if batch:
            flush()
    return np.concatenate(feats) if feats else np.zeros((0, 0))


def _stats_for(source, n: int, cfg: FVDConfig, detector, device: torch.device, which: str,
               cache: bool) -> tuple[np.ndarray, np.ndarray, int, str]:
    """Mean, covariance, clip count and cache status ('hit' | 'miss' | 'off') for one opened source."""
    if len(source) < n:
        warnings.warn(f"FVD: only {len(source)} {which} clips available in {source.spec}, {n} requested; using "
                      f"{len(source)} (fewer clips bias FVD upwards; report the count)", stacklevel=3)
    path = None
    if cache and source.identity is not None:
        from flexivid.eval.i3d import cache_dir

        key = {"version": _CACHE_VERSION, "source": source.identity, "frames": cfg.num_frames, "stride": cfg.stride,
               "resize": cfg.resize, "num_requested": n, "detector": getattr(detector, "checksum", None),
               "input_size": detector.input_size}
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
        path = cache_dir() / "fvd_stats" / f"{digest}.npz"
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    mu, sigma, count = z["mu"], z["sigma"], int(z["n"])
                if mu.ndim == 1 and sigma.shape == (mu.size, mu.size) and np.isfinite(sigma).all() and count >= 2:
                    return mu, sigma, count, "hit"
                problem = "holds invalid statistics"
            except Exception as e:  # noqa: BLE001 - zip, pickle and key errors all mean a damaged cache file
                problem = f"is unreadable ({type(e).__name__})"
            warnings.warn(f"FVD: cached {which}-set statistics {path} {problem}; recomputing them", stacklevel=3)
            path.unlink(missing_ok=True)
    feats = extract_features(source, n, cfg, detector, device, desc=f"{which} features")
    mu, sigma = feature_stats(feats)
    if path is not None:
        atomic_write(path, lambda tmp: np.savez(tmp, mu=mu, sigma=sigma, n=feats.shape[0]))
    return mu, sigma, feats.shape[0], "miss" if path is not None else "off"


def compute_fvd(real, fake, cfg: FVDConfig | None = None, detector=None) -> dict[str, Any]:
    """FVD between two clip sources (see ``open_source``), returning the value and every convention setting.

    ``detector`` defaults to the Kinetics-400 I3D; any ``nn.Module`` mapping ``(B, 3, T, S, S)`` in [-1, 1] to
    ``(B, D)`` with attributes ``input_size`` (S), ``name`` and ``checksum`` can stand in (tests use a tiny one).
    """
    cfg = cfg or FVDConfig()
    cfg.validate()
    try:
        device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    except RuntimeError:
        raise FVDError(f"device {cfg.device!r} is not a torch device; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise FVDError(f"device {cfg.device!r}: no CUDA device is available here; use cpu")
    if detector is None:
        from flexivid.eval.i3d import MIN_FRAMES, load_i3d

        if cfg.num_frames < MIN_FRAMES:
            raise FVDError(f"num_frames {cfg.num_frames} is too few for I3D; use >= {MIN_FRAMES} (16 for fvd2048_16f)")
    # Open both sets first so a bad --fake fails before the detector loads and minutes of feature extraction.
    real_src, fake_src = open_source(real, cfg.num_real, cfg), open_source(fake, cfg.num_fake, cfg)
    detector = load_i3d(device) if detector is None else detector.to(device).eval()
    mu_r, sig_r, n_real, cached = _stats_for(real_src, cfg.num_real, cfg, detector, device, "real", cfg.use_cache)
    mu_f, sig_f, n_fake, _ = _stats_for(fake_src, cfg.num_fake, cfg, detector, device, "fake", False)
    protocol = f"fvd{n_fake}_{cfg.num_frames}f" + (f"_stride{cfg.stride}" if cfg.stride > 1 else "")
    return {
        "fvd": frechet_distance(mu_r, sig_r, mu_f, sig_f),
        "protocol": protocol + ("_centercrop" if cfg.resize == "center_crop" else ""),
        "matches_stylegan_v_fvd2048_16f": (n_real, n_fake, cfg.num_frames, cfg.stride, cfg.resize)
        == (2048, 2048, 16, 1, "bilinear"),
        "n_real": n_real, "n_fake": n_fake, "num_real_requested": cfg.num_real, "num_fake_requested": cfg.num_fake,
        "frames": cfg.num_frames, "stride": cfg.stride, "clip_start": 0,
        "resize": cfg.resize, "resize_detail": RESIZE_DETAIL[cfg.resize].replace("224", str(detector.input_size)),
        "input_range": "[-1, 1] (uint8 / 127.5 - 1)",
        "features": "detector output (I3D: 400-d Kinetics logits, pre-softmax)",
        "statistics": "mean + unbiased covariance (N-1), float64; Frechet distance float64 (scipy sqrtm)",
        "detector": getattr(detector, "name", type(detector).__name__),
        "detector_sha256": getattr(detector, "checksum", None),
        "real": real_src.spec, "fake": fake_src.spec,
        "real_stats_cache": cached, "device": str(device), "num_processes": 1, "tf32": False,
    }

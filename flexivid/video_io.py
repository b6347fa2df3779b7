"""Video files on disk <-> uint8 numpy arrays, and uint8 <-> the package's float video tensors.

On disk and in this module a video is ``uint8 (T, H, W, 3)`` RGB. Inside the package a clip is a float
tensor ``(3, T, H, W)`` in ``[-1, 1]``; ``to_uint8`` / ``from_uint8`` convert between the two.

Writing picks the format from the suffix: ``.mp4`` (H.264 yuv420p via PyAV), ``.gif`` (pillow, because PyAV's gif
encoder fails) or ``.png`` (all frames tiled into one grid image). Every write goes to a temporary file in the
target folder and is then renamed over the target, so a crash never leaves a half-written video behind.
Reading uses decord (fast seeking) and falls back to PyAV; any failure becomes a one-line ``VideoReadError``.
"""
from __future__ import annotations

import math
import os
from fractions import Fraction

import numpy as np
import torch

from .fileio import atomic_write

# Constant-rate-factor for libx264: 0 is lossless, 23 is ffmpeg's default. 12 keeps write->read round trips
# within a few grey levels (chroma subsampling of yuv420p is the larger error at sharp colour edges).
MP4_CRF = 12
GRID_COLUMNS = 8  # frames per row in a .png frame grid


class VideoReadError(RuntimeError):
    """A video could not be decoded, or has fewer frames than requested. The message is one line."""


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise ValueError(f"write_video expects uint8 frames of shape (T, H, W, 3) with T >= 1, got "
                         f"{frames.dtype} {tuple(frames.shape)}; convert float clips with video_io.to_uint8")
    return np.ascontiguousarray(frames)


def _write_mp4(tmp: str, frames: np.ndarray, fps: float) -> None:
    import av

    t, h, w, _ = frames.shape
    if h % 2 or w % 2:
        # yuv420p stores chroma at half resolution, so libx264 rejects odd sizes.
        raise ValueError(f"mp4 (H.264 yuv420p) needs even height and width, got {h}x{w}; "
                         f"crop/pad the frames or write .gif/.png instead")
    with av.open(tmp, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001),
                                      options={"crf": str(MP4_CRF)})
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))  # flush the encoder's delayed frames


def _write_gif(tmp: str, frames: np.ndarray, fps: float) -> None:
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    # GIF timing is in milliseconds per frame; loop=0 repeats forever.
    images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                   duration=max(1, round(1000 / fps)), loop=0)


def frame_grid(frames: np.ndarray, columns: int = GRID_COLUMNS) -> np.ndarray:
    """Tile ``uint8 (T, H, W, 3)`` frames row by row into one ``uint8 (rows*H, cols*W, 3)`` image (black fill)."""
    t, h, w, _ = frames.shape
    cols = min(columns, t)
    rows = math.ceil(t / cols)
    grid = np.zeros((rows * h, cols * w, 3), dtype=np.uint8)
    for i, frame in enumerate(frames):
        r, c = divmod(i, cols)
        grid[r * h:(r + 1) * h, c * w:(c + 1) * w] = frame
    return grid


def _write_png(tmp: str, frames: np.ndarray, fps: float) -> None:
    from PIL import Image

    Image.fromarray(frame_grid(frames)).save(tmp, format="PNG")


_WRITERS = {".mp4": _write_mp4, ".gif": _write_gif, ".png": _write_png}


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float = 8) -> None:
    """Write ``uint8 (T, H, W, 3)`` RGB frames to ``path``; the suffix (.mp4, .gif, .png) picks the format.

    The file appears atomically: it is written to a temporary name in the same folder and renamed at the end.
    """
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in _WRITERS:
        raise ValueError(f"cannot write video '{path}': unknown suffix '{suffix}' (use one of {', '.join(_WRITERS)})")
    frames = _check_frames(frames)
    atomic_write(path, lambda tmp: _WRITERS[suffix](tmp, frames, fps))


def _indices(total: int, num_frames: int | None, stride: int, start: int, path: str) -> list[int]:
    if stride < 1 or start < 0:
        raise ValueError(f"read_video needs stride >= 1 and start >= 0, got stride={stride}, start={start}")
    if num_frames is None:
        idx = list(range(start, total, stride))
    else:
        idx = list(range(start, start + num_frames * stride, stride))
    if not idx or idx[-1] >= total:
        need = (start + (num_frames - 1) * stride + 1) if num_frames else start + 1
        raise VideoReadError(f"video too short: {path} has {total} frames, need {need} "
                             f"(num_frames={num_frames}, stride={stride}, start={start})")
    return idx


def _decord_reader(path: str):
    import decord

    # Our own errors report failures; decord's bundled ffmpeg would also print them to stderr.
    decord.logging.set_level(decord.logging.QUIET)
    return decord.VideoReader(path, ctx=decord.cpu(0))


def _pyav_decode(path: str, stop: int | None = None) -> np.ndarray:
    """Decode frames ``[0, stop)`` (all when ``stop`` is None) with PyAV as ``uint8 (T, H, W, 3)``."""
    import av

    frames = []
    with av.open(path) as container:
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            if stop is not None and len(frames) >= stop:
                break
    if not frames:
        raise ValueError("no decodable video frames")
    return np.stack(frames)


def _check_readable(path: str) -> None:
    if not os.path.isfile(path):
        raise VideoReadError(f"cannot read video: file not found: {path}")


def _decode_error(path: str, e: Exception) -> VideoReadError:
    first_line = str(e).splitlines()[0] if str(e) else ""
    return VideoReadError(f"cannot read video {path}: {type(e).__name__}: {first_line} (corrupt or unsupported file)")


def num_video_frames(path: str | os.PathLike) -> int:
    """Number of frames in a video file (decord's index, else a full PyAV decode)."""
    path = os.fspath(path)
    _check_readable(path)
    try:
        return len(_decord_reader(path))
    except Exception:  # decord raises its own error types; PyAV gets a second opinion
        pass
    try:
        return len(_pyav_decode(path))
    except Exception as e:
        raise _decode_error(path, e) from e


def read_video(path: str | os.PathLike, num_frames: int | None = None, stride: int = 1,
               start: int = 0) -> np.ndarray:
    """Read frames ``start, start + stride, ...`` (``num_frames`` of them, or to the end) as ``uint8 (T, H, W, 3)``.

    Raises ``VideoReadError`` if the file is missing, cannot be decoded, or is too short for the request.
    """
    path = os.fspath(path)
    _check_readable(path)
    try:
        reader = _decord_reader(path)
        idx = _indices(len(reader), num_frames, stride, start, path)
        return reader.get_batch(idx).asnumpy()
    except VideoReadError:
        raise
    except Exception:  # decord could not open or seek: decode sequentially with PyAV instead
        pass
    try:
        stop = None if num_frames is None else start + (num_frames - 1) * stride + 1
        frames = _pyav_decode(path, stop)
    except Exception as e:
        raise _decode_error(path, e) from e
    return frames[_indices(len(frames), num_frames, stride, start, path)]


def to_uint8(video: torch.Tensor) -> np.ndarray:
    """Float clip ``(3, T, H, W)`` in ``[-1, 1]`` -> ``uint8 (T, H, W, 3)`` numpy (values outside are clipped)."""
    if video.ndim != 4 or video.shape[0] != 3:
        raise ValueError(f"to_uint8 expects a clip of shape (3, T, H, W), got {tuple(video.shape)}")
    v = ((video.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return v.permute(1, 2, 3, 0).cpu().numpy()


def from_uint8(frames: np.ndarray) -> torch.Tensor:
    """``uint8 (T, H, W, 3)`` frames -> float32 clip ``(3, T, H, W)`` in ``[-1, 1]`` (inverse of ``to_uint8``)."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"from_uint8 expects uint8 frames (T, H, W, 3), got {frames.dtype} {tuple(frames.shape)}")
    return torch.from_numpy(frames).permute(3, 0, 1, 2).float().div(127.5).sub(1.0).contiguous()

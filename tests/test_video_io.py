"""flexivid.video_io: mp4/gif/png writing, decord/PyAV reading, uint8 <-> float conversion."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

from flexivid import video_io
from flexivid.config import DataConfig
from flexivid.data.synthetic import SyntheticVideoDataset
from flexivid.video_io import VideoReadError, from_uint8, read_video, to_uint8, write_video


@pytest.fixture(scope="module")
def frames():
    """A real synthetic clip (sharp coloured object on a flat background), uint8 (16, 64, 64, 3)."""
    return to_uint8(SyntheticVideoDataset(DataConfig(num_frames=16, height=64, width=64))[0]["video"])


def test_to_from_uint8_round_trip(frames):
    assert frames.dtype == np.uint8 and frames.shape == (16, 64, 64, 3)
    video = from_uint8(frames)
    assert video.shape == (3, 16, 64, 64) and video.dtype == torch.float32
    assert video.min() >= -1 and video.max() <= 1
    np.testing.assert_array_equal(to_uint8(video), frames)
    assert to_uint8(torch.full((3, 1, 2, 2), 5.0)).max() == 255  # out-of-range values clip


def test_mp4_round_trip(tmp_path, frames):
    path = tmp_path / "clip.mp4"
    write_video(path, frames, fps=8)
    back = read_video(path)
    assert back.shape == frames.shape and back.dtype == np.uint8
    err = np.abs(back.astype(int) - frames.astype(int))
    assert err.mean() < 3.0, err.mean()  # H.264 at crf 12; chroma subsampling only blurs the colour edges
    assert np.median(err) <= 2
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]  # the temporary file was renamed away


def test_read_with_stride_and_start(tmp_path, frames):
    path = tmp_path / "clip.mp4"
    write_video(path, frames)
    full = read_video(path)
    part = read_video(path, num_frames=4, stride=3, start=2)
    np.testing.assert_array_equal(part, full[2:14:3])
    # The PyAV fallback decodes the same frames as decord.
    np.testing.assert_array_equal(video_io._pyav_decode(str(path))[2:14:3], part)
    assert video_io.num_video_frames(path) == 16


def test_too_short_and_corrupt_raise_clear_errors(tmp_path, frames):
    path = tmp_path / "clip.mp4"
    write_video(path, frames)
    with pytest.raises(VideoReadError, match="too short.*has 16 frames, need 20"):
        read_video(path, num_frames=10, stride=2, start=1)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video" * 100)
    with pytest.raises(VideoReadError, match="cannot read video .*bad.mp4"):
        read_video(bad)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(path.read_bytes()[:300])
    with pytest.raises(VideoReadError):
        read_video(truncated, num_frames=16)
    with pytest.raises(VideoReadError, match="file not found"):
        read_video(tmp_path / "missing.mp4")


def test_gif_and_png(tmp_path, frames):
    write_video(tmp_path / "clip.gif", frames, fps=10)
    gif = Image.open(tmp_path / "clip.gif")
    assert gif.n_frames == 16 and gif.size == (64, 64)
    assert np.abs(read_video(tmp_path / "clip.gif").astype(int) - frames).mean() < 3
    write_video(tmp_path / "grid.png", frames)
    grid = np.array(Image.open(tmp_path / "grid.png").convert("RGB"))
    assert grid.shape == (2 * 64, 8 * 64, 3)  # 16 frames in rows of 8
    np.testing.assert_array_equal(grid[64:128, 64:128], frames[9])


def test_write_errors_leave_no_file(tmp_path, frames):
    with pytest.raises(ValueError, match="even height and width"):
        write_video(tmp_path / "odd.mp4", frames[:, :63])
    with pytest.raises(ValueError, match="unknown suffix"):
        write_video(tmp_path / "clip.avi", frames)
    with pytest.raises(ValueError, match="uint8 frames"):
        write_video(tmp_path / "clip.mp4", frames.astype(np.float32))
    assert os.listdir(tmp_path) == []  # no partial or temporary files

"""flexivid.data.video_folder: users' folders of videos + CSV/JSONL captions; bad files are skipped and counted."""
import json
import logging
import os

import numpy as np
import pytest
import torch

from flexivid.config import ConfigError, DataConfig
from flexivid.data import build_dataset
from flexivid.data.video_folder import VideoFolderDataset, resize_center_crop
from flexivid.video_io import write_video

GREY_STEP = 8  # frame i of a "ramp" video is uniformly grey level GREY_STEP * i, so frames identify themselves


def ramp_video(num_frames, height=48, width=80):
    levels = (np.arange(num_frames) * GREY_STEP + 16).astype(np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (num_frames, height, width, 3)).copy()


@pytest.fixture()
def folder(tmp_path):
    """good0.mp4, good1.mp4 (24 frames), bad.mp4 (garbage bytes), short.mp4 (4 frames); captions.csv lists all."""
    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "good0.mp4", ramp_video(24))
    write_video(videos / "good1.mp4", ramp_video(24)[::-1].copy())
    (videos / "bad.mp4").write_bytes(b"\x00not an mp4" * 64)
    write_video(videos / "short.mp4", ramp_video(4))
    rows = [("good0.mp4", "ramp up"), ("bad.mp4", "broken"), ("short.mp4", "too short"), ("good1.mp4", "ramp, down")]
    with open(tmp_path / "captions.csv", "w") as f:
        f.write("path,caption\n" + "".join(f'{p},"{c}"\n' for p, c in rows))
    return tmp_path


def config(folder, **kw):
    base = dict(name="video_folder", root=str(folder / "videos"), captions=str(folder / "captions.csv"),
                num_frames=8, frame_stride=2, height=32, width=32, seed=0)
    base.update(kw)
    return DataConfig(**base)


def frame_levels(video):
    """Grey level (0..255) of each frame of a (3, T, H, W) item."""
    return ((video + 1) * 127.5).mean(dim=(0, 2, 3)).numpy()


def test_reads_strided_frames_resized(folder):
    ds = build_dataset(config(folder))
    assert isinstance(ds, VideoFolderDataset) and len(ds) == 2  # bad.mp4 and short.mp4 are left out when scanned
    item = ds[0]
    assert item["caption"] == "ramp up" and item["attrs"] == {}
    assert item["video"].shape == (3, 8, 32, 32) and item["video"].dtype == torch.float32
    levels = frame_levels(item["video"])
    np.testing.assert_allclose(np.diff(levels), 2 * GREY_STEP, atol=1.5)  # frame_stride=2
    start = (levels[0] - 16) / GREY_STEP
    assert abs(start - round(start)) < 0.2 and 0 <= round(start) <= 24 - 15
    # Same seed and index -> the same clip; the reversed video reads back reversed.
    assert torch.equal(ds[0]["video"], item["video"])
    assert np.all(np.diff(frame_levels(ds[1]["video"])) < 0) and ds[1]["caption"] == "ramp, down"
    assert ds.num_skipped == 0


def test_corrupt_short_and_non_video_files_are_left_out_with_reasons(folder, caplog):
    """By container and stream: a text file that ffmpeg renders as a 640x400 'video' (tty demuxer) is no video."""
    (folder / "videos" / "notes.txt").write_text("lorem ipsum dolor sit amet\n" * 400)
    with open(folder / "captions.csv", "a") as f:
        f.write("notes.txt,text\nmissing.mp4,gone\n")
    with caplog.at_level(logging.WARNING, logger="flexivid.data.video_folder"):
        ds = VideoFolderDataset(config(folder))
    assert [c for _, c in ds.entries] == ["ramp up", "ramp, down"]
    reasons = {os.path.basename(p): why for p, why in ds.skipped}
    assert set(reasons) == {"bad.mp4", "short.mp4", "notes.txt", "missing.mp4"}
    assert "not a readable video" in reasons["bad.mp4"]
    assert "too short: 4 frames, a clip needs 15" in reasons["short.mp4"]
    assert "not a video container" in reasons["notes.txt"] and "tty" in reasons["notes.txt"]
    assert reasons["missing.mp4"] == "file not found"
    assert len(caplog.records) == 1 and "4 of 6 listed files skipped" in caplog.records[0].getMessage()


def test_a_file_that_breaks_after_the_scan_is_skipped_and_counted(folder, caplog):
    ds = VideoFolderDataset(config(folder))
    (folder / "videos" / "good0.mp4").write_bytes(b"\x00gone bad" * 64)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="flexivid.data.video_folder"):
        item = ds[0]  # good0.mp4 -> good1.mp4
    assert item["caption"] == "ramp, down" and ds.num_skipped == 1
    assert len(caplog.records) == 1 and "good0.mp4" in caplog.records[0].getMessage()
    caplog.clear()
    ds[0]  # known-bad files are remembered: no new warning, no double count
    assert ds.num_skipped == 1 and not caplog.records


def test_all_bad_gives_clear_error(folder):
    (folder / "bad.csv").write_text("path,caption\nbad.mp4,x\nshort.mp4,y\nmissing.mp4,z\n")
    with pytest.raises(ValueError, match=r"no usable video among the 3 listed in .*bad\.csv .*bad\.mp4"):
        VideoFolderDataset(config(folder, captions=str(folder / "bad.csv")))


def test_jsonl_captions(folder):
    with open(folder / "captions.jsonl", "w") as f:
        f.write(json.dumps({"path": "good1.mp4", "caption": "from jsonl"}) + "\n\n")
    ds = VideoFolderDataset(config(folder, captions=str(folder / "captions.jsonl"), num_frames=24, frame_stride=1))
    item = ds[0]
    assert item["caption"] == "from jsonl" and item["video"].shape == (3, 24, 32, 32)


def test_missing_paths_name_the_config_key(folder):
    with pytest.raises(FileNotFoundError, match=r"nope\.csv.*data\.captions"):
        VideoFolderDataset(config(folder, captions=str(folder / "nope.csv")))
    with pytest.raises(FileNotFoundError, match=r"data\.root"):
        VideoFolderDataset(config(folder, root=str(folder / "nowhere")))
    with pytest.raises(ConfigError, match=r"data\.captions"):
        VideoFolderDataset(config(folder, captions=None))
    (folder / "wrong.csv").write_text("file,text\na.mp4,x\n")
    with pytest.raises(ValueError, match="path,caption"):
        VideoFolderDataset(config(folder, captions=str(folder / "wrong.csv")))


def test_resize_center_crop_keeps_the_centre():
    frames = np.zeros((2, 40, 100, 3), np.uint8)
    frames[:, :, 20:80] = 255  # a white band in the middle 60% of the width
    out = resize_center_crop(frames, 20, 20)  # scale 0.5 -> 20x50 (band 10..40), crop columns 15..35
    assert out.shape == (3, 2, 20, 20)
    assert out.min() > 0.99  # all white: the crop is centred on the band
    assert resize_center_crop(frames, 40, 100).equal(torch.from_numpy(frames).permute(3, 0, 1, 2) / 127.5 - 1)

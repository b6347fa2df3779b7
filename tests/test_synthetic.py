"""flexivid.data.synthetic: reproducibility, captions vs attributes, held-out split, geometry."""
import itertools

import numpy as np
import pytest
import torch

from flexivid.config import DataConfig
from flexivid.data import build_dataset
from flexivid.data.synthetic import (ATTRIBUTES, BACKGROUNDS, COLOURS, SPLIT_COMBINATIONS, SyntheticVideoDataset,
                                     all_captions, caption_for, parse_caption)


def make(split="train", seed=0, **kw):
    return SyntheticVideoDataset(DataConfig(split=split, seed=seed, num_clips=500, **kw))


def test_item_format():
    item = make()[3]
    assert set(item) == {"video", "caption", "attrs"}
    assert item["video"].shape == (3, 16, 64, 64) and item["video"].dtype == torch.float32
    assert item["video"].min() >= -1 and item["video"].max() <= 1
    assert set(item["attrs"]) == set(ATTRIBUTES)
    assert isinstance(build_dataset(DataConfig(name="synthetic")), SyntheticVideoDataset)


def test_same_seed_same_clip_different_seed_differs():
    a, b, c = make(seed=1), make(seed=1), make(seed=2)
    for i in (0, 7, 499):
        assert torch.equal(a[i]["video"], b[i]["video"]) and a[i]["caption"] == b[i]["caption"]
    assert [a[i]["caption"] for i in range(50)] != [c[i]["caption"] for i in range(50)]
    assert not torch.equal(a[0]["video"], c[0]["video"])
    with pytest.raises(IndexError):
        a[500]


def test_captions_match_attrs():
    ds = make()
    for i in range(200):
        item = ds[i]
        assert parse_caption(item["caption"]) == item["attrs"]
        assert item["caption"] == caption_for(item["attrs"])
    assert make()[0]["caption"].startswith("a ")
    assert parse_caption("A big RED square, moving up!") == {"colour": "red", "shape": "square", "size": "large",
                                                            "direction": "up"}
    assert parse_caption("a blue circle on a dark blue background") == {"colour": "blue", "shape": "circle",
                                                                        "background": "dark blue"}


def test_split_holds_out_combinations():
    train, test = set(all_captions("train")), set(all_captions("test"))
    n_all = int(np.prod([len(v) for v in ATTRIBUTES.values()]))
    assert len(train) + len(test) == n_all == len(all_captions())
    assert train.isdisjoint(test)
    assert 0.10 <= len(test) / n_all <= 0.15
    # Every single attribute value is still seen in training.
    for pos, (name, values) in enumerate(ATTRIBUTES.items()):
        assert {c[pos] for c in SPLIT_COMBINATIONS["train"]} == set(values), name
    # Dataset items respect the split.
    assert {make("train")[i]["caption"] for i in range(300)} <= train
    assert {make("test")[i]["caption"] for i in range(300)} <= test
    # The split is a property of the dataset, not of data.seed.
    assert {make("test", seed=9)[i]["caption"] for i in range(100)} <= test


def test_all_values_used_and_palette_contrast():
    ds = make()
    seen = {k: {ds.attrs(i)[k] for i in range(500)} for k in ATTRIBUTES}
    assert seen == {k: set(v) for k, v in ATTRIBUTES.items()}
    for obj, bg in itertools.product(COLOURS.values(), BACKGROUNDS.values()):
        assert np.linalg.norm(np.subtract(obj, bg)) > 120  # every object stands out on every background


def test_pixels_match_attrs():
    """The rendered pixels carry the recorded colour/background, and the object stays inside the frame."""
    ds = make(num_frames=16, height=64, width=64)
    for i in range(100):
        item = ds[i]
        frames = ((item["video"] + 1) * 127.5).round().permute(1, 2, 3, 0).numpy()  # (T, H, W, 3)
        bg = np.array(BACKGROUNDS[item["attrs"]["background"]])
        fg = np.array(COLOURS[item["attrs"]["colour"]])
        assert np.abs(frames[:, 0, 0] - bg).max() <= 1 or np.abs(frames[:, -1, -1] - bg).max() <= 1
        is_fg = np.abs(frames - fg).max(-1) <= 1
        assert is_fg.sum(axis=(1, 2)).min() > 20  # the whole object is visible in every frame
        border = np.concatenate([frames[:, 0], frames[:, -1], frames[:, :, 0], frames[:, :, -1]], axis=1)
        assert np.abs(border - bg).max(-1).max() < 60  # at most a faint anti-aliased rim touches the border


def test_rendering_is_fast_and_sizes_work():
    import time

    ds = make(num_frames=16, height=64, width=64)
    t0 = time.perf_counter()
    for i in range(100):
        ds[i]
    assert (time.perf_counter() - t0) / 100 < 0.02  # ~0.5 ms per clip; generous for slow CI
    assert make(num_frames=5, height=32, width=48)[0]["video"].shape == (3, 5, 32, 48)
    with pytest.raises(ValueError, match="data.split"):
        make(split="val")

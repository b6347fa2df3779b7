"""The shipped checkpoint's videos are a fixed point of refactoring: same prompts, seeds and schedules give the same
uint8 frames (sha256) as the hashes committed in ``tests/data/shipped_videos.json``.

Regenerate the hashes only on purpose (a change meant to alter samples), and say why in the commit:

    PYTHONPATH=$PWD python tests/test_shipped_videos.py --write
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow  # multi-process or end-to-end runs

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "checkpoints" / "flexivid-small"
HASHES = Path(__file__).with_name("data") / "shipped_videos.json"
PROMPTS = ["a large red circle moves right slowly on a dark blue background",
           "a small green square moves up quickly on a black background"]
SEEDS = [(0, 1), (7, 8)]  # one seed per prompt, per call
# Few steps on a small clip keep this quick on a CPU; the x/y schedule mixes modes within a step (packed guidance,
# null-text guide branch and weak-to-strong steps).
SCHEDULES = ["full", "weak_first:coarse_time:2", "interleaved:1:1", "weak_first:coarse_space:1/3"]
CLIP = dict(num_frames=4, height=32, width=32, steps=4, guidance_scale=4.0)


def video_hashes() -> dict[str, str]:
    """``{"merged|unmerged/schedule/seeds/prompt i": sha256 of the uint8 (T, H, W, 3) frames}``."""
    from flexivid.pipeline import VideoPipeline
    from flexivid.video_io import to_uint8

    torch.set_num_threads(2)
    out = {}
    for merged in (True, False):
        pipe = VideoPipeline.from_pretrained(CHECKPOINT, "cpu", torch.float32, merge_adapters=merged)
        for spec in SCHEDULES:
            for seeds in SEEDS:
                video, _ = pipe(PROMPTS, schedule=spec, seed=list(seeds), progress=False, **CLIP)
                for i, v in enumerate(video):
                    key = f"{'merged' if merged else 'unmerged'}/{spec}/seed{seeds[i]}/prompt{i}"
                    out[key] = hashlib.sha256(to_uint8(v).tobytes()).hexdigest()
    return out


@pytest.mark.skipif(not (CHECKPOINT / "config.json").is_file(), reason="shipped checkpoint not present")
def test_shipped_videos_are_bit_identical():
    expected = json.loads(HASHES.read_text())
    got = video_hashes()
    assert set(got) == set(expected)
    changed = [k for k in expected if got[k] != expected[k]]
    assert not changed, f"{len(changed)} of {len(expected)} videos changed, e.g. {changed[:3]}"


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: PYTHONPATH=$PWD python tests/test_shipped_videos.py --write")
    HASHES.write_text(json.dumps(video_hashes(), indent=2) + "\n")
    print(f"wrote {HASHES}")

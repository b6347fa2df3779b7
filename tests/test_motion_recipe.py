"""tools/motion_recipe.sh --smoke end to end on the CPU: the A/B call, then --distill from its parts (tiny sizes)."""
import json
import os
import subprocess
import sys
import tarfile

import pytest
from train_utils import REPO, StubTextEncoder

pytestmark = pytest.mark.slow  # two recipe runs, a few minutes on 2 cores


def _recipe(tmp_path, name, *args, **env):
    environ = {k: v for k, v in os.environ.items()
               if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "STEPS", "DIRCLS")}
    environ.update(PYTHON=sys.executable, TEXT_CACHE=str(tmp_path / "cache.safetensors"), OUT=str(tmp_path / name),
                   WORK=str(tmp_path / f"work_{name}"), OMP_NUM_THREADS="2", **env)
    proc = subprocess.run(["bash", "tools/motion_recipe.sh", "--smoke", *args], cwd=REPO, env=environ,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return tmp_path / name


def test_recipe_calls_bring_back_weights_and_paired_results(tmp_path):
    from flexivid.data.synthetic import all_captions
    from flexivid.models.serialization import load_model
    from flexivid.text import build_text_cache

    build_text_cache(StubTextEncoder(dim=384, max_length=16), all_captions(), str(tmp_path / "cache.safetensors"))
    out1 = _recipe(tmp_path, "ab", TS_SAMPLING="logit_normal", TS_LOC="0.5", TS_SHIFT="3")
    assert sorted(p.name for p in out1.iterdir()) == ["base_A.tgz.part-aa", "base_B.tgz.part-aa", "results.tgz",
                                                      "summary.txt"]
    summary = (out1 / "summary.txt").read_text()
    for arm, abs_pos in (("A", "thw"), ("B", "none")):
        assert f"pretrain_{arm}: export at step 4" in summary and f"base_{arm}.tgz sha256 " in summary
        assert f"timesteps logit_normal loc 0.5 scale 1.0 shift 3.0, from scratch, abs_pos {abs_pos}" in summary
    with tarfile.open(out1 / "results.tgz") as tar:
        a = json.load(tar.extractfile("eval/A/eval_motion.json"))
        assert {"logs/pretrain_A_log.jsonl", "eval/B/eval_motion.json", "configs/pretrain_B.yaml"} <= set(tar.getnames())
    assert a["comparison"]["other"].endswith("release_base_B/flexivid-small") and a["num_prompts"] == 4

    out2 = _recipe(tmp_path, "distill", "--distill", str(out1 / "base_A"))  # the parts, joined and checked
    assert sorted(p.name for p in out2.iterdir()) == ["model.tgz.part-aa", "results.tgz", "summary.txt"]
    assert "distill: export at step 4" in (out2 / "summary.txt").read_text()
    with tarfile.open(out2 / "results.tgz") as tar:
        modes = json.load(tar.extractfile("eval/release/eval_modes.json"))
        assert json.load(tar.extractfile("eval/release/eval_motion.json"))["seeds"] == 2
    assert set(modes["before"]) == {"coarse_time", "coarse_space"}
    subprocess.run(["bash", "tools/join_release.sh", str(out2), str(tmp_path / "ck")], cwd=REPO, check=True,
                   capture_output=True)
    model = load_model(tmp_path / "ck" / "flexivid-small")
    assert set(model.config.modes) == {"coarse_time", "coarse_space"} and model.config.abs_pos == "thw"

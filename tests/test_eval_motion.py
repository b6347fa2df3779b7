"""tools/eval_motion.py: prompts from the test split, intervals per attribute and coherence, targets checked."""
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import eval_motion  # noqa: E402

from flexivid.data.synthetic import ATTRIBUTES, SPLIT_COMBINATIONS, parse_caption  # noqa: E402


def test_prompts_are_held_out_captions():
    prompts = eval_motion.test_prompts(300)
    test = {tuple(c) for c in SPLIT_COMBINATIONS["test"]}
    assert len(prompts) == 300
    assert all(tuple(parse_caption(p)[k] for k in ATTRIBUTES) in test for p in prompts)


def test_summary_intervals_and_targets():
    rng = np.random.default_rng(0)
    n, s = 40, 3
    scores = {k: np.ones(n * s) for k in ATTRIBUTES}
    scores["direction"] = (rng.random(n * s) < 0.5).astype(float)  # a model that ignores direction
    scores["jump"] = np.zeros(n * s)
    scores["straightness"] = np.full(n * s, 0.99)
    scores["lost"] = np.zeros(n * s)
    scores["wanted"] = [parse_caption(p) for p in eval_motion.test_prompts(n) for _ in range(s)]
    res = eval_motion.summarize(scores, n, s)
    d = res["attributes"]["direction"]
    assert d["low"] < d["mean"] < d["high"] and d["n"] == n and d["high"] < 0.95
    assert res["targets"]["met"] == {"direction": False, "speed": True, "colour": True, "shape": True, "size": True,
                                     "background": True, "jump_rate": True}
    assert set(res["by_value"]["direction"]) <= {"left", "right", "up", "down"}


def test_bad_counts_are_one_line_errors(capsys):
    assert eval_motion.main(["--output", "unused", "--seeds", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: --seeds must be >= 1, got 0"
    with pytest.raises(SystemExit):
        eval_motion.main(["--num-prompts", "3"])  # --output is required

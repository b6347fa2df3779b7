"""tools/eval_motion.py: prompts from the test split, intervals per attribute and coherence, targets checked."""
import json
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


def test_markdown_table_marks_missed_targets_and_paired_rows(tmp_path, capsys):
    rng = np.random.default_rng(1)
    n, s = 30, 2
    prompts = [p for p in eval_motion.test_prompts(n) for _ in range(s)]
    scores = {k: np.ones(n * s) for k in eval_motion.METRICS}
    scores.update(jump=np.zeros(n * s), lost=np.zeros(n * s), wanted=[parse_caption(p) for p in prompts])
    good = {"checkpoint": "good", "num_prompts": n, "seeds": s, **eval_motion.summarize(scores, n, s),
            "clips": {k: list(scores[k]) for k in eval_motion.METRICS}}
    scores["direction"] = (rng.random(n * s) < 0.3).astype(float)
    bad = {"checkpoint": "bad", "num_prompts": n, "seeds": s, **eval_motion.summarize(scores, n, s),
           "comparison": eval_motion.compare(scores, n, s, good)}
    lines = eval_motion.markdown_table([good, bad]).splitlines()
    assert len(lines) == 5 and all(line.count("|") == lines[0].count("|") for line in lines)
    assert lines[2].endswith("| all met |") and "**" not in lines[2] and "1.000 [1.000, 1.000]" in lines[2]
    direction = lines[0].split(" | ").index("direction")
    assert lines[3].split(" | ")[direction].startswith("**") and lines[3].endswith("| missed: direction |")
    assert lines[4].startswith("| minus good (paired) | 30 x 1 |")
    assert lines[4].split(" | ")[direction].startswith("-0.")  # bad minus good in direction
    path = tmp_path / "eval_motion.json"
    path.write_text(json.dumps(bad))
    assert eval_motion.main(["--table", str(path)]) == 0 and "missed: direction" in capsys.readouterr().out
    assert eval_motion.main(["--table", str(tmp_path / "absent.json")]) == 2
    assert capsys.readouterr().err.startswith("error: --table")


def test_bad_counts_are_one_line_errors(capsys):
    assert eval_motion.main(["--output", "unused", "--seeds", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: --seeds must be >= 1, got 0"
    with pytest.raises(SystemExit):
        eval_motion.main(["--num-prompts", "3"])  # --output is required

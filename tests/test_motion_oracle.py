"""The Bayes-optimal denoiser of the synthetic data against brute-force enumeration with real renders."""
import json

import numpy as np
import pytest
import torch

from flexivid.data.synthetic import DIRECTIONS, plan_path
from flexivid.eval.oracle import MotionOracle, start_interval

ATTRS = dict(colour="red", shape="triangle", size="large", background="dark blue", direction="right", speed="fast")
SHAPE = (8, 16, 16)  # frames, height, width


def brute_force_x0(oracle: MotionOracle, x_t: torch.Tensor, t: float) -> torch.Tensor:
    """E[x0 | x_t] by rendering every lattice trajectory the prior allows and weighting it by its likelihood."""
    logps, clips = [], []
    for hyp in oracle.hypotheses:
        for ry, rx, my, mx in torch.nonzero(torch.isfinite(hyp.log_prior)).tolist():
            clip = oracle.render(hyp.direction, hyp.speed, oracle.lattice_start((ry, rx, my, mx))).double()
            loglik = -((x_t.double() - (1 - t) * clip) ** 2).sum() / (2 * t * t)
            logps.append(loglik + hyp.log_prior[ry, rx, my, mx] + oracle.log_weight)
            clips.append(clip)
    weights = torch.softmax(torch.stack(logps), 0)
    return torch.einsum("n,nchwf->chwf", weights, torch.stack(clips)).float()


def some_start(oracle: MotionOracle, hypothesis: int = 0) -> tuple[float, float]:
    support = torch.nonzero(torch.isfinite(oracle.hypotheses[hypothesis].log_prior))
    return oracle.lattice_start(tuple(support[len(support) // 2].tolist()))


@pytest.mark.parametrize("directions,speeds", [(None, None), (DIRECTIONS, None), (DIRECTIONS, ("slow", "fast"))])
@pytest.mark.parametrize("t", [0.5, 0.9, 0.97, 1.0])
def test_matches_brute_force(directions, speeds, t):
    oracle = MotionOracle(ATTRS, *SHAPE, directions=directions, speeds=speeds, subpixel=2)
    x0 = oracle.render("right", "fast", some_start(MotionOracle(ATTRS, *SHAPE, subpixel=2)))
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))
    x_t = (1 - t) * x0 + t * noise
    expected = brute_force_x0(oracle, x_t, t)
    assert torch.allclose(oracle.predict_x0(x_t, t), expected, atol=1e-5)


def test_recovers_the_clip_at_low_noise():
    oracle = MotionOracle(ATTRS, 16, 32, 32, directions=DIRECTIONS, subpixel=2)
    x0 = oracle.render("down", "fast", some_start(oracle, DIRECTIONS.index("down")))
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    t = 0.2
    x_t = (1 - t) * x0 + t * noise
    assert float((oracle.predict_x0(x_t, t) - x0).abs().max()) < 1e-4
    assert oracle.hypothesis_posterior(x_t, t)[("down", "fast")] > 0.999
    # the velocity is the flow target noise - x0 up to that error, divided by t
    assert float((oracle.velocity(x_t, t) - (noise - x0)).abs().max()) < 1e-3


def test_prior_is_plan_paths():
    for attrs in (ATTRS, dict(ATTRS, direction="up", speed="slow", shape="circle", size="small")):
        low, high = start_interval(attrs, 16, 64, 64)
        rng = np.random.default_rng(0)
        starts = np.stack([plan_path(attrs, 16, 64, 64, rng)[0] for _ in range(2000)])
        assert (starts >= low - 1e-9).all() and (starts <= high + 1e-9).all()
        span = np.maximum(high - low, 1e-9)
        assert ((starts.min(0) - low) / span < 0.01).all() and ((high - starts.max(0)) / span < 0.01).all()
        # the lattice covers the box with spacing 1 / subpixel
        oracle = MotionOracle(attrs, 16, 64, 64, subpixel=4)
        count = int(torch.isfinite(oracle.hypotheses[0].log_prior).sum())
        assert count == pytest.approx(np.prod(4 * (high - low) + 1), rel=0.1)
        # and the oracle's renders follow plan_path's direction and speed
        path = plan_path(attrs, 16, 64, 64, rng)
        clip = oracle.render(attrs["direction"], attrs["speed"], tuple(path[0]))
        from flexivid.data.synthetic import render_clip
        assert torch.allclose(clip, torch.from_numpy(render_clip(attrs, path, 64, 64)), atol=1e-5)


def test_tool_value_sample_classify(tmp_path, capsys):
    from tools.motion_oracle import main

    out = tmp_path / "value.jsonl"
    assert main(["value", "--clips", "2", "--t", "0.98", "--output", str(out)]) == 0
    row = json.loads(out.read_text().splitlines()[0])
    assert row["t"] == 0.98 and len(row["per_clip"]["full"]) == 2
    for k in ("no_direction", "no_speed", "neither"):  # the extra loss is the per-clip difference's mean
        diff = np.array(row["per_clip"][k]) - np.array(row["per_clip"]["full"])
        assert row[f"extra_{k}"]["mean"] == pytest.approx(diff.mean(), abs=1e-6)
    out = tmp_path / "sample.jsonl"
    assert main(["sample", "--captions", "2", "--seeds", "1", "--steps", "6", "--variants", "always", "above:0.9",
                 "--output", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["variant"] for r in rows] == ["always", "above:0.9"]
    assert rows[0]["direction"]["mean"] == 1.0 and rows[0]["jump"]["mean"] == 0.0
    out = tmp_path / "classify.jsonl"
    assert main(["classify", "--oracle-only", "--oracle", "--clips", "2", "--t", "0.5", "--output", str(out)]) == 0
    row = json.loads(out.read_text())
    assert row["oracle_accuracy"]["mean"] == 1.0 and row["oracle_margin"]["mean"] > 0
    assert row["oracle_axis_accuracy"]["mean"] == 1.0 and row["oracle_sign_accuracy"]["mean"] == 1.0

    from tools.motion_oracle_report import main as report

    assert report([str(tmp_path / f) for f in ("value.jsonl", "sample.jsonl", "classify.jsonl")]) == 0
    text = capsys.readouterr().out
    assert "| 0.98 |" in text and "| direction | above:0.9 | plan_path |" in text and "| 0.5 | 2 |" in text


def test_tool_bad_input(tmp_path, capsys):
    from tools.motion_oracle import main

    assert main(["classify", "--output", str(tmp_path / "x.jsonl")]) == 2
    assert main(["value", "--t", "1.5", "--output", str(tmp_path / "x.jsonl")]) == 2
    assert main(["sample", "--variants", "sometimes", "--output", str(tmp_path / "x.jsonl")]) == 2
    assert capsys.readouterr().err.count("error:") == 3
    assert not (tmp_path / "x.jsonl").exists()

    from tools.motion_oracle_report import main as report

    (tmp_path / "other.jsonl").write_text('{"experiment": "frontier"}\n')
    assert report([str(tmp_path / "missing.jsonl")]) == 2 and report([str(tmp_path / "other.jsonl")]) == 2
    assert capsys.readouterr().err.count("error:") == 2

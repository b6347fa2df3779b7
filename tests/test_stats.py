"""Bootstrap intervals: coverage of a known mean, pairing, ties, missing values, bad shapes."""
import numpy as np
import pytest

from flexivid.eval.stats import is_tie, mean_ci, paired_diff_ci


def test_mean_interval_covers_the_true_mean_at_about_the_nominal_rate():
    rng = np.random.default_rng(0)
    hits = [mean_ci(rng.normal(0.5, 1.0, size=(64, 3)), n_resamples=500, seed=i).contains(0.5) for i in range(60)]
    # nominal 95%: 60 trials land in [0.83, 1.0] with probability > 0.999; a broken interval (zero width, wrong
    # centre, seeds counted as independent prompts) falls far below.
    assert 0.83 <= np.mean(hits) <= 1.0


def test_interval_width_shrinks_like_one_over_sqrt_prompts():
    rng = np.random.default_rng(1)
    small, large = mean_ci(rng.normal(size=100)), mean_ci(rng.normal(size=1600))
    ratio = (small.high - small.low) / (large.high - large.low)
    assert 3.0 < ratio < 5.3  # sqrt(1600 / 100) = 4


def test_seeds_of_one_prompt_are_resampled_together():
    # Each prompt's 3 seeds are identical copies: the effective sample is 40 prompts, not 120 clips.
    rng = np.random.default_rng(2)
    per_prompt = rng.normal(size=40)
    together = mean_ci(np.repeat(per_prompt[:, None], 3, axis=1))
    alone = mean_ci(per_prompt)
    assert together.n == 40
    assert together.low == pytest.approx(alone.low) and together.high == pytest.approx(alone.high)


def test_pairing_detects_a_small_shift_that_unpaired_intervals_cannot():
    rng = np.random.default_rng(3)
    prompt_effect = rng.normal(0.0, 1.0, size=(128, 3))  # large spread shared by both schedules
    a = prompt_effect + rng.normal(0.0, 0.05, size=prompt_effect.shape)
    b = a - 0.05  # b is worse by 0.05 on every sample
    ia, ib = mean_ci(a), mean_ci(b)
    assert ia.low < ib.high  # the marginal intervals overlap ...
    d = paired_diff_ci(a, b)
    assert d.mean == pytest.approx(0.05) and d.low > 0  # ... the paired difference does not contain 0
    assert not is_tie(a, b)


def test_tie_when_the_difference_is_noise():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(96, 3))
    b = a + rng.normal(0.0, 1.0, size=a.shape)  # no systematic shift
    d = paired_diff_ci(a, b)
    assert d.contains(0.0) and is_tie(a, b)
    assert is_tie(a, a) and paired_diff_ci(a, a).high == 0.0


def test_nan_entries_are_left_out_pairwise():
    a = np.array([[1.0, np.nan], [2.0, 2.0], [np.nan, np.nan]])
    b = np.array([[0.0, 5.0], [1.0, 1.0], [0.0, 0.0]])
    d = paired_diff_ci(a, b)
    assert d.n == 2 and d.mean == pytest.approx(1.0)  # prompt 0 keeps seed 0 only; prompt 2 has no pair
    assert mean_ci(a).n == 2 and mean_ci(a).mean == pytest.approx(1.5)
    empty = mean_ci([np.nan, np.nan])
    assert empty.n == 0 and empty.format() == "n/a"


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="same prompts and seeds"):
        paired_diff_ci(np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"\(prompts,\) or \(prompts, seeds\)"):
        mean_ci(np.zeros((2, 2, 2)))

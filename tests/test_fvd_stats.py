"""FVD statistics: the batched Frechet distance equals eval.fvd's, intervals, paired ties, FVD-infinity."""
import numpy as np
import pytest

from flexivid.eval.fvd import feature_stats, frechet_distance
from flexivid.eval.fvd_stats import FrechetReference, fvd_by_size, fvd_infinity, fvd_interval, paired_fvd_diff


def test_batched_distance_matches_scipy_reference_and_weights():
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(400, 12)), rng.normal(0.3, 1.2, size=(90, 12))
    ref = FrechetReference(real)
    expected = frechet_distance(*feature_stats(real), *feature_stats(fake))
    assert ref.distances(fake)[0] == pytest.approx(expected, rel=1e-9)
    w = np.zeros((1, 90))
    w[0, :45] = 2.0  # every one of the first 45 clips twice = those clips' statistics (frequency weights)
    doubled = np.concatenate([fake[:45], fake[:45]])
    assert ref.distances(fake, w)[0] == pytest.approx(frechet_distance(*feature_stats(real),
                                                                       *feature_stats(doubled)), rel=1e-9)


def test_interval_brackets_the_point_and_pairing_finds_a_shift():
    rng = np.random.default_rng(1)
    ref = FrechetReference(rng.normal(size=(1000, 8)))
    a = rng.normal(size=(100, 2, 8))
    iv = fvd_interval(ref, a)
    assert iv.low < iv.mean < iv.high and iv.n == 100
    worse = paired_fvd_diff(ref, a + 0.3, a)
    assert worse.low > 0
    same = paired_fvd_diff(ref, a, a)
    assert same.low == same.mean == same.high == 0.0


def test_fvd_infinity_recovers_the_unbiased_value():
    rng = np.random.default_rng(2)
    ref = FrechetReference(rng.normal(size=(20000, 6)))
    fake = rng.normal(size=(2000, 6))  # same distribution: the true FVD is ~0, finite-N FVD is biased up
    by = fvd_by_size(ref, fake, [250, 500, 1000, 2000], draws=8)
    assert by[250] > by[500] > by[2000] > 0
    inf = fvd_infinity(by)
    assert abs(inf["fvd_inf"]) < 0.3 * by[2000] and inf["slope"] > 0
    with pytest.raises(ValueError, match=">= 2 subset sizes"):
        fvd_infinity({10: 1.0})

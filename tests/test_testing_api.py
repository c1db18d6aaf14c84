"""The Monte-Carlo claim helper keeps its stated false-alarm rate and has power."""
import numpy as np
import pytest
import scipy.stats

from analysis.testing import ClaimFailed, assert_mean_at_most, mean_confidence_bounds, mean_upper_claim

REPS = 2000  # repetitions of the whole claim test used to estimate its false-alarm rate
ALPHA = 0.05


def _rejection_rate(method, mean, n, value_range=None, dist="normal"):
    rng = np.random.default_rng(12345)
    rejected = 0
    for _ in range(REPS):
        if dist == "normal":
            v = rng.normal(mean, 1.0, n)
        else:  # bounded: Beta scaled to [0, 1] with the given mean
            v = rng.beta(2.0 * mean / (1 - mean), 2.0, n)
        lo, _ = mean_confidence_bounds(v, alpha=ALPHA, method=method, value_range=value_range)
        rejected += lo > mean
    return rejected


def test_t_method_false_alarm_rate_is_alpha_for_normal_values():
    """At the boundary E[V] = eps the t test rejects with probability exactly α (normal data):
    the count must fall inside the two-sided 99.9% binomial interval around REPS·α."""
    count = _rejection_rate("t", mean=1.0, n=20)
    lo, hi = scipy.stats.binom.interval(0.999, REPS, ALPHA)
    assert lo <= count <= hi


def test_bernstein_false_alarm_rate_is_at_most_alpha():
    count = _rejection_rate("bernstein", mean=0.3, n=30, value_range=(0.0, 1.0), dist="beta")
    assert count <= scipy.stats.binom.ppf(0.999, REPS, ALPHA)


def test_claim_is_rejected_when_clearly_false_and_kept_when_true():
    false_claim = mean_upper_claim(lambda s: np.random.default_rng(s).normal(2.0, 0.5), range(30), eps=1.0)
    assert false_claim.rejected and false_claim.lower > 1.0
    true_claim = mean_upper_claim(lambda s: np.random.default_rng(s).normal(0.5, 0.5), range(30), eps=1.0)
    assert not true_claim.rejected and true_claim.upper < 1.0
    with pytest.raises(ClaimFailed, match="lower confidence bound"):
        assert_mean_at_most(lambda s: np.random.default_rng(s).normal(2.0, 0.5), range(30), eps=1.0)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="at least 2"):
        mean_confidence_bounds([1.0])
    with pytest.raises(ValueError, match="value_range"):
        mean_confidence_bounds([1.0, 2.0], method="bernstein")
    with pytest.raises(ValueError, match="outside"):
        mean_confidence_bounds([1.0, 2.0], method="bernstein", value_range=(0, 1.5))

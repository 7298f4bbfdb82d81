"""The reliability metrics against scikit-learn and hand-computed values."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import metrics as sk

from models import metrics


def random_predictions(seed, n=200, k=4):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, k)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    labels = rng.integers(0, k, size=n)
    return jnp.asarray(probs, jnp.float32), jnp.asarray(labels)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_accuracy_nll_brier_match_scikit_learn(seed):
    probs, labels = random_predictions(seed)
    p, y = np.asarray(probs, np.float64), np.asarray(labels)
    p /= p.sum(-1, keepdims=True)  # float32 rows sum to 1 only to 1e-7
    np.testing.assert_allclose(
        metrics.accuracy(probs, labels), sk.accuracy_score(y, p.argmax(-1)), rtol=1e-6
    )
    np.testing.assert_allclose(
        metrics.negative_log_likelihood(probs, labels),
        sk.log_loss(y, p, labels=range(4)),
        rtol=1e-5,
    )
    # scikit-learn's multi-class Brier score is the same sum over classes
    np.testing.assert_allclose(
        metrics.brier_score(probs, labels), sk.brier_score_loss(y, p, labels=range(4)), rtol=1e-5
    )


def test_binary_brier_is_twice_scikit_learns_positive_class_score():
    probs = jnp.array([[0.9, 0.1], [0.3, 0.7], [0.5, 0.5], [0.2, 0.8]])
    labels = jnp.array([0, 0, 1, 1])
    expected = 2 * sk.brier_score_loss(np.asarray(labels), np.asarray(probs[:, 1]))
    np.testing.assert_allclose(metrics.brier_score(probs, labels), expected, rtol=1e-6)
    # by hand: (0.02 + 0.98 + 0.5 + 0.08) / 4
    np.testing.assert_allclose(metrics.brier_score(probs, labels), 0.395, rtol=1e-6)


def reference_ece(probs, labels, edges_of):
    """A loop over bins, written independently of the vectorised metric."""
    probs, labels = np.asarray(probs, np.float64), np.asarray(labels)
    confidence, correct = probs.max(-1), probs.argmax(-1) == labels
    total = 0.0
    for members in edges_of(confidence):
        if members.any():
            total += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return total


def equal_width(m):
    def members(confidence):
        edges = np.linspace(0, 1, m + 1)
        return [
            ((confidence > lo) | ((b == 0) & (confidence == 0))) & (confidence <= hi)
            for b, (lo, hi) in enumerate(itertools.pairwise(edges))
        ]

    return members


def equal_mass(m):
    def members(confidence):
        order = np.argsort(confidence, kind="stable")
        n = len(order)  # bin b takes the ranks in [n b / m, n (b + 1) / m)
        chunks = [order[-(-n * b // m) : -(-n * (b + 1) // m)] for b in range(m)]
        return [np.isin(np.arange(len(confidence)), chunk) for chunk in chunks]

    return members


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("count", [1, 5, 15])
def test_ece_matches_a_loop_over_bins(seed, count):
    probs, labels = random_predictions(seed, n=301)
    np.testing.assert_allclose(
        metrics.expected_calibration_error(probs, labels, metrics.EqualWidthBins(count)),
        reference_ece(probs, labels, equal_width(count)),
        atol=1e-6,
    )
    np.testing.assert_allclose(
        metrics.expected_calibration_error(probs, labels, metrics.EqualMassBins(count)),
        reference_ece(probs, labels, equal_mass(count)),
        atol=1e-6,
    )


def test_ece_by_hand():
    # confidences 0.55, 0.65, 0.85, 0.95; correct: yes, no, yes, yes
    probs = jnp.array([[0.55, 0.45], [0.65, 0.35], [0.15, 0.85], [0.95, 0.05]])
    labels = jnp.array([0, 1, 1, 0])
    # equal mass, two bins: {0.55, 0.65} with accuracy 1/2, {0.85, 0.95} with accuracy 1
    # ECE = 1/2 |1/2 - 0.6| + 1/2 |1 - 0.9| = 0.1
    ece = metrics.expected_calibration_error(probs, labels, metrics.EqualMassBins(2))
    np.testing.assert_allclose(ece, 0.1, atol=1e-6)
    # one bin: |3/4 - 0.75| = 0
    ece = metrics.expected_calibration_error(probs, labels, metrics.EqualWidthBins(1))
    np.testing.assert_allclose(ece, 0.0, atol=1e-6)
    # ten bins of width 0.1: every example alone, ECE = mean |a - c| = (0.45+0.65+0.15+0.05)/4
    ece = metrics.expected_calibration_error(probs, labels, metrics.EqualWidthBins(10))
    np.testing.assert_allclose(ece, 0.325, atol=1e-6)


def test_a_calibrated_predictor_has_small_ece_and_an_overconfident_one_does_not():
    key_p, key_y = jax.random.split(jax.random.key(0))
    p = jax.random.uniform(key_p, (20000,), minval=0.5, maxval=1.0)
    correct = jax.random.uniform(key_y, (20000,)) < p  # right with probability p: calibrated
    probs = jnp.stack([p, 1 - p], -1)
    labels = jnp.where(correct, 0, 1)
    calibrated = metrics.expected_calibration_error(probs, labels)
    assert calibrated < 0.02
    sharpened = jnp.stack([jnp.sqrt(p), 1 - jnp.sqrt(p)], -1)  # claims more than it knows
    assert metrics.expected_calibration_error(sharpened, labels) > 0.05 + calibrated


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("decimals", [None, 1])  # 1 decimal: many ties
def test_ood_auroc_and_auprc_match_scikit_learn(seed, decimals):
    rng = np.random.default_rng(seed)
    in_scores = rng.normal(0.0, 1.0, size=150)
    out_scores = rng.normal(1.0, 1.0, size=60)
    if decimals is not None:
        in_scores, out_scores = in_scores.round(decimals), out_scores.round(decimals)
    y = np.r_[np.zeros(150), np.ones(60)]
    s = np.r_[in_scores, out_scores]
    np.testing.assert_allclose(
        metrics.ood_auroc(in_scores, out_scores), sk.roc_auc_score(y, s), rtol=1e-5
    )
    np.testing.assert_allclose(
        metrics.ood_auprc(in_scores, out_scores), sk.average_precision_score(y, s), rtol=1e-5
    )


def test_ood_detection_extremes():
    low, high = jnp.array([0.1, 0.2, 0.3]), jnp.array([0.7, 0.8])
    assert float(metrics.ood_auroc(low, high)) == 1.0
    assert float(metrics.ood_auroc(high, low)) == 0.0
    assert float(metrics.ood_auprc(low, high)) == 1.0
    # a constant score cannot rank: AUROC one half, AUPRC the positive rate
    assert float(metrics.ood_auroc(jnp.zeros(3), jnp.zeros(2))) == 0.5
    np.testing.assert_allclose(metrics.ood_auprc(jnp.zeros(3), jnp.zeros(2)), 2 / 5)


def test_accuracy_coverage_curve_matches_a_loop():
    probs, labels = random_predictions(3, n=50)
    uncertainty = metrics.predictive_entropy(probs)
    curve = metrics.accuracy_coverage_curve(probs, labels, uncertainty)
    order = np.argsort(np.asarray(uncertainty), kind="stable")
    correct = np.asarray(probs).argmax(-1)[order] == np.asarray(labels)[order]
    expected = [correct[: j + 1].mean() for j in range(50)]
    np.testing.assert_allclose(curve.accuracy, expected, rtol=1e-6)
    np.testing.assert_allclose(curve.coverage, np.arange(1, 51) / 50)
    np.testing.assert_allclose(
        metrics.area_under_accuracy_coverage(probs, labels, uncertainty), np.mean(expected)
    )


def test_rejecting_the_wrong_predictions_first_maximises_the_area():
    probs, labels = random_predictions(4, n=40)
    wrong = (jnp.argmax(probs, -1) != labels).astype(jnp.float32)
    accuracy = float(metrics.accuracy(probs, labels))
    oracle = float(metrics.area_under_accuracy_coverage(probs, labels, wrong))
    backwards = float(metrics.area_under_accuracy_coverage(probs, labels, -wrong))
    # the oracle keeps accuracy 1 until only wrong predictions are left
    n, right = 40, round(accuracy * 40)
    expected = (right + sum(right / j for j in range(right + 1, n + 1))) / n
    np.testing.assert_allclose(oracle, expected, rtol=1e-5)
    assert backwards < accuracy < oracle


def test_entropy_is_log_k_for_uniform_and_zero_for_one_hot():
    probs = jnp.array([[0.25] * 4, [0.0, 1.0, 0.0, 0.0]])
    np.testing.assert_allclose(metrics.predictive_entropy(probs), [np.log(4), 0.0], atol=1e-6)


def test_metrics_are_jittable():
    probs, labels = random_predictions(5)
    eager = metrics.expected_calibration_error(probs, labels, metrics.EqualMassBins(10))
    jitted = jax.jit(metrics.expected_calibration_error, static_argnums=2)(
        probs, labels, metrics.EqualMassBins(10)
    )
    np.testing.assert_allclose(eager, jitted, rtol=1e-6)


@pytest.mark.parametrize(
    "metric",
    [
        metrics.accuracy,
        metrics.negative_log_likelihood,
        metrics.brier_score,
        metrics.expected_calibration_error,
    ],
)
def test_bad_labels_and_shapes_are_named(metric):
    probs = jnp.array([[0.7, 0.3], [0.4, 0.6]])
    with pytest.raises(ValueError, match=r"labels\[1\] = 2 is out of range.*0\.\.1"):
        metric(probs, jnp.array([0, 2]))
    with pytest.raises(ValueError, match=r"labels\[0\] = -1 is out of range"):
        metric(probs, jnp.array([-1, 0]))
    with pytest.raises(ValueError, match=r"shape \(3,\).*2 examples"):
        metric(probs, jnp.array([0, 1, 1]))
    with pytest.raises(ValueError, match="integer class indices"):
        metric(probs, jnp.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"shape \(2,\); give class probabilities"):
        metric(probs[0], jnp.array([0, 1]))
    with pytest.raises(ValueError, match=r"probs\[1\] sums to 1.6.*softmax"):
        metric(jnp.array([[0.7, 0.3], [0.8, 0.8]]), jnp.array([0, 1]))


def test_bad_scores_and_bins_are_named():
    with pytest.raises(ValueError, match="out_scores has shape"):
        metrics.ood_auroc(jnp.ones(3), jnp.ones((2, 2)))
    with pytest.raises(ValueError, match="in_scores has shape \\(0,\\)"):
        metrics.ood_auprc(jnp.ones(0), jnp.ones(2))
    with pytest.raises(ValueError, match="3 scores for 2 examples"):
        metrics.accuracy_coverage_curve(jnp.eye(2), jnp.array([0, 1]), jnp.ones(3))
    with pytest.raises(ValueError, match="count must be a positive int"):
        metrics.EqualMassBins(0)
    with pytest.raises(TypeError, match="EqualWidthBins"):
        metrics.expected_calibration_error(jnp.eye(2), jnp.array([0, 1]), 10)

"""Out-of-distribution detection from an uncertainty score: AUROC and AUPRC.

Out-of-distribution examples are the positive class: a good score is higher on them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from models.metrics._checks import check_scores


def ood_auroc(in_scores: jax.Array, out_scores: jax.Array) -> jax.Array:
    """The area under the ROC curve for telling out-of-distribution examples from
    in-distribution ones by thresholding an uncertainty score.

    It is the probability that a random out-of-distribution example scores higher than a
    random in-distribution one, ties counting one half (the Mann–Whitney statistic):
    ``(Σ_{j∈out} rank_j − n_out(n_out+1)/2) / (n_in n_out)`` with tied scores given their
    average rank. 0.5 is chance; it equals ``sklearn.metrics.roc_auc_score``.

    Args:
        in_scores: ``[n_in]`` uncertainty scores of in-distribution examples.
        out_scores: ``[n_out]`` uncertainty scores of out-of-distribution examples.

    Returns:
        A scalar in ``[0, 1]``.

    Raises:
        ValueError: if either set of scores is empty or not a vector.

    Example:
        >>> import jax.numpy as jnp
        >>> # pairs (out > in): 3 > 1, 3 > 2, 2 = 2 (a half), 2 > 1: 3.5 of 4
        >>> float(ood_auroc(jnp.array([1.0, 2.0]), jnp.array([3.0, 2.0])))
        0.875
    """
    in_scores = check_scores(in_scores, "in_scores")
    out_scores = check_scores(out_scores, "out_scores")
    return _ood_auroc(in_scores, out_scores)


@jax.jit
def _ood_auroc(in_scores, out_scores):
    n_in, n_out = in_scores.shape[0], out_scores.shape[0]
    pooled = jnp.sort(jnp.concatenate([in_scores, out_scores]))
    below = jnp.searchsorted(pooled, out_scores, side="left")
    through = jnp.searchsorted(pooled, out_scores, side="right")
    ranks = (below + through + 1) / 2  # 1-based, ties averaged
    return (jnp.sum(ranks) - n_out * (n_out + 1) / 2) / (n_in * n_out)


def ood_auprc(in_scores: jax.Array, out_scores: jax.Array) -> jax.Array:
    """The area under the precision–recall curve for detecting out-of-distribution
    examples (the positives) by an uncertainty score, as average precision.

    ``AP = Σ_n (R_n − R_{n−1}) P_n`` over the distinct score thresholds in decreasing
    order, where ``P_n``, ``R_n`` are the precision and recall of calling everything scoring
    at least the ``n``-th threshold out-of-distribution. Equal to
    ``sklearn.metrics.average_precision_score``. Chance level is ``n_out / (n_in + n_out)``.

    Args:
        in_scores: ``[n_in]`` uncertainty scores of in-distribution examples.
        out_scores: ``[n_out]`` uncertainty scores of out-of-distribution examples.

    Returns:
        A scalar in ``[0, 1]``.

    Raises:
        ValueError: if either set of scores is empty or not a vector.

    Example:
        >>> import jax.numpy as jnp
        >>> # ranked: 0.9 (out), 0.8 (in), 0.7 (out): AP = (1/2)(1/1) + (1/2)(2/3)
        >>> round(float(ood_auprc(jnp.array([0.8]), jnp.array([0.9, 0.7]))), 4)
        0.8333
    """
    in_scores = check_scores(in_scores, "in_scores")
    out_scores = check_scores(out_scores, "out_scores")
    return _ood_auprc(in_scores, out_scores)


@jax.jit
def _ood_auprc(in_scores, out_scores):
    scores = jnp.concatenate([in_scores, out_scores])
    positive = jnp.concatenate([jnp.zeros(in_scores.shape[0]), jnp.ones(out_scores.shape[0])])
    order = jnp.argsort(-scores, stable=True)
    descending, positive = -scores[order], positive[order]  # ascending in -score
    true_positives = jnp.cumsum(positive)
    # Each positive adds 1/n_out of recall at the threshold of its score: the precision
    # there is counted at the last example sharing that score.
    last_tied = jnp.searchsorted(descending, descending, side="right") - 1
    precision = true_positives[last_tied] / (last_tied + 1)
    return jnp.sum(positive * precision) / out_scores.shape[0]

"""Gibbs on the hidden states of a discrete HMM (a Scan) against forward–backward."""

import jax
import jax.numpy as jnp
import numpy as np

from inference import mcmc
from ppl import Scan, categorical, gen, normal

TRANSITION = jnp.array([[0.8, 0.2], [0.3, 0.7]])
MEANS = jnp.array([-1.0, 1.0])
OBSERVED = jnp.array([-0.9, -1.4, 0.3, 1.2, 0.8, -0.2])


@gen
def step(previous, _):
    z = categorical(TRANSITION[previous]) @ "z"
    normal(MEANS[z], 1.0) @ "x"
    return z, z


@gen
def hmm():
    return Scan(step, length=6)(0, None) @ "chain"


def smoothed_marginals():
    """P(z_t = 1 | x_1..T) by the forward–backward algorithm (z_0 = 0 fixed)."""
    likelihood = np.exp(-0.5 * (np.asarray(OBSERVED)[:, None] - np.asarray(MEANS)) ** 2)
    a = np.asarray(TRANSITION)
    forward = [a[0] * likelihood[0]]
    for t in range(1, 6):
        forward.append((forward[-1] @ a) * likelihood[t])
    backward = [np.ones(2)]
    for t in range(5, 0, -1):
        backward.insert(0, a @ (likelihood[t] * backward[0]))
    marginals = np.array([f * b for f, b in zip(forward, backward, strict=True)])
    return marginals[:, 1] / marginals.sum(axis=1)


def test_gibbs_through_a_scan_matches_forward_backward():
    chains, sweeps = 4000, 25
    kernel = mcmc.gibbs(hmm, ("chain", "z"))
    traces, _ = jax.vmap(lambda k: hmm.generate(k, {"chain": {"x": OBSERVED}}, ()))(
        jax.random.split(jax.random.key(0), chains)
    )

    def run(trace, key):
        return jax.lax.scan(
            lambda t, k: (kernel.step(k, t)[0], None), trace, jax.random.split(key, sweeps)
        )[0]

    final = jax.jit(jax.vmap(run))(traces, jax.random.split(jax.random.key(1), chains))
    empirical = np.asarray(final.choices["chain", "z"]).mean(axis=0)
    exact = smoothed_marginals()
    standard_error = np.sqrt(exact * (1 - exact) / chains)
    assert np.all(np.abs(empirical - exact) < 5 * standard_error), (empirical, exact)
    np.testing.assert_array_equal(final.choices["chain", "x"][0], OBSERVED)

"""Gibbs by enumeration: the joint chain distribution against the exact posterior."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from inference import mcmc
from inference.mcmc._kernel import Kernel
from ppl import Vmap, categorical, flip, gen, normal

X = jnp.array([2.5, -0.3, 1.1])
SHIFTS = jnp.array([-1.0, 0.0, 1.0])


@gen
def mixture():
    k = categorical(jnp.array([0.2, 0.5, 0.3])) @ "k"
    zs = Vmap(flip, in_axes=None, axis_size=3)(0.4) @ "z"
    return Vmap(normal, in_axes=(0, None))(2.0 * zs + SHIFTS[k], 1.0) @ "x"


def exact_posterior():
    states = list(itertools.product(range(3), itertools.product(range(2), repeat=3)))
    logp = np.array(
        [float(mixture.assess({"k": k, "z": jnp.array(z), "x": X}, ())[0]) for k, z in states]
    )
    p = np.exp(logp - logp.max())
    return states, p / p.sum()


def chain_states(kernel, chains=2000, steps=30):
    traces, _ = jax.vmap(lambda key: mixture.generate(key, {"x": X}, ()))(
        jax.random.split(jax.random.key(0), chains)
    )

    def run(trace, key):
        return jax.lax.scan(
            lambda t, k: (kernel.step(k, t)[0], None), trace, jax.random.split(key, steps)
        )[0]

    final = jax.jit(jax.vmap(run))(traces, jax.random.split(jax.random.key(1), chains))
    k = np.asarray(final.choices["k"])
    z = np.asarray(final.choices["z"])
    return k * 8 + z[:, 0] * 4 + z[:, 1] * 2 + z[:, 2]


def chi_square_rejects(kernel) -> bool:
    states, probs = exact_posterior()
    codes = chain_states(kernel)
    counts = np.bincount(codes, minlength=24)
    order = [k * 8 + z[0] * 4 + z[1] * 2 + z[2] for k, z in states]
    expected = len(codes) * probs
    observed = counts[order]
    keep = expected > 5  # pool the rare states into one cell
    chi2_cells = list((observed[keep] - expected[keep]) ** 2 / expected[keep])
    rest_o, rest_e = observed[~keep].sum(), expected[~keep].sum()
    if rest_e > 0:
        chi2_cells.append((rest_o - rest_e) ** 2 / rest_e)
    dof = len(chi2_cells) - 1
    # Upper 1e-4 quantile of chi-square(dof), Wilson–Hilferty approximation (z = 3.72).
    threshold = dof * (1 - 2 / (9 * dof) + 3.72 * np.sqrt(2 / (9 * dof))) ** 3
    return float(np.sum(chi2_cells)) > threshold


def test_gibbs_sweeps_leave_the_exact_posterior_invariant():
    kernel = mcmc.cycle(mcmc.gibbs(mixture, "k"), mcmc.gibbs(mixture, "z"))
    assert not chi_square_rejects(kernel)


def test_the_chi_square_check_rejects_a_gibbs_step_that_ignores_the_likelihood():
    honest = mcmc.gibbs(mixture, "z")

    def prior_only(key, trace):
        new, _ = mixture.regenerate(key, trace, "z")  # resample z from the prior: wrong
        return new, None

    broken = mcmc.cycle(mcmc.gibbs(mixture, "k"), Kernel(honest.init, prior_only))
    assert chi_square_rejects(broken)


def test_gibbs_refuses_a_continuous_choice():
    trace, _ = mixture.generate(jax.random.key(0), {"x": X}, ())
    with pytest.raises(ValueError, match=r"'x' has support Real\(\).*support=jnp.arange"):
        mcmc.gibbs(mixture, "x").step(jax.random.key(1), trace)


@gen
def point(p):
    z = flip(p) @ "z"
    return normal(2.0 * z, 1.0) @ "x"


def test_gibbs_reads_an_index_wildcard_as_the_batched_address():
    @gen
    def points():
        return Vmap(point, in_axes=None, axis_size=3)(0.4) @ "points"

    trace, _ = points.generate(jax.random.key(0), {"points": {"x": X}}, ())
    key = jax.random.key(1)
    batched, _ = mcmc.gibbs(points, ("points", "z")).step(key, trace)
    wildcard, _ = mcmc.gibbs(points, ("points", ..., "z")).step(key, trace)
    np.testing.assert_array_equal(wildcard.choices["points", "z"], batched.choices["points", "z"])

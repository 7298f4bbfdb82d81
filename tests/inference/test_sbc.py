"""Simulation-based calibration of MCMC kernels, and mutants the same test must reject.

For each simulation, (theta*, data) is drawn from the joint; a reversible kernel run from
theta* for K steps and, independently, for L - K steps (K uniform on 0..L) gives L draws
among which theta* sits at a uniform position of a stationary chain, so its rank is uniform
on 0..L exactly (ties broken at random). The chi-square threshold is the upper 1e-4 quantile.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from inference import mcmc
from inference.mcmc import _unconstrained
from inference.mcmc._kernel import Kernel
from inference.mcmc._mh import _accept
from ppl import Vmap, categorical, gamma, gen, normal, poisson, select

DRAWS = 19  # L: ranks take L + 1 = 20 values
SIMULATIONS = 1000


@gen
def gamma_poisson():
    rate = gamma(3.0, 2.0) @ "rate"
    return Vmap(poisson, in_axes=None, axis_size=3)(rate) @ "counts"


@gen
def discrete_mixture():
    z = categorical(jnp.array([0.5, 0.3, 0.2])) @ "z"
    return normal(jnp.array([-1.0, 0.5, 1.5])[z], 1.0) @ "x"


def ranks(model, kernel, statistic, key):
    def one(key):
        sim_key, k_key, a_key, b_key, tie_key = jax.random.split(key, 5)
        truth = model.simulate(sim_key, ())
        k = jax.random.randint(k_key, (), 0, DRAWS + 1)

        def chain(key, length):
            def body(trace, inputs):
                i, step_key = inputs
                new, _ = kernel.step(step_key, trace)
                new = jax.tree.map(lambda a, b: jnp.where(i < length, a, b), new, trace)
                return new, (statistic(new), i < length)

            steps = (jnp.arange(DRAWS), jax.random.split(key, DRAWS))
            return jax.lax.scan(body, truth, steps)[1]

        values_a, used_a = chain(a_key, k)
        values_b, used_b = chain(b_key, DRAWS - k)
        values = jnp.concatenate([values_a, values_b])
        used = jnp.concatenate([used_a, used_b])
        star = statistic(truth)
        below = jnp.sum(used & (values < star))
        ties = jnp.sum(used & (values == star))
        return below + jax.random.randint(tie_key, (), 0, ties + 1)

    return np.asarray(jax.jit(jax.vmap(one))(jax.random.split(key, SIMULATIONS)))


def uniformity_rejected(rank_values) -> bool:
    counts = np.bincount(rank_values, minlength=DRAWS + 1)
    expected = len(rank_values) / (DRAWS + 1)
    chi2 = float(np.sum((counts - expected) ** 2 / expected))
    return chi2 > 52.0  # chi-square(19 dof) upper 1e-4 quantile is 51.6


def rate(trace):
    return trace.choices["rate"]


CALIBRATED = {
    "mh": lambda: (gamma_poisson, mcmc.mh(gamma_poisson, select("rate")), rate),
    "nuts": lambda: (
        gamma_poisson,
        mcmc.nuts(gamma_poisson, select("rate"), 0.6, jnp.ones(1)),
        rate,
    ),
    "hmc": lambda: (
        gamma_poisson,
        mcmc.hmc(gamma_poisson, select("rate"), 0.3, jnp.ones(1), 5),
        rate,
    ),
    "gibbs": lambda: (
        discrete_mixture,
        mcmc.gibbs(discrete_mixture, "z"),
        lambda t: t.choices["z"],
    ),
}


@pytest.mark.parametrize("name", sorted(CALIBRATED))
def test_kernel_is_calibrated(name):
    model, kernel, statistic = CALIBRATED[name]()
    assert not uniformity_rejected(ranks(model, kernel, statistic, jax.random.key(7)))


def test_sbc_rejects_mh_with_a_wrong_acceptance_ratio():
    def step(key, trace):
        propose_key, accept_key = jax.random.split(key)
        new, _ = gamma_poisson.regenerate(propose_key, trace, select("rate"))
        # The mutant: the joint-density ratio, forgetting the proposal's correction.
        return _accept(accept_key, trace, new, new.score - trace.score)

    kernel = Kernel(lambda t: t, step)
    assert uniformity_rejected(ranks(gamma_poisson, kernel, rate, jax.random.key(7)))


def test_sbc_rejects_nuts_without_the_log_jacobian(monkeypatch):
    def no_jacobian(self, transforms, position, values):
        return jnp.zeros(())

    monkeypatch.setattr(_unconstrained.Unconstrained, "_log_jacobian", no_jacobian)
    kernel = mcmc.nuts(gamma_poisson, select("rate"), 0.6, jnp.ones(1))
    assert uniformity_rejected(ranks(gamma_poisson, kernel, rate, jax.random.key(7)))

"""Models and settings shared by the tests of ``mcmc.run``."""

import jax
import jax.numpy as jnp

from ppl import Vmap, gen, normal

KEY = jax.random.key(3)


@gen
def location():
    mu = normal(0.0, 2.0) @ "mu"
    return Vmap(normal, in_axes=(None, None), axis_size=4)(mu, 1.0) @ "ys"


DATA = {"ys": jnp.array([0.3, 1.1, 0.7, 1.6])}


@gen
def location3():
    mu = normal(0.0, 1.0) @ "mu"
    return Vmap(normal, in_axes=(None, None), axis_size=3)(mu, 1.0) @ "ys"


SETTINGS = dict(num_chains=2, num_warmup=50, num_samples=40, num_chunks=4, progress_bar=False)

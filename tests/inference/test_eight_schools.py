"""Eight schools (non-centered) by NUTS against a quadrature reference posterior.

With theta integrated out, y_j | mu, tau ~ N(mu, sqrt(sigma_j^2 + tau^2)), so the posterior of
(mu, tau) is two-dimensional and its means come from a fine grid.
"""

import importlib.util
import pathlib

import arviz
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.stats import norm

from inference import mcmc

EXAMPLE = pathlib.Path(__file__).parents[2] / "examples" / "eight_schools.py"


def load_example():
    spec = importlib.util.spec_from_file_location("eight_schools", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reference_means(y, sigma):
    mu = jnp.linspace(-30.0, 40.0, 1401)
    log_tau = jnp.linspace(jnp.log(1e-3), jnp.log(300.0), 1400)
    m, lt = jnp.meshgrid(mu, log_tau, indexing="ij")
    tau = jnp.exp(lt)
    log_post = (
        norm.logpdf(m, 0.0, 5.0)
        + jnp.log(2 / (jnp.pi * 5.0 * (1 + (tau / 5.0) ** 2)))  # half-Cauchy(5)
        + lt  # d tau = tau d log tau
        + jnp.sum(
            norm.logpdf(
                y[:, None, None], m[None], jnp.sqrt(sigma[:, None, None] ** 2 + tau[None] ** 2)
            ),
            axis=0,
        )
    )
    w = jnp.exp(log_post - log_post.max())
    w = w / w.sum()
    mean_mu, mean_tau = jnp.sum(w * m), jnp.sum(w * tau)
    return {
        "mu": (float(mean_mu), float(jnp.sqrt(jnp.sum(w * (m - mean_mu) ** 2)))),
        "tau": (float(mean_tau), float(jnp.sqrt(jnp.sum(w * (tau - mean_tau) ** 2)))),
    }


def test_nuts_matches_the_reference_posterior():
    example = load_example()
    data = mcmc.run(
        example.eight_schools,
        {"y": example.Y},
        jax.random.key(1),
        args=(example.SIGMA,),
        num_chains=4,
        num_warmup=500,
        num_samples=500,
        progress_bar=False,
    )
    reference = reference_means(example.Y, example.SIGMA)
    assert 4.0 < reference["mu"][0] < 4.8 and 3.2 < reference["tau"][0] < 4.0  # known values
    ess = arviz.ess(data)
    for name, (mean, sd) in reference.items():
        draws = data.posterior[name].values
        tolerance = 5 * sd / np.sqrt(float(ess[name]))
        assert abs(draws.mean() - mean) < tolerance, (name, draws.mean(), mean, tolerance)
    assert int(data.sample_stats["diverging"].sum()) < 20


def test_example_script_runs_and_writes_plots(tmp_path):
    example = load_example()
    example.main(chains=2, warmup=50, samples=50, out=str(tmp_path))
    assert (tmp_path / "eight_schools_trace.png").stat().st_size > 10_000
    assert (tmp_path / "eight_schools_rank.png").stat().st_size > 10_000

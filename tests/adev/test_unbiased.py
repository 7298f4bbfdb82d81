"""Every gradient strategy, alone and mixed, is unbiased on models with exact gradients.

One registry table (``CASES``): a row is an expectation, its arguments, and the exact gradient
of its value. For each row, ``N`` independent gradient estimates (one ``jit(vmap(...))``) must
average to the exact gradient within ``Z`` standard errors, per coordinate (Bonferroni over
~80 coordinates at |z| < 5 keeps a correct estimator's false-failure rate below 1e-4), and
``N`` is large enough that a 20% bias would fail (checked per row: ``Z·SE < 0.2·|exact|``).
A deliberately biased strategy (REINFORCE without its score term) must fail the same test.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ppl import (
    Scan,
    Vmap,
    bernoulli,
    categorical,
    flip,
    gamma,
    gen,
    geometric,
    normal,
    poisson,
)
from ppl.adev import (
    Estimator,
    constant,
    enum,
    expectation,
    learned,
    leave_one_out,
    mvd,
    reinforce,
    running_mean,
)

N = 20_000
Z = 5.0


# -- models with closed-form expectations -----------------------------------------------------
@gen
def gaussian(mu, log_sigma):
    return normal(mu, jnp.exp(log_sigma)) @ "z"


@expectation
def gaussian_square(key, mu, log_sigma):
    z = gaussian.simulate(key, (mu, log_sigma)).retval
    return (z - 1.0) ** 2  # E = (mu - 1)^2 + sigma^2


def gaussian_exact(mu, log_sigma):
    return (mu - 1.0) ** 2 + jnp.exp(2 * log_sigma)


@gen
def coin_and_gauss(mu, p):
    z = normal(mu, 1.0) @ "z"
    c = flip(p) @ "c"
    return z, c


@expectation
def product(key, mu, p):
    z, c = coin_and_gauss.simulate(key, (mu, p)).retval
    return (z - 1.0) ** 2 * (1.0 + 2.0 * c)


def product_exact(mu, p):
    return ((mu - 1.0) ** 2 + 1.0) * (1.0 + 2.0 * p)


W = jnp.array([0.5, -1.0, 2.0])


@gen
def three_way(logits):
    return categorical(logits=logits) @ "k"


@expectation
def categorical_payoff(key, logits):
    k = three_way.simulate(key, (logits,)).retval
    return W[k] ** 2


def categorical_exact(logits):
    return jnp.sum(jax.nn.softmax(logits) * W**2)


@gen
def gamma_poisson(a, b):
    rate = gamma(a, b) @ "rate"
    return poisson(rate) @ "n"


@expectation
def poisson_square(key, a, b):
    n = gamma_poisson.simulate(key, (a, b)).retval
    return n.astype(jnp.float32) ** 2  # E[n^2] = E[rate + rate^2]


def poisson_exact(a, b):
    return a / b + a * (a + 1) / b**2


@gen
def waiting(p):
    return geometric(p) @ "n"


@expectation
def geometric_mean(key, p):
    return waiting.simulate(key, (p,)).retval.astype(jnp.float32)  # (1 - p) / p


def geometric_exact(p):
    return (1 - p) / p


# -- draws inside loops ---------------------------------------------------------------------------
T = 4


@expectation
def scanned(key, theta):
    """Draws inside a raw ``jax.lax.scan`` body: E = sum_t (theta_t^2 + 1)."""

    def step(total, inputs):
        k, th = inputs
        z = normal.reinforce(baseline=1.0).simulate(k, (th, 1.0)).retval
        return total + z**2, z

    total, _ = jax.lax.scan(step, jnp.zeros(()), (jax.random.split(key, T), theta))
    return total


@gen
def walk_step(x, th):
    nxt = normal(x + th, 1.0) @ "x"
    return nxt, nxt


walk = Scan(walk_step)


@expectation
def scan_combinator(key, theta):
    """A Gaussian random walk x_t = x_{t-1} + theta_t + e_t: E[x_T^2] = (sum theta)^2 + T."""
    tr = walk.simulate(key, (jnp.zeros(()), theta))
    return tr.retval[0] ** 2


@expectation
def fori(key, theta):
    def body(i, total):
        z = normal.reinforce().simulate(jax.random.fold_in(key, i), (theta, 1.0)).retval
        return total + z**2

    return jax.lax.fori_loop(0, T, body, jnp.zeros(()))  # T (theta^2 + 1)


@expectation
def branching(key, theta, p):
    k1, k2 = jax.random.split(key)
    c = flip.reinforce().simulate(k1, (p,)).retval

    def heads(k):
        return normal.reinforce().simulate(k, (theta, 1.0)).retval ** 2

    def tails(k):
        return jnp.asarray(3.0)

    return jax.lax.cond(c, heads, tails, k2)  # p (theta^2 + 1) + (1 - p) 3


@gen
def particle(mu):
    return normal(mu, 1.0) @ "z"


particles = Vmap(particle, in_axes=None, axis_size=8)


@expectation
def plate_square(key, mu):
    zs = particles.simulate(key, (mu,)).retval
    return jnp.mean((zs - 1.0) ** 2)  # (mu - 1)^2 + 1


@expectation
def learned_baseline(key, mu, b):
    z = normal.reinforce(baseline=learned(b)).simulate(key, (mu, 1.0)).retval
    return (z - 1.0) ** 2


@expectation
def through_custom_derivatives(key, mu):
    """relu, softplus and logaddexp have custom JVPs: 3 z + log 2 written through them."""
    z = gaussian.simulate(key, (mu, 0.0)).retval
    odd = jax.nn.relu(z) - jax.nn.relu(-z) + jax.nn.softplus(z) - jax.nn.softplus(-z)
    return odd + jnp.logaddexp(z, z) + jax.nn.relu(z) ** 2  # E[relu(z)^2] adds a smooth term


def custom_exact(mu):
    # E[relu(z)^2] for z ~ N(mu, 1) = (mu^2 + 1) Phi(mu) + mu phi(mu)
    cdf, pdf = jax.scipy.stats.norm.cdf(mu), jax.scipy.stats.norm.pdf(mu)
    return 3 * mu + jnp.log(2.0) + (mu**2 + 1) * cdf + mu * pdf


X_IN = jnp.array([0.5, -1.0, 2.0])


@gen
def linear_gaussian(w):
    return normal(w @ X_IN, 1.0) @ "z"  # a vector of 2 from a 2x3 matrix parameter


@expectation
def matrix_square(key, w):
    return jnp.sum(linear_gaussian.simulate(key, (w,)).retval ** 2)  # |W x|^2 + 2


@expectation
def composite(key, mu, p):
    """Expectations compose linearly: E1 + 2 E2."""
    k1, k2 = jax.random.split(key)
    return gaussian_square.estimate(k1, mu, 0.0) + 2.0 * product.estimate(k2, mu, p)


@expectation
def multi_sample(key, mu, p):
    """An expectation vmapped over 4 keys inside another: a 4-sample average."""
    keys = jax.random.split(key, 4)
    return jnp.mean(jax.vmap(lambda k: product.estimate(k, mu, p))(keys))


# -- a user-defined strategy: a deliberately biased one -------------------------------------------
# Bernoulli logits with one logit exactly 0 (a zero-initialised layer): the score there is
# x - 1/2, where NumPyro's autodiff gives x.
COIN_LOGITS = jnp.array([0.0, 0.7])
COIN_PAYOFF = jnp.array([2.0, -1.0])


@gen
def logit_coins(logits):
    return bernoulli(logits=logits) @ "b"


@expectation
def logit_payoff(key, logits):
    return jnp.sum(logit_coins.simulate(key, (logits,)).retval * COIN_PAYOFF)


def logit_exact(logits):
    return jnp.sum(jax.nn.sigmoid(logits) * COIN_PAYOFF)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class forgetful(Estimator):
    """REINFORCE without the score term: the mutant every unbiasedness test must reject."""

    def local(self, site, context):
        return jax.lax.stop_gradient(site.sample())


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    objective: object
    args: tuple
    exact: object  # the expectation's value as a function of the args
    unbiased: bool = True


MU, LOG_SIGMA, P = 0.3, -0.2, 0.3
LOGITS = jnp.array([0.2, -0.5, 0.4])
P_COPIES = jnp.array([0.2, 0.5, 0.7])
THETA = jnp.array([0.5, -0.3, 0.8, 0.1])
W_MATRIX = jnp.array([[0.3, -0.2, 0.4], [0.1, 0.5, -0.3]])


def matrix_exact(w):
    return jnp.sum((w @ X_IN) ** 2) + 2.0


CASES = [
    Case("gaussian/reparam", gaussian_square, (MU, LOG_SIGMA), gaussian_exact),
    Case(
        "gaussian/reinforce",
        gaussian_square.with_estimators({"z": reinforce()}),
        (MU, LOG_SIGMA),
        gaussian_exact,
    ),
    Case(
        "gaussian/reinforce+constant",
        gaussian_square.with_estimators({"z": reinforce(constant(1.5))}),
        (MU, LOG_SIGMA),
        gaussian_exact,
    ),
    Case(
        "gaussian/mvd",
        gaussian_square.with_estimators({"z": mvd()}),
        (MU, LOG_SIGMA),
        gaussian_exact,
    ),
    Case("product/reparam+reinforce", product, (MU, P), product_exact),
    Case("product/reparam+enum", product.with_estimators({"c": enum()}), (MU, P), product_exact),
    Case(
        "product/mvd+sequential-enum",
        product.with_estimators({"z": mvd(), "c": enum(vectorized=False)}),
        (MU, P),
        product_exact,
    ),
    Case(
        "product/reinforce+mvd",
        product.with_estimators({"z": reinforce(1.0), "c": mvd()}),
        (MU, P),
        product_exact,
    ),
    Case("categorical/reinforce", categorical_payoff, (LOGITS,), categorical_exact),
    Case(
        "categorical/mvd",
        categorical_payoff.with_estimators({"k": mvd()}),
        (LOGITS,),
        categorical_exact,
    ),
    Case("bernoulli logits at 0/reinforce", logit_payoff, (COIN_LOGITS,), logit_exact),
    Case(
        "bernoulli logits at 0/enum",
        logit_payoff.with_estimators({"b": enum()}),
        (COIN_LOGITS,),
        logit_exact,
    ),
    Case("gamma-poisson/reparam+reinforce", poisson_square, (2.0, 1.5), poisson_exact),
    Case(
        "gamma-poisson/reparam+mvd",
        poisson_square.with_estimators({"n": mvd()}),
        (2.0, 1.5),
        poisson_exact,
    ),
    Case("geometric/reinforce", geometric_mean, (0.4,), geometric_exact),
    Case("geometric/mvd", geometric_mean.with_estimators({"n": mvd()}), (0.4,), geometric_exact),
    Case("lax.scan/reinforce", scanned, (THETA,), lambda th: jnp.sum(th**2 + 1)),
    Case(
        "Scan/reinforce",
        scan_combinator.with_estimators({(..., "x"): reinforce()}),
        (THETA,),
        lambda th: jnp.sum(th) ** 2 + T,
    ),
    Case(
        "Scan/mvd (unrolled)",
        scan_combinator.with_estimators({(..., "x"): mvd()}),
        (THETA,),
        lambda th: jnp.sum(th) ** 2 + T,
    ),
    Case("fori_loop/reinforce", fori, (0.7,), lambda th: T * (th**2 + 1)),
    Case(
        "cond/reinforce",
        branching,
        (0.7, P),
        lambda th, p: p * (th**2 + 1) + (1 - p) * 3.0,
    ),
    Case(
        "plate/leave-one-out",
        plate_square.with_estimators({(..., "z"): reinforce(leave_one_out())}),
        (MU,),
        lambda mu: (mu - 1.0) ** 2 + 1.0,
    ),
    Case(
        "plate/reinforce",
        plate_square.with_estimators({(..., "z"): reinforce()}),
        (MU,),
        lambda mu: (mu - 1.0) ** 2 + 1.0,
    ),
    Case("learned baseline", learned_baseline, (MU, 0.7), lambda mu, b: (mu - 1.0) ** 2 + 1.0),
    Case(
        "composed expectations",
        composite,
        (MU, P),
        lambda mu, p: gaussian_exact(mu, 0.0) + 2.0 * product_exact(mu, p),
    ),
    Case("vmapped expectation/reinforce", multi_sample, (MU, P), product_exact),
    Case(
        "vmapped expectation/enum (joint over 4 copies)",
        multi_sample.with_estimators({"c": enum()}),
        (MU, P),
        product_exact,
    ),
    Case(
        "expectation.vmap/enum per copy, mean",
        product.with_estimators({"c": enum()}).vmap(in_axes=(None, 0)),
        (MU, P_COPIES),
        lambda mu, p: jnp.mean(product_exact(mu, p)),
    ),
    Case(
        "expectation.vmap/reinforce, sum",
        product.with_estimators({"c": reinforce()}).vmap(in_axes=(None, 0), reduce="sum"),
        (MU, P_COPIES),
        lambda mu, p: jnp.sum(product_exact(mu, p)),
    ),
    Case("custom derivatives/reparam", through_custom_derivatives, (0.3,), custom_exact),
    Case(
        "custom derivatives/mvd",
        through_custom_derivatives.with_estimators({"z": mvd()}),
        (0.3,),
        custom_exact,
    ),
    Case("matrix parameter/reparam", matrix_square, (W_MATRIX,), matrix_exact),
    Case(
        "matrix parameter/reinforce+baseline",
        matrix_square.with_estimators({"z": reinforce(float(matrix_exact(W_MATRIX)))}),
        (W_MATRIX,),
        matrix_exact,
    ),
    Case(
        "mutant: REINFORCE without score",
        gaussian_square.with_estimators({"z": forgetful()}),
        (MU, LOG_SIGMA),
        gaussian_exact,
        unbiased=False,
    ),
]


def _estimates(case: Case):
    keys = jax.random.split(jax.random.key(0), N)
    grads = jax.jit(jax.vmap(lambda k: case.objective.grad_estimate(k, *case.args)))(keys)
    return grads


def _z_scores(case: Case, grads) -> list[tuple[float, float, float]]:
    exact = jax.grad(case.exact, argnums=tuple(range(len(case.args))))(*case.args)
    rows = []
    for estimate, truth in zip(grads, exact, strict=True):
        if case.name == "learned baseline" and estimate is grads[1]:
            continue  # the baseline's own gradient is its regression, not the objective's
        est = np.asarray(estimate).reshape(N, -1)
        for j, t in enumerate(np.asarray(truth).reshape(-1)):
            se = est[:, j].std() / np.sqrt(N)
            rows.append((est[:, j].mean(), float(t), se))
    return rows


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_mean_gradient_matches_the_exact_gradient(case):
    rows = _z_scores(case, _estimates(case))
    # float32 rounding floor for zero-variance (exact) estimators
    z = [abs(mean - truth) / (se + 1e-5 * (1 + abs(truth))) for mean, truth, se in rows]
    if case.unbiased:
        assert max(z) < Z, rows
        # enough samples that a bias of 20% of the gradient would be caught
        scale = max(abs(truth) for _, truth, _ in rows)
        assert all(Z * se < 0.2 * scale for _, _, se in rows), rows
    else:
        assert max(z) > Z, rows


def test_enum_is_exact():
    objective = categorical_payoff.with_estimators({"k": enum()})
    value, (grad,) = objective.value_and_grad(jax.random.key(3), LOGITS)
    assert np.allclose(value, categorical_exact(LOGITS), atol=1e-6)
    assert np.allclose(grad, jax.grad(categorical_exact)(LOGITS), atol=1e-6)


def test_variance_ordering_on_a_gaussian():
    """reparam < REINFORCE with a good baseline < plain REINFORCE, on E[(z - 1)^2]."""
    keys = jax.random.split(jax.random.key(1), 4000)

    def variance(objective):
        g = jax.jit(jax.vmap(lambda k: objective.grad_estimate(k, MU, LOG_SIGMA)[0]))(keys)
        return float(jnp.var(g))

    good = float(gaussian_exact(MU, LOG_SIGMA))
    v_reparam = variance(gaussian_square)
    v_baseline = variance(gaussian_square.with_estimators({"z": reinforce(good)}))
    v_plain = variance(gaussian_square.with_estimators({"z": reinforce()}))
    assert v_reparam < v_baseline < v_plain


def test_running_mean_baseline_is_estimator_state():
    objective = gaussian_square.with_estimators({"z": reinforce(running_mean(decay=0.5))})
    state = objective.init_state(jax.random.key(0), MU, LOG_SIGMA)
    assert set(state) == {("z",)}
    step = jax.jit(lambda k, s: objective.value_and_grad(k, MU, LOG_SIGMA, state=s))
    values = []
    for i in range(20):
        value, _, state = step(jax.random.key(i), state)
        values.append(float(value))
    # the average is an exponential moving average of the values seen
    expected = values[0]
    for v in values[1:]:
        expected = expected + 0.5 * (v - expected)
    assert np.isclose(float(state[("z",)][0]), expected, rtol=1e-5)


def _primitives(jaxpr) -> set[str]:
    from jax.extend.core import jaxprs_in_params

    names = set()
    for eqn in jaxpr.eqns:
        names.add(eqn.primitive.name)
        for sub in jaxprs_in_params(eqn.params):
            names |= _primitives(sub)
    return names


def test_values_the_integrand_never_reads_are_not_traced():
    """Unused work (here a sort) is skipped, under every enumerated choice; an unused draw is
    still visited, so an estimator given for it is not refused."""

    @gen
    def chain(p):
        c = flip.enum()(p) @ "c"
        unused = jnp.sort(jnp.stack([p, 1 - p]))  # noqa: F841
        flip(p) @ "ignored"
        return c.astype(jnp.float32)

    @expectation
    def heads(key, p):
        return chain.simulate(key, (p,)).retval

    objective = heads.with_estimators({"ignored": enum()})
    jaxpr = jax.make_jaxpr(lambda k: objective.value_and_grad(k, 0.3))(jax.random.key(0))
    assert "sort" not in _primitives(jaxpr.jaxpr)
    value, (grad,) = objective.value_and_grad(jax.random.key(0), 0.3)
    assert np.isclose(value, 0.3) and np.isclose(grad, 1.0)

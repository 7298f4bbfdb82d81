"""SNGP building blocks: spectral normalization, random features, the Laplace posterior and
the mean-field adjustment, each against an exact or Monte Carlo reference."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from models import sngp
from models.last_layer import bayesian_last_layer, laplace_last_layer
from models.sngp._cosine import LARGEST_ARGUMENT, cosine
from models.training import apply_to_batch, train


# -- spectral normalization --------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(5, 3), (3, 7), (16, 16)])
def test_power_iteration_converges_to_the_largest_singular_value(shape):
    weight = jax.random.normal(jax.random.key(shape[0] * shape[1]), shape)
    top = jnp.linalg.svd(weight, compute_uv=False)[0]
    u = jax.random.normal(jax.random.key(1), (shape[0],))
    errors = []
    for iterations in (1, 5, 200):
        sigma, _ = sngp.power_iteration(weight, u, iterations)
        errors.append(float(abs(sigma - top) / top))
    assert errors[-1] < 1e-5, errors
    assert errors[0] >= errors[1] >= errors[2]
    sigma, _ = sngp.power_iteration(weight, u, 1)
    assert sigma <= top * (1 + 1e-6)  # u'Wv never exceeds the top singular value


def normalized_layer(scale, norm_bound=0.8, size=(6, 4)):
    linear = eqx.nn.Linear(size[1], size[0], key=jax.random.key(0))
    linear = eqx.tree_at(lambda layer: layer.weight, linear, scale * linear.weight)
    return eqx.nn.make_with_state(sngp.SpectralNormalization)(
        linear, norm_bound=norm_bound, key=jax.random.key(1)
    )


def test_training_calls_bring_the_layer_norm_to_the_bound():
    layer, state = normalized_layer(scale=5.0)
    weight = layer.linear.weight
    assert jnp.linalg.norm(weight, ord=2) > 2  # far above the bound 0.8
    norms = []
    for _ in range(40):  # one power iteration per training call
        _, state = layer(jnp.ones(4), state)
        weight, _ = eqx.nn.inference_mode(layer).normalized_weight(state)
        norms.append(float(jnp.linalg.norm(weight, ord=2)))
    np.testing.assert_allclose(norms[-1], 0.8, rtol=1e-4)
    # the estimate sigma_hat <= sigma, so the norm can exceed c before convergence, never after
    assert max(norms[-10:]) <= 0.8 * (1 + 1e-4)


def test_a_layer_already_within_the_bound_is_unchanged():
    layer, state = normalized_layer(scale=0.05)
    for _ in range(20):
        _, state = layer(jnp.ones(4), state)
    weight, _ = eqx.nn.inference_mode(layer).normalized_weight(state)
    np.testing.assert_allclose(weight, layer.linear.weight, rtol=1e-6)


def test_inference_mode_freezes_the_power_iteration_state():
    layer, state = normalized_layer(scale=5.0)
    start = state.get(layer.u_index)
    _, trained = layer(jnp.ones(4), state)
    assert not jnp.allclose(trained.get(layer.u_index), start)
    frozen = eqx.nn.inference_mode(layer)
    y1, after = frozen(jnp.ones(4), trained)
    y2, _ = frozen(jnp.ones(4), after)
    np.testing.assert_array_equal(after.get(layer.u_index), trained.get(layer.u_index))
    np.testing.assert_array_equal(y1, y2)


def test_the_gradient_is_that_of_the_exactly_normalized_layer_once_converged():
    layer, state = normalized_layer(scale=5.0)
    for _ in range(60):
        _, state = layer(jnp.ones(4), state)
    frozen = eqx.nn.inference_mode(layer)
    x = jnp.arange(4.0)

    def ours(weight):
        return jnp.sum(eqx.tree_at(lambda s: s.linear.weight, frozen, weight)(x, state)[0] ** 2)

    def exact(weight):  # W c / sigma_max(W) with sigma_max from the SVD (differentiable)
        sigma = jnp.linalg.svd(weight, compute_uv=False)[0]
        return jnp.sum((weight * 0.8 / sigma @ x + layer.linear.bias) ** 2)

    weight = layer.linear.weight
    np.testing.assert_allclose(ours(weight), exact(weight), rtol=1e-5)
    # d sigma / dW = u v': the stopped power-iteration vectors give the exact gradient
    np.testing.assert_allclose(jax.grad(ours)(weight), jax.grad(exact)(weight), atol=1e-4)


# -- random Fourier features ------------------------------------------------------------------
def test_random_features_approximate_the_rbf_kernel():
    layer = sngp.RandomFeatureGaussianProcess(
        3, 1, num_features=8192, length_scale=1.5, key=jax.random.key(0)
    )
    h = jax.random.normal(jax.random.key(1), (6, 3))
    features = jax.vmap(layer.features)(h)
    distances = jnp.sum((h[:, None] - h[None]) ** 2, -1)
    kernel = jnp.exp(-distances / (2 * 1.5**2))
    # Monte Carlo error of a mean of D terms bounded by 1: sd <= 1/sqrt(D) = 0.011
    np.testing.assert_allclose(features @ features.T, kernel, atol=0.05)


def test_the_random_feature_cosine_is_cos_to_float32_rounding_with_its_derivative():
    x = jnp.concatenate(
        [
            jnp.linspace(-10.0, 10.0, 20_001),  # every quadrant and its edges, densely
            1000.0 * jax.random.normal(jax.random.key(0), (20_000,)),
            jnp.array([0.0, math.pi / 4, math.pi / 2, math.pi]),
        ]
    )
    exact = np.asarray(x, np.float64)
    np.testing.assert_allclose(cosine(x), np.cos(exact), rtol=0, atol=2e-7)
    derivative = jax.jit(jax.vmap(jax.grad(cosine)))(x)
    np.testing.assert_allclose(derivative, -np.sin(exact), rtol=0, atol=2e-7)
    # the range reduction's error grows with |x|, to 1e-6 at the largest argument
    large = jnp.linspace(-LARGEST_ARGUMENT, LARGEST_ARGUMENT, 20_001)
    np.testing.assert_allclose(cosine(large), np.cos(np.asarray(large, np.float64)), atol=1e-6)


def test_random_features_reject_a_wrong_representation_size():
    layer = sngp.RandomFeatureGaussianProcess(3, 2, num_features=8, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"built for 3 input features.*shape \(3,\)"):
        layer(jnp.ones(4))


# -- the Laplace posterior -----------------------------------------------------------------------
def binary_problem(n=60, d=5):
    features = jax.random.normal(jax.random.key(0), (n, d)) / math.sqrt(d)
    labels = (features[:, 0] - features[:, 1] > 0).astype(jnp.int32)
    return features, labels


def test_laplace_covariance_is_the_inverse_hessian_of_the_log_posterior():
    features, labels = binary_problem()
    model = bayesian_last_layer(num_classes=1, prior_precision=2.0)

    def negative_log_posterior(w):
        return -model.assess({"weights": w, "labels": labels}, (features,))[0]

    for w in (jnp.zeros(5), jax.random.normal(jax.random.key(3), (5,))):
        precision = sngp.LaplacePrecision.init(5, prior_precision=2.0)
        precision = precision.update(features, (features @ w)[:, None])
        hessian = jax.hessian(negative_log_posterior)(w)
        np.testing.assert_allclose(precision.matrix, hessian, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(
            precision.covariance(), jnp.linalg.inv(hessian), rtol=1e-3, atol=1e-5
        )
    # at the mode: the same covariance as the Newton-fitted Laplace approximation
    posterior = laplace_last_layer(features, labels, 1, prior_precision=2.0)
    precision = sngp.LaplacePrecision.init(5, 2.0).update(
        features, (features @ posterior.mean)[:, None]
    )
    np.testing.assert_allclose(precision.covariance(), posterior.covariance, rtol=1e-3, atol=1e-5)
    # a curvature with the wrong weights (a mutant: w = p instead of p(1-p)) is caught
    wrong = (
        2.0 * jnp.eye(5)
        + (features * jax.nn.sigmoid(features @ posterior.mean)[:, None]).T @ features
    )
    assert not jnp.allclose(wrong, jnp.linalg.inv(posterior.covariance), rtol=1e-2)


def test_the_exact_pass_does_not_depend_on_the_batching():
    features, _ = binary_problem()
    logits = jnp.stack([features[:, 0], -features[:, 1], features[:, 2]], -1)  # three classes
    whole = sngp.LaplacePrecision.init(5).update(features, logits)
    pieces = sngp.LaplacePrecision.init(5)
    for start in (0, 25, 40):
        stop = {0: 25, 25: 40, 40: 60}[start]
        pieces = pieces.update(features[start:stop], logits[start:stop])
    np.testing.assert_allclose(pieces.data_precision, whole.data_precision, rtol=1e-5, atol=1e-6)
    assert int(pieces.count) == int(whole.count) == 60
    # softmax logits: weights p_max (1 - p_max)
    p = jnp.max(jax.nn.softmax(logits), -1)
    expected = (features * (p * (1 - p))[:, None]).T @ features
    np.testing.assert_allclose(whole.data_precision, expected, rtol=1e-5, atol=1e-6)


def test_momentum_updates_track_the_full_data_precision():
    features, _ = binary_problem(n=64)
    logits = features[:, :1]
    exact = sngp.LaplacePrecision.init(5).update(features, logits)
    batches = [slice(16 * i, 16 * (i + 1)) for i in range(4)]
    first = sngp.LaplacePrecision.init(5).momentum_update(features[:16], logits[:16], 0.9, 64)
    # the first update takes the batch estimate N/B sum_batch whole
    np.testing.assert_allclose(
        first.data_precision,
        4 * (exact.update(features[:16], logits[:16]).data_precision - exact.data_precision),
        rtol=1e-4,
        atol=1e-5,
    )

    def epoch(precision, _):
        for rows in batches:
            precision = precision.momentum_update(features[rows], logits[rows], 0.995, 64)
        return precision, None

    tracked, _ = jax.lax.scan(epoch, first, None, length=400)
    np.testing.assert_allclose(tracked.data_precision, exact.data_precision, rtol=0.02, atol=0.02)


def test_masked_rows_are_left_out_of_the_precision():
    features, _ = binary_problem(n=20)
    logits = features[:, :1]
    mask = jnp.arange(20) < 13
    start = sngp.LaplacePrecision.init(5).update(features[13:], logits[13:])
    masked = start.update(features, logits, mask=mask)
    kept = start.update(features[:13], logits[:13])
    np.testing.assert_allclose(masked.data_precision, kept.data_precision, rtol=1e-5, atol=1e-6)
    assert int(masked.count) == int(kept.count) == 20
    # a moving average scales the kept rows' sum by N / (rows kept), not N / (batch rows)
    masked = masked.momentum_update(features, logits, 0.5, 60, mask=mask)
    kept = kept.momentum_update(features[:13], logits[:13], 0.5, 60)
    np.testing.assert_allclose(masked.data_precision, kept.data_precision, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"one flag per feature row, \[20\]"):
        start.update(features, logits, mask=mask[:5])


def small_sngp(key=0):
    return eqx.nn.make_with_state(sngp.SNGPClassifier)(
        2, 2, width=16, depth=2, num_features=64, length_scale=0.5, key=jax.random.key(key)
    )


def test_accumulating_over_the_final_epoch_is_the_exact_pass_when_the_weights_are_fixed():
    # 100 rows in batches of 32: a final epoch of 4 steps, the last topped up with 28 rows
    # that must not count twice; a zero learning rate keeps the weights those of the pass
    x = jax.random.normal(jax.random.key(0), (100, 2))
    y = (x[:, 0] > 0).astype(jnp.int32)
    model, state = small_sngp()
    result = train(
        model,
        state,
        x,
        y,
        optimizer=optax.sgd(0.0),
        steps=60,
        batch_size=32,
        key=jax.random.key(1),
        prior_precision=2.0,
        laplace=sngp.MomentumLaplace(1.0),
    )
    exact = sngp.fit_laplace(result.model, result.state, x, prior_precision=2.0)
    assert int(result.precision.count) == int(exact.count) == 100
    assert result.precision.prior_precision == 2.0
    np.testing.assert_allclose(
        result.precision.data_precision, exact.data_precision, rtol=1e-4, atol=1e-5
    )


def test_a_moving_average_over_the_final_epoch_approximates_the_exact_pass():
    keys = jax.random.split(jax.random.key(0), 3)
    y = jax.random.bernoulli(keys[0], 0.5, (400,)).astype(jnp.int32)
    x = jnp.stack([2.0 * y - 1, jnp.zeros(400)], -1) + 0.3 * jax.random.normal(keys[1], (400, 2))
    model, state = small_sngp(1)
    options = dict(optimizer=optax.adam(3e-3), steps=200, batch_size=50, key=keys[2])
    plain = train(model, state, x, y, **options)
    result = train(model, state, x, y, **options, laplace=sngp.MomentumLaplace(0.5))
    assert plain.precision is None
    # the option changes the final epoch (8 steps) only
    np.testing.assert_array_equal(result.losses[:192], plain.losses[:192])
    assert result.losses.shape == (200,) and int(result.precision.count) == 8
    exact = sngp.fit_laplace(result.model, result.state, x)
    error = jnp.linalg.norm(result.precision.data_precision - exact.data_precision)
    assert float(error / jnp.linalg.norm(exact.data_precision)) < 0.12
    test_points = jnp.concatenate([x[:50], jnp.array([[0.0, 4.0], [4.0, 4.0], [-4.0, 0.0]])])
    variance = sngp.predict(result.model, result.state, result.precision.covariance(), test_points)
    reference = sngp.predict(result.model, result.state, exact.covariance(), test_points)
    np.testing.assert_allclose(variance.variance, reference.variance, rtol=0.2)


def test_the_final_epoch_options_are_checked():
    with pytest.raises(ValueError, match=r"momentum must lie in \[0, 1\]"):
        sngp.MomentumLaplace(1.5)
    model, state = small_sngp()
    with pytest.raises(ValueError, match=r"steps=3 is less than one epoch \(4 batches.*>= 4"):
        train(
            model,
            state,
            jnp.zeros((100, 2)),
            jnp.zeros(100, jnp.int32),
            optimizer=optax.sgd(0.1),
            steps=3,
            batch_size=32,
            key=jax.random.key(0),
            laplace=sngp.MomentumLaplace(1.0),
        )


def test_the_low_rank_covariance_over_estimates_within_its_bound():
    decay = 0.7 ** jnp.arange(24.0)  # a data term with a decaying spectrum
    features = jax.random.normal(jax.random.key(0), (300, 24)) * decay[None]
    precision = sngp.LaplacePrecision.init(24).update(features, jnp.zeros((300, 1)))
    test = jax.random.normal(jax.random.key(1), (50, 24))
    exact = sngp.predictive_variance(precision.covariance(), test)
    norms = jnp.sum(test**2, 1)
    gaps = []
    for rank in (2, 6, 12):
        low_rank = precision.low_rank_covariance(rank)
        gap = low_rank.variance(test) - exact
        assert float(gap.min()) > -1e-4  # never under-estimates
        assert jnp.all(gap <= low_rank.error_bound * norms + 1e-4)
        gaps.append(float(gap.max()))
    assert gaps[0] > gaps[1] > gaps[2]
    full = precision.low_rank_covariance(24)
    np.testing.assert_allclose(full.variance(test), exact, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("size", [40, 600])  # one block; blocks of 256, 256 and 88
def test_the_predictive_variance_is_the_quadratic_form(size):
    features = jax.random.normal(jax.random.key(0), (300, size)) / math.sqrt(size)
    precision = sngp.LaplacePrecision.init(size).update(features, jnp.zeros((300, 1)))
    covariance = precision.covariance()
    test = jax.random.normal(jax.random.key(1), (50, size))
    exact = np.einsum("nd,de,ne->n", *(np.asarray(a, np.float64) for a in (test, covariance, test)))
    np.testing.assert_allclose(sngp.predictive_variance(covariance, test), exact, rtol=2e-5)
    if size <= 256:
        return
    # over several blocks, a non-symmetric matrix would be read wrongly: Σ = Σᵀ is relied on
    skewed = covariance + jnp.triu(jnp.ones((size, size)), 1)
    assert not jnp.allclose(
        sngp.predictive_variance(skewed, test),
        jnp.einsum("nd,de,ne->n", test, skewed, test),
        rtol=1e-2,
    )


def test_covariance_before_any_data_is_an_error_that_says_what_to_do():
    empty = sngp.LaplacePrecision.init(4)
    with pytest.raises(ValueError, match=r"no data accumulated.*fit_laplace"):
        empty.covariance()
    with pytest.raises(Exception, match="no data accumulated"):
        jax.block_until_ready(jax.jit(lambda p: p.covariance())(empty))
    with pytest.raises(ValueError, match="no data accumulated"):
        empty.low_rank_covariance(2)


def test_precision_rejects_mismatched_feature_dimensions():
    precision = sngp.LaplacePrecision.init(4)
    with pytest.raises(ValueError, match=r"over 4 features, so give \[examples, 4\]"):
        precision.update(jnp.ones((3, 5)), jnp.ones((3, 1)))
    with pytest.raises(ValueError, match=r"logits has shape \(2, 1\) for 3 feature rows"):
        precision.update(jnp.ones((3, 4)), jnp.ones((2, 1)))
    with pytest.raises(ValueError, match=r"over 4 features"):
        sngp.predictive_variance(jnp.eye(4), jnp.ones((3, 2)))


# -- the mean-field adjustment ------------------------------------------------------------------
@pytest.mark.parametrize(("classes", "max_error", "mean_error"), [(1, 0.02, 0.005), (3, 0.1, 0.02)])
def test_mean_field_matches_monte_carlo_integration(classes, max_error, mean_error):
    mu = 3 * jax.random.normal(jax.random.key(classes), (200, classes))
    variance = jnp.exp(jax.random.uniform(jax.random.key(7), (200,), minval=-3, maxval=3))
    draws = mu[None] + jnp.sqrt(variance)[None, :, None] * jax.random.normal(
        jax.random.key(8), (20000, 200, classes)
    )
    link = (lambda f: jax.nn.sigmoid(f[..., 0])) if classes == 1 else jax.nn.softmax
    monte_carlo = link(draws).mean(0)  # sd of the MC mean <= 0.5/sqrt(20000) = 0.0035
    adjusted = link(sngp.mean_field_logits(mu, variance))
    errors = jnp.abs(adjusted - monte_carlo)
    assert errors.max() < max_error and errors.mean() < mean_error, (errors.max(), errors.mean())
    # ignoring the variance (the mutant) fails the same check
    errors = jnp.abs(link(mu) - monte_carlo)
    assert errors.max() > max_error and errors.mean() > mean_error


# -- the classifier ------------------------------------------------------------------------------
def test_sngp_uncertainty_grows_away_from_the_data_and_fixed_arrays_stay_fixed():
    keys = jax.random.split(jax.random.key(0), 2)
    y = jax.random.bernoulli(keys[0], 0.5, (400,)).astype(jnp.int32)
    x = jnp.stack([2.0 * y - 1, jnp.zeros(400)], -1) + 0.3 * jax.random.normal(keys[1], (400, 2))
    model, state = eqx.nn.make_with_state(sngp.SNGPClassifier)(
        2, 2, width=32, depth=2, num_features=256, length_scale=0.5, key=jax.random.key(1)
    )
    result = train(
        model,
        state,
        x,
        y,
        optimizer=optax.adam(3e-3),
        steps=200,
        batch_size=64,
        key=jax.random.key(2),
    )
    trained = result.model
    for fixed in (
        lambda m: m.body.projection.value,
        lambda m: m.head.projection.value,
        lambda m: m.head.phase.value,
    ):
        np.testing.assert_array_equal(fixed(model), fixed(trained))
    covariance = sngp.fit_laplace(trained, result.state, x).covariance()
    near = sngp.predict(trained, result.state, covariance, x[:100])
    far_points = jnp.array([[0.0, 6.0], [6.0, 6.0], [-6.0, 0.0], [0.0, -4.0]])
    far = sngp.predict(trained, result.state, covariance, far_points)
    assert float(jnp.mean(jnp.argmax(near.logits, -1) == y[:100])) > 0.95
    # prior variance is |phi|^2 / tau = 1 (to Monte Carlo error in the features)
    assert float(far.variance.min()) > 0.85
    assert float(far.variance.min()) > 1.5 * float(near.variance.mean())
    entropy = lambda p: -jnp.sum(p * jnp.log(p), -1)
    assert float(entropy(far.probabilities()).min()) > 0.6  # log 2 = 0.69 is uniform
    assert float(entropy(near.probabilities()).mean()) < 0.2
    # every spectrally normalized block obeys the bound after training
    for block in trained.body.blocks:
        weight, _ = eqx.nn.inference_mode(block).normalized_weight(result.state)
        assert jnp.linalg.norm(weight, ord=2) <= 0.95 * 1.01


def test_classifier_rejects_a_wrong_input_size():
    model, state = eqx.nn.make_with_state(sngp.SNGPClassifier)(
        3, 2, width=8, depth=1, num_features=8, key=jax.random.key(0)
    )
    with pytest.raises(ValueError, match=r"built for 3 features.*shape \(3,\)"):
        apply_to_batch(model, state, jnp.ones((4, 5)))
    with pytest.raises(ValueError, match=r"covariance has shape \(4, 4\).*\[8, 8\]"):
        sngp.predict(model, state, jnp.eye(4), jnp.ones((2, 3)))

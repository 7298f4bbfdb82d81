"""Maximum-a-posteriori training of a classifier with optax, one code path for all models."""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from models.training._batch import apply_to_batch, num_rows
from models.training._fixed import trainable


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TrainResult:
    """The outcome of ``train``.

    Attributes:
        model: the trained model.
        state: its ``eqx.nn.State`` after the last step (spectral-norm vectors).
        losses: ``[steps]`` numpy array of the minibatch loss before each update.
        precision: what ``train``'s ``laplace`` built during the final epoch (a
            ``sngp.LaplacePrecision``), or ``None`` without one.

    Example:
        >>> import equinox as eqx, jax, jax.numpy as jnp, optax
        >>> from models.baselines import DeterministicClassifier
        >>> model, state = eqx.nn.make_with_state(DeterministicClassifier)(
        ...     2, 2, width=4, depth=1, key=jax.random.key(0))
        >>> result = train(model, state, jnp.zeros((8, 2)), jnp.zeros(8, jnp.int32),
        ...                optimizer=optax.sgd(0.1), steps=3, batch_size=4, key=jax.random.key(1))
        >>> result.losses.shape, type(result.model).__name__
        ((3,), 'DeterministicClassifier')
    """

    model: Any
    state: Any
    losses: np.ndarray
    precision: Any = None


class FinalEpochStatistic(Protocol):
    """What ``train`` accumulates over its final epoch (``sngp.MomentumLaplace``)."""

    def init(self, model: Any, prior_precision: float) -> Any:
        """The empty statistic at the start of the final epoch."""
        ...

    def update(
        self,
        statistic: Any,
        model: Any,
        state: eqx.nn.State,
        inputs: Any,
        mask: jax.Array,
        num_data: int,
    ) -> Any:
        """Adds a batch (rows with ``mask`` ``False`` are padding) after a step."""
        ...


def log_likelihood(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """``[N]`` log probabilities of integer labels under categorical logits ``[N, K]``
    (Bernoulli with ``p = sigmoid(f)`` when ``K = 1``).

    Example:
        >>> import jax.numpy as jnp
        >>> log_likelihood(jnp.array([[0.0, 0.0]]), jnp.array([1]))  # log(1/2)
        Array([-0.6931472], dtype=float32)
    """
    if logits.shape[1] == 1:
        f = logits[:, 0]
        return jnp.where(labels == 1, jax.nn.log_sigmoid(f), jax.nn.log_sigmoid(-f))
    return jnp.take_along_axis(jax.nn.log_softmax(logits, -1), labels[:, None], -1)[:, 0]


def train(
    model: Any,
    state: eqx.nn.State,
    inputs: jax.Array,
    labels: jax.Array,
    *,
    optimizer: optax.GradientTransformation,
    steps: int,
    batch_size: int,
    key: jax.Array,
    prior_precision: float = 1.0,
    laplace: FinalEpochStatistic | None = None,
) -> TrainResult:
    """Trains a classifier to the mode of its posterior under a Gaussian weight prior.

    The loss at each step is a minibatch estimate of the negative log posterior per
    example, ``−(1/B) Σ_batch log p(y|x, θ) + (τ / 2N) ‖θ‖²``, over the trainable arrays
    ``θ`` (``trainable``: ``Fixed`` random features are left alone), with a ``N(0, 1/τ)``
    prior on each. The same ``τ`` is the prior precision of the Laplace posterior of an
    SNGP output layer (``sngp.fit_laplace``). Batches of ``batch_size`` rows are drawn
    without replacement at each step; the state (spectral-norm vectors) is updated by
    every forward pass and carried along. All steps run in one jitted ``jax.lax.scan``.

    With ``laplace`` (``sngp.MomentumLaplace``), the last ``⌈N/B⌉`` of the ``steps`` form a
    final epoch: one sweep over the data in a random order, its last batch topped up with
    rows from the start of the sweep. ``laplace`` starts afresh at the start of that epoch
    and takes in every batch after its step (the top-up rows masked out), so the SNGP
    output layer's Laplace precision comes with the trained model, with no pass after
    training.

    Args:
        model: a classifier called as ``model(x, state, *, key=None) -> (logits, state)``
            on one example (``SNGPClassifier``, ``DeterministicClassifier``).
        state: its ``eqx.nn.State``.
        inputs: ``[N, ...]`` training inputs, or a pytree of arrays with a common leading
            axis (padded graphs).
        labels: ``[N]`` integer labels.
        optimizer: an optax optimizer.
        steps: the number of steps.
        batch_size: rows per step.
        key: the PRNG key (batches and dropout).
        prior_precision: ``τ``.
        laplace: a precision to build during the final epoch, or ``None``.

    Returns:
        ``TrainResult(model, state, losses, precision)`` (``precision`` is ``None`` without
        ``laplace``).

    Raises:
        ValueError: for inputs and labels of different lengths, a batch size larger
            than the data, or (with ``laplace``) fewer steps than one epoch.

    Example:
        >>> import equinox as eqx, jax, jax.numpy as jnp, optax
        >>> from models.sngp import SNGPClassifier
        >>> x = jax.random.normal(jax.random.key(0), (64, 2))
        >>> y = (x[:, 0] > 0).astype(jnp.int32)
        >>> model, state = eqx.nn.make_with_state(SNGPClassifier)(
        ...     2, 2, width=16, depth=1, num_features=64, key=jax.random.key(1))
        >>> result = train(model, state, x, y, optimizer=optax.adam(1e-2), steps=100,
        ...                batch_size=32, key=jax.random.key(2))
        >>> bool(result.losses[-10:].mean() < 0.5 * result.losses[:10].mean())
        True
    """
    inputs, labels = jax.tree.map(jnp.asarray, inputs), jnp.asarray(labels)
    size = num_rows(inputs)
    if size != labels.shape[0]:
        raise ValueError(
            f"inputs has {size} rows but labels has {labels.shape[0]}; give one label per input"
        )
    if not 1 <= batch_size <= size:
        raise ValueError(f"batch_size must lie in 1..{size}, got {batch_size}")
    epoch = -(-size // batch_size)
    if laplace is not None and steps < epoch:
        raise ValueError(
            f"steps={steps} is less than one epoch ({epoch} batches of {batch_size} rows); "
            f"with laplace, the last {epoch} steps sweep the data once, so give steps >= {epoch}"
        )
    params, static = eqx.partition(model, trainable(model))
    opt_state = optimizer.init(params)
    params, state, losses, precision = _run(
        params,
        static,
        state,
        opt_state,
        optimizer,
        inputs,
        labels,
        key,
        steps,
        batch_size,
        float(prior_precision),
        laplace,
    )
    return TrainResult(eqx.combine(params, static), state, np.asarray(losses), precision)


@eqx.filter_jit
def _run(
    params,
    static,
    state,
    opt_state,
    optimizer,
    inputs,
    labels,
    key,
    steps,
    batch_size,
    tau,
    laplace,
):
    num_data = num_rows(inputs)

    def loss_fn(params, state, x, y, key):
        model = eqx.combine(params, static)
        logits, state = apply_to_batch(model, state, x, key=key)
        penalty = sum(jnp.sum(p**2) for p in jax.tree.leaves(params))
        return -jnp.mean(log_likelihood(logits, y)) + tau / (2 * num_data) * penalty, state

    def step(carry, rows, dropout_key):
        params, state, opt_state = carry
        (loss, state), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            params, state, jax.tree.map(lambda a: a[rows], inputs), labels[rows], dropout_key
        )
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), state, opt_state), loss

    def random_batch_step(carry, step_key):
        batch_key, dropout_key = jax.random.split(step_key)
        rows = jax.random.choice(batch_key, num_data, (batch_size,), replace=False)
        return step(carry, rows, dropout_key)

    step_keys = jax.random.split(key, steps)
    if laplace is None:
        (params, state, _), losses = jax.lax.scan(
            random_batch_step, (params, state, opt_state), step_keys
        )
        return params, state, losses, None

    epoch = -(-num_data // batch_size)
    (params, state, opt_state), losses = jax.lax.scan(
        random_batch_step, (params, state, opt_state), step_keys[: steps - epoch]
    )
    # the final epoch: one sweep in a random order, the last batch topped up from its start
    order = jax.random.permutation(jax.random.fold_in(key, steps), num_data)
    padded = jnp.concatenate([order, order[: epoch * batch_size - num_data]])
    batches = padded.reshape(epoch, batch_size)
    masks = (jnp.arange(epoch * batch_size) < num_data).reshape(epoch, batch_size)

    def final_epoch_step(carry, batch):
        params, state, opt_state, statistic = carry
        rows, mask, step_key = batch
        _, dropout_key = jax.random.split(step_key)
        (params, state, opt_state), loss = step((params, state, opt_state), rows, dropout_key)
        statistic = laplace.update(
            statistic,
            eqx.combine(params, static),
            state,
            jax.tree.map(lambda a: a[rows], inputs),
            mask,
            num_data,
        )
        return (params, state, opt_state, statistic), loss

    statistic = laplace.init(eqx.combine(params, static), tau)
    (params, state, _, statistic), final_losses = jax.lax.scan(
        final_epoch_step,
        (params, state, opt_state, statistic),
        (batches, masks, step_keys[steps - epoch :]),
    )
    return params, state, jnp.concatenate([losses, final_losses]), statistic

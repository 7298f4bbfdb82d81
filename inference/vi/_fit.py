"""``fit``: maximise a variational objective with an optax optimizer, in jitted chunks."""

from __future__ import annotations

import dataclasses
import os
import pickle
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from inference.sharding._data_parallel import SINGLE_DEVICE, DataParallel, SingleDevice
from ppl.adev import Expectation


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class FitResult:
    """The outcome of ``fit``.

    Attributes:
        params: the optimised parameters, with the structure of the initial ones.
        losses: ``[steps]`` numpy array; ``losses[t]`` is the negated objective estimate at
            step ``t`` (computed at the parameters before that step's update).
        state: the estimator state after the last step (``running_mean`` baselines, by
            address; empty when the objective has none).
        opt_state: the optimizer state after the last step, to continue training.
    """

    params: Any
    losses: np.ndarray
    state: dict
    opt_state: Any


def fit(
    objective: Expectation,
    params: Any,
    optimizer: optax.GradientTransformation,
    steps: int,
    key: jax.Array,
    *,
    args: tuple = (),
    chunk_size: int = 100,
    progress: bool = True,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    data: Any = None,
    batch_size: int | None = None,
    sharding: DataParallel | None = None,
) -> FitResult:
    """Maximises ``objective`` over ``params`` by stochastic gradient ascent with ``optimizer``.

    At step ``t`` the key ``fold_in(key, t)`` is split into an objective key ``k_t`` (and a
    minibatch key), and ``objective.value_and_grad(k_t, params, *args, argnums=0,
    state=state)`` gives an estimate ``v_t`` of the objective and an unbiased estimate ``g_t``
    of its gradient. optax minimises, so it is given ``-g_t``; the loss recorded is ``-v_t``.
    The estimator state (``running_mean`` baselines) starts at ``objective.init_state`` and is
    carried from step to step.

    The trainable parameters are the floating-point arrays of ``params``
    (``eqx.is_inexact_array``): dicts of arrays and Equinox modules work, and other leaves
    (Python numbers, integer arrays, functions) are held fixed, as in Equinox.

    Steps run in chunks of ``chunk_size`` inside one ``jax.lax.scan``, compiled once: the last
    chunk is padded with skipped steps, and a second call with the same ``objective`` and
    ``optimizer`` objects reuses the compiled code. After each chunk the losses reach the
    progress bar, and the run stops if a loss or a parameter became non-finite (the scan
    records the first such step, so the check costs nothing per step).

    Minibatches: given ``data`` (a pytree of arrays with a common leading axis of size ``N``)
    and ``batch_size`` ``B``, each step draws ``B`` rows without replacement and calls
    ``objective(key, params, batch, *args)``. The objective must scale its likelihood by
    ``N / B`` to stay an unbiased estimate of the full-data objective; pass the factor in
    ``args`` or close over it (see the second example). With ``batch_size=None`` the whole of
    ``data`` is passed at every step.

    Args:
        objective: an ``@expectation`` ``f(key, params, *args)``, to maximise (e.g. an ELBO).
        params: the initial parameters (any pytree).
        optimizer: an optax optimizer, e.g. ``optax.adam(1e-2)``.
        steps: the number of optimisation steps (a resumed run counts those already done).
        key: the PRNG key; step ``t`` uses ``jax.random.fold_in(key, t)``.
        args: further arguments of the objective, after ``params`` (and the batch).
        chunk_size: steps per compiled scan, between progress updates and NaN checks.
        progress: show a progress bar with the loss averaged over the last chunk.
        checkpoint: a file path. The state (parameters, optimizer and estimator state, losses
            so far) is saved there every ``checkpoint_every`` steps and at the end, written
            to a temporary file and renamed so an interruption never leaves half a file. If
            the file exists, the run resumes from it and gives bit-identical parameters and
            losses to an uninterrupted run with the same key and ``chunk_size``.
        checkpoint_every: steps between checkpoints, rounded up to whole chunks; default
            every chunk.
        data: a pytree of arrays with a common leading axis, subsampled at every step.
        batch_size: rows of ``data`` per step (without replacement).
        sharding: ``inference.sharding.DataParallel(mesh)`` to split each batch along the
            mesh axis ``"data"`` with the parameters copied on every device, or
            ``ShardedWeightUpdate(mesh)`` to also split the optimizer state and update;
            ``None``: one device. The losses and parameters agree with one device's to
            float rounding (the batch sums are added in another order).

    Returns:
        A ``FitResult(params, losses, state, opt_state)``; ``losses`` has length ``steps``.

    Raises:
        FloatingPointError: when a loss or a parameter becomes non-finite, naming the step
            and the parameter leaves at fault; the parameters of the failing step are not
            kept.
        ValueError: for a checkpoint written by a run with another key, parameters,
            optimizer, objective state or data shapes, or one already past ``steps``; for
            inconsistent ``data``/``batch_size``; for ``params`` without floating-point
            arrays.

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> from ppl import gen, normal
        >>> from ppl.adev import expectation
        >>> @gen
        ... def model():
        ...     z = normal(0.0, 1.0) @ "z"
        ...     normal(z, 1.0) @ "x"
        >>> @gen
        ... def guide(params):
        ...     normal(params["mu"], jnp.exp(params["log_sigma"])) @ "z"
        >>> @expectation
        ... def elbo(key, params, x):
        ...     tr = guide.simulate(key, (params,))
        ...     log_p, _ = model.assess(tr.choices | {"x": x}, ())
        ...     return log_p - tr.score
        >>> params = {"mu": jnp.array(0.0), "log_sigma": jnp.array(0.0)}
        >>> optimizer = optax.adam(optax.exponential_decay(0.05, 1000, 0.02))
        >>> result = fit(elbo, params, optimizer, 1000, jax.random.key(0), args=(2.0,),
        ...              progress=False)
        >>> result.losses.shape
        (1000,)
        >>> abs(float(result.params["mu"]) - 2.0 / 2) < 0.1  # the posterior mean is x / 2
        True

        A minibatch objective for ``y_i ~ normal(mu, 1)``, ``i < N``, scales the
        likelihood of the ``B`` rows it is given by ``N / B``:

        >>> from ppl import Vmap
        >>> @gen
        ... def likelihood(mu, n):
        ...     Vmap(normal, in_axes=(None, None), axis_size=n)(mu, 1.0) @ "y"
        >>> @gen
        ... def posterior(params):
        ...     normal(params["mu"], jnp.exp(params["log_sigma"])) @ "mu"
        >>> @expectation
        ... def minibatch_elbo(key, params, batch, scale):
        ...     tr = posterior.simulate(key, (params,))
        ...     mu = tr.choices["mu"]
        ...     log_prior = normal.assess(mu, (0.0, 1.0))[0]
        ...     log_lik, _ = likelihood.assess({"y": batch}, (mu, batch.shape[0]))
        ...     return log_prior + scale * log_lik - tr.score
        >>> y = 1.0 + jax.random.normal(jax.random.key(1), (100,))
        >>> result = fit(minibatch_elbo, params, optimizer, 1000, jax.random.key(2),
        ...              args=(100 / 10,), data=y, batch_size=10, progress=False)
        >>> abs(float(result.params["mu"]) - float(y.sum() / 101)) < 0.1
        True
    """
    if not isinstance(objective, Expectation):
        raise TypeError(
            f"objective is {objective!r}; give an @expectation whose first argument after "
            "the key is the parameters"
        )
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    if checkpoint_every is not None and checkpoint is None:
        raise ValueError("checkpoint_every is given without a checkpoint path")
    every = chunk_size * max(1, -(-(checkpoint_every or chunk_size) // chunk_size))

    dynamic, static = eqx.partition(params, eqx.is_inexact_array)
    dynamic = _strong(dynamic)
    if not jax.tree.leaves(dynamic):
        raise ValueError(
            "params has no floating-point arrays to optimise; give trainable values as jax "
            "arrays (jnp.array(0.0)): Python numbers and integer arrays are held fixed"
        )
    data, batch_size = _check_data(data, batch_size)
    placement: SingleDevice = SINGLE_DEVICE if sharding is None else sharding
    placement.check_batch(batch_size, data)
    data = placement.place_data(data)
    example = () if data is None else (jax.tree.map(lambda x: x[:batch_size], data),)

    opt_state = _strong(optimizer.init(dynamic))
    state = _strong(objective.init_state(key, eqx.combine(dynamic, static), *example, *args))
    fingerprint = _fingerprint(key, dynamic, opt_state, state, data, batch_size)
    done, losses = 0, np.zeros((0,), jnp.result_type(float))
    saved = _load(checkpoint, fingerprint)
    if saved is not None:
        done, losses = saved["step"], saved["losses"]
        if done > steps:
            raise ValueError(
                f"checkpoint {checkpoint} is at step {done}, past steps={steps}; ask for at "
                "least as many steps, or use another path"
            )
        dynamic, opt_state, state = (
            _restore(tree, leaves)
            for tree, leaves in zip((dynamic, opt_state, state), saved["carry"], strict=True)
        )
    dynamic = placement.place_parameters(dynamic)
    opt_state = placement.place_optimizer_state(opt_state)

    pieces = [losses]
    saved_at = done
    bar = tqdm(total=steps, initial=done, disable=not progress, desc="fit")
    try:
        while done < steps:
            carry = (dynamic, opt_state, state, jnp.int32(-1), jnp.zeros(_count(dynamic), bool))
            carry, losses_on_device = _chunk(
                objective,
                optimizer,
                static,
                carry,
                jnp.int32(done),
                jnp.int32(steps),
                key,
                data,
                batch_size,
                args,
                chunk_size,
                placement,
            )
            dynamic, opt_state, state, first_bad, bad_leaves = carry
            dynamic = placement.place_parameters(dynamic)
            opt_state = placement.place_optimizer_state(opt_state)
            chunk_losses = np.asarray(losses_on_device)[: min(chunk_size, steps - done)]
            if int(first_bad) >= 0:
                loss = float(chunk_losses[int(first_bad) - done])
                raise FloatingPointError(
                    _non_finite_message(int(first_bad), loss, dynamic, bad_leaves)
                )
            pieces.append(chunk_losses)
            done += len(chunk_losses)
            bar.update(len(chunk_losses))
            bar.set_postfix(loss=f"{float(np.mean(chunk_losses)):.4g}")
            if checkpoint is not None and (done - saved_at >= every or done == steps):
                _save(checkpoint, fingerprint, done, (dynamic, opt_state, state), pieces)
                saved_at = done
    finally:
        bar.close()
    return FitResult(eqx.combine(dynamic, static), np.concatenate(pieces), state, opt_state)


@eqx.filter_jit
def _chunk(
    objective: Expectation,
    optimizer: optax.GradientTransformation,
    static: Any,
    carry: tuple,
    start: jax.Array,
    end: jax.Array,
    key: jax.Array,
    data: Any,
    batch_size: int | None,
    args: tuple,
    chunk_size: int,
    placement: SingleDevice = SINGLE_DEVICE,
) -> tuple[tuple, jax.Array]:
    """``chunk_size`` steps from ``start``; steps at or past ``end``, or after a non-finite
    step, are skipped (their loss is nan). ``carry`` is (trainable params, optimizer state,
    estimator state, first non-finite step or -1, which trainable leaves were non-finite).

    Jitted at module level, keyed on the objective, optimizer and static parts, so chunks and
    later calls with the same objects reuse one compilation. ``placement`` lays out the batch,
    gradients, optimizer state and parameters across devices (identity on one device).
    """
    loss_dtype = jnp.result_type(float)

    def run(carry, t):
        dynamic, opt_state, state, first_bad, bad_leaves = carry
        objective_key, batch_key = jax.random.split(jax.random.fold_in(key, t))
        batch = (
            () if data is None else (placement.constrain_batch(_draw(batch_key, data, batch_size)),)
        )
        value, grads, new_state = objective.value_and_grad(
            objective_key,
            eqx.combine(dynamic, static),
            *batch,
            *args,
            argnums=0,
            state=state,
        )
        grads = placement.constrain_gradients(_trainable(grads, dynamic))
        ascent = jax.tree.map(jnp.negative, grads)
        updates, new_opt_state = optimizer.update(ascent, opt_state, dynamic)
        new_dynamic = optax.apply_updates(dynamic, updates)
        loss = -jnp.asarray(value).astype(loss_dtype)
        leaf_bad = jnp.stack(
            [
                ~(jnp.all(jnp.isfinite(p)) & jnp.all(jnp.isfinite(g)))
                for p, g in zip(jax.tree.leaves(new_dynamic), jax.tree.leaves(grads), strict=True)
            ]
        )
        bad = ~jnp.isfinite(loss) | jnp.any(leaf_bad)
        # A non-finite step is not applied: the carry keeps the last finite parameters.
        kept = jax.tree.map(
            lambda new, old: jnp.where(bad, old, new),
            (new_dynamic, new_opt_state, new_state),
            (dynamic, opt_state, state),
        )
        return (*kept, jnp.where(bad, t, first_bad), jnp.where(bad, leaf_bad, bad_leaves)), loss

    def skip(carry, t):
        return carry, jnp.full((), jnp.nan, loss_dtype)

    def step(carry, t):
        active = (t < end) & (carry[3] < 0)
        (dynamic, opt_state, *rest), loss = jax.lax.cond(active, run, skip, carry, t)
        # The carry keeps one layout from step to step (parameters copied on every device).
        dynamic = placement.constrain_parameters(dynamic)
        opt_state = placement.constrain_optimizer_state(opt_state)
        return (dynamic, opt_state, *rest), loss

    return jax.lax.scan(step, carry, start + jnp.arange(chunk_size, dtype=jnp.int32))


def _draw(key: jax.Array, data: Any, batch_size: int | None) -> Any:
    """``batch_size`` rows of ``data``, drawn without replacement (all rows when ``None``)."""
    if batch_size is None:
        return data
    size = jax.tree.leaves(data)[0].shape[0]
    rows = jax.random.choice(key, size, (batch_size,), replace=False)
    return jax.tree.map(lambda x: x[rows], data)


def _trainable(grads: Any, dynamic: Any) -> Any:
    """The gradients of the trainable leaves, in the structure of ``dynamic``."""
    keep = jax.tree.map(lambda x: x is not None, dynamic, is_leaf=lambda x: x is None)
    return jax.tree.map(lambda k, g: g if k else None, keep, grads)


def _strong(tree: Any) -> Any:
    """Arrays as jax arrays of a fixed (not weak) type: checkpointed and fresh values then
    have the same types, so they hit the same compiled chunk."""

    def strong(x):
        x = jnp.asarray(x)
        return jax.lax.convert_element_type(x, x.dtype)

    return jax.tree.map(strong, tree)


def _count(tree: Any) -> int:
    return len(jax.tree.leaves(tree))


def _check_data(data: Any, batch_size: int | None) -> tuple[Any, int | None]:
    if data is None:
        if batch_size is not None:
            raise ValueError("batch_size is given without data to draw the batches from")
        return None, None
    data = jax.tree.map(jnp.asarray, data)
    shapes = jax.tree_util.tree_flatten_with_path(data)[0]
    if not shapes:
        raise ValueError("data holds no arrays")
    sizes = {jax.tree_util.keystr(p): (x.shape[0] if x.ndim else "a scalar") for p, x in shapes}
    if len(set(sizes.values())) != 1 or "a scalar" in sizes.values():
        raise ValueError(
            f"the arrays of data need a common leading axis (the data points); their leading "
            f"sizes are {sizes}"
        )
    size = jax.tree.leaves(data)[0].shape[0]
    if batch_size is not None and not (isinstance(batch_size, int) and 1 <= batch_size <= size):
        raise ValueError(f"batch_size must be an int between 1 and {size}, got {batch_size!r}")
    return data, batch_size


def _non_finite_message(step: int, loss: float, dynamic: Any, bad_leaves: jax.Array) -> str:
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(dynamic)[0]]
    bad = [path for path, flag in zip(paths, np.asarray(bad_leaves), strict=True) if flag]
    if bad:
        where = (
            f"the parameter{'s' if len(bad) > 1 else ''} {', '.join(bad)} became non-finite "
            f"(non-finite gradient or update); the loss was {loss}"
        )
    else:
        where = f"the loss (the negated objective estimate) is {loss}; the parameters are finite"
    return (
        f"step {step}: {where}. The run stops there, before that update. Lower the learning "
        "rate (or clip gradients, optax.clip_by_global_norm), and check the model's support: "
        "the guide must only propose values where the model's log density is finite (keep "
        "scales positive, e.g. exp(log_scale))"
    )


# -- checkpoints ------------------------------------------------------------------------------
def _describe(tree: Any) -> list:
    return [
        (jax.tree_util.keystr(path), tuple(x.shape), str(x.dtype))
        for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]
    ]


def _fingerprint(key, dynamic, opt_state, state, data, batch_size) -> dict:
    return {
        "key": np.asarray(jax.random.key_data(key)).tolist(),
        "parameters": _describe(dynamic),
        "optimizer state": _describe(opt_state),
        "estimator state": _describe(state),
        "data": (_describe(data), batch_size),
    }


def _save(path, fingerprint: dict, step: int, carry: tuple, pieces: list) -> None:
    # Leaves only: the tree structures come from the resuming run (checked against the
    # fingerprint), since they may hold classes that do not pickle (locally defined modules).
    tmp = f"{os.fspath(path)}.tmp"
    with open(tmp, "wb") as handle:
        pickle.dump(
            {
                "fingerprint": fingerprint,
                "step": step,
                "carry": [jax.device_get(jax.tree.leaves(tree)) for tree in carry],
                "losses": np.concatenate(pieces),
            },
            handle,
        )
    os.replace(tmp, path)  # atomic: an interruption never leaves half a checkpoint


def _load(path, fingerprint: dict) -> dict | None:
    if path is None or not os.path.exists(path):
        return None
    with open(path, "rb") as handle:
        saved = pickle.load(handle)
    if saved["fingerprint"]["key"] != fingerprint["key"]:
        raise ValueError(
            f"checkpoint {path} was written by a run with another key; delete it or use "
            "another path"
        )
    for part, now in fingerprint.items():
        before = saved["fingerprint"][part]
        if before != now:
            raise ValueError(
                f"checkpoint {path} was written for other {part}: it holds {before}, this run "
                f"has {now}; delete it or use another path"
            )
    return saved


def _restore(tree: Any, leaves: list) -> Any:
    return jax.tree.unflatten(jax.tree.structure(tree), [jnp.asarray(x) for x in leaves])

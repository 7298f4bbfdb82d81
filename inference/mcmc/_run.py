"""``run``: many chains of a kernel on a model conditioned on observations, to arviz."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import arviz
import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from inference.mcmc import _checkpoint
from inference.mcmc._adaptation import schedule, stepwise_window_adaptation
from inference.mcmc._arviz import from_dict
from inference.mcmc._kernel import Kernel
from inference.mcmc._sample_stats import (
    checked_names,
    info_stats,
    kept_stats,
    pack_stats,
    unpack_stats,
)
from inference.mcmc._starts import initial_traces
from inference.mcmc._unconstrained import Unconstrained
from inference.sharding._chains import ONE_DEVICE, ChainPlacement
from ppl import AddressError, ChoiceMap, GenerativeFunction, select
from ppl._choicemap import constrained_addresses


def _variable_name(path: tuple) -> str:
    return ".".join(str(c) for c in path if c is not Ellipsis)


def run(
    model: GenerativeFunction,
    observations: Any,
    key: jax.Array,
    *,
    args: tuple = (),
    kernel: Kernel | None = None,
    num_chains: int = 4,
    num_warmup: int = 500,
    num_samples: int = 1000,
    thinning: int = 1,
    init: Any = None,
    progress_bar: bool = True,
    num_chunks: int = 10,
    checkpoint: str | None = None,
    mesh: jax.sharding.Mesh | None = None,
    sample_stats: Sequence[str] | None = None,
    log_likelihood: bool = True,
    dense_mass: bool = False,
) -> Any:
    """Runs vectorised MCMC chains on ``model`` conditioned on ``observations``.

    With ``kernel=None`` every unobserved choice (all must be continuous) is moved by NUTS
    after blackjax's window adaptation (per chain, ``num_warmup`` steps, with blackjax's
    result). A given ``kernel`` runs ``num_warmup`` unadapted steps first.

    Args:
        model: the generative function.
        observations: a dict/``ChoiceMap`` of observed values.
        key: the PRNG key.
        args: the model's arguments.
        kernel: a ``Kernel`` (e.g. ``cycle(gibbs..., nuts...)``), or ``None`` for adapted NUTS.
        num_chains: chains, run with ``jax.vmap``.
        num_warmup: warm-up (adaptation) steps per chain.
        num_samples: kept draws per chain.
        thinning: steps per kept draw.
        init: ``None`` (a prior draw per chain), ``"median"`` (the median of 15 prior
            draws, per choice) or a dict/``ChoiceMap`` of values for some latent choices.
        progress_bar: show progress over the warm-up and sampling chunks.
        num_chunks: warm-up and sampling each run in this many chunks (for progress and
            checkpoints); one compiled program runs all the warm-up chunks. With one chunk
            and no checkpoint, one program runs the warm-up and the draws.
        checkpoint: a file path; the state (traces, adaptation, draws so far) is saved after
            each warm-up and each sampling chunk, and a run given the same key, sizes and path
            resumes from it with exactly the result of an uninterrupted run.
        mesh: a mesh with an axis ``"chains"`` (``inference.sharding.make_mesh``): the
            chains are split across its devices, each device running its block of chains
            (``jax.shard_map``); ``num_chains`` must be a multiple of the axis size. Each
            chain runs with the key it has without a mesh (docs/scaling.md says when the
            draws are then bit-identical).
        sample_stats: the sample stats to keep, by name (``"acceptance_rate"``,
            ``"accepted"``, ``"diverging"``, ``"energy"``, ``"tree_depth"``, ``"n_steps"``,
            ``"step_size"``; a ``cycle`` of kernels prefixes each kernel's with
            ``kernel{i}_``), or ``None`` (default) for every one the kernel reports. As
            NumPyro's ``extra_fields``: what is not kept is not computed, e.g. NUTS's
            acceptance rate, a running sum over every leapfrog step (~5% of a draw of eight
            schools).
        log_likelihood: return the pointwise log-likelihood of each draw (``False``: not
            computed; NUTS's draws are then mapped to the constrained space without
            evaluating the model). An observation inside a ``marginal``/``normalize`` (scored
            by a density estimate, pointwise by nothing) needs ``False``.
        dense_mass: with ``kernel=None``, adapt a dense inverse mass matrix (the posterior
            covariance on the unconstrained space, as NumPyro's ``NUTS(dense_mass=True)``)
            rather than a diagonal one: for strongly correlated choices, at ``d^2`` cost per
            leapfrog step in ``d`` dimensions.

    Returns:
        An arviz ``DataTree`` with groups posterior (one variable per latent address, dims
        ``chain, draw, ...``), sample_stats, observed_data and, unless ``log_likelihood`` is
        false, log_likelihood (pointwise: per element of each observed site's batch shape, from
        ``model.pointwise_scores``, so ``arviz.loo`` works).

    Raises:
        AddressError: if an initial point has log density -inf (naming the address), an
            observation is at an address the model never visits, or NUTS meets a discrete
            latent choice.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from ppl import gen, normal, Vmap
        >>> @gen
        ... def model():
        ...     mu = normal(0.0, 1.0) @ "mu"
        ...     return Vmap(normal, in_axes=(None, None), axis_size=5)(mu, 1.0) @ "ys"
        >>> data = run(model, {"ys": jnp.ones(5)}, jax.random.key(0), num_chains=2,
        ...            num_warmup=100, num_samples=200, progress_bar=False)
        >>> data.posterior["mu"].shape, data.log_likelihood["ys"].shape
        ((2, 200), (2, 200, 5))
    """
    observations = ChoiceMap.from_dict(observations)
    init_key, warmup_key, sample_key = jax.random.split(key, 3)
    observed = _observed_addresses(model, observations, key, args)
    _check_kernel_leaves_observations(kernel, observed)
    placement = ChainPlacement(mesh)
    placement.check(num_chains)
    kept_names = None if sample_stats is None else checked_names(sample_stats)
    programs = _programs(
        model, kernel, observed, thinning, placement, kept_names, log_likelihood, dense_mass
    )
    sizes: tuple = (
        num_chains,
        num_warmup,
        num_samples,
        num_chunks,
        thinning,
        kept_names,
        log_likelihood,
        dense_mass,
    )
    if checkpoint is not None:  # what else the saved chains depend on
        sizes = (*sizes, _checkpoint.digest(observations, args, init, kernel))
    progress = _checkpoint.load(checkpoint, key, *sizes)
    traces = None
    if progress is None:
        traces = initial_traces(
            model, observations, observed, init, init_key, args, num_chains, kernel is None
        )
        traces = placement.place(traces)

    def save(progress: _Progress) -> None:
        if checkpoint is not None:
            _checkpoint.save(checkpoint, key, *sizes, progress)

    if num_chunks == 1 and checkpoint is None:
        # Nothing to report or save between warm-up and sampling: one compiled program runs
        # both (two programs in sequence take ~2.5% longer on eight schools, benchmarks/nuts.py).
        bar = tqdm(
            total=num_warmup + num_samples, disable=not progress_bar, desc="warm-up and sampling"
        )
        parameters, kept = programs.whole(traces, warmup_key, sample_key, num_warmup, num_samples)
        pieces = [placement.fetch(kept)]
        bar.update(num_warmup + num_samples)
        bar.close()
    else:
        if progress is None:
            progress = _Progress(0, programs.warmup_init(traces), None, None, [])
        pieces, parameters = _in_chunks(
            programs,
            placement,
            progress,
            warmup_key,
            sample_key,
            (num_chains, num_warmup, num_samples, num_chunks),
            progress_bar,
            save,
        )
    keep_step_size = kept_names is None or "step_size" in kept_names
    return _to_arviz(
        pieces, parameters if keep_step_size else None, observations, num_chains, num_samples
    )


def _in_chunks(programs, placement, progress, warmup_key, sample_key, sizes, progress_bar, save):
    """Warm-up (unless done) and sampling chunk by chunk, saving after each: the kept draws
    of each sampling chunk and the adapted parameters."""
    num_chains, num_warmup, num_samples, num_chunks = sizes
    chunk_sizes = [len(part) for part in np.array_split(np.arange(num_samples), num_chunks)]
    chunk_keys = jax.random.split(sample_key, len(chunk_sizes))
    if progress.chains is None:
        chains, parameters = _warm_up(
            programs,
            placement,
            progress,
            warmup_key,
            num_chains,
            num_warmup,
            num_chunks,
            progress_bar,
            save,
        )
    else:
        chains, parameters = placement.place((progress.chains, progress.parameters))
    pieces = progress.pieces
    bar = tqdm(total=num_samples, disable=not progress_bar, desc="sampling")
    bar.update(sum(chunk_sizes[: len(pieces)]))
    for size, chunk_key in list(zip(chunk_sizes, chunk_keys, strict=True))[len(pieces) :]:
        chain_keys = placement.place(jax.random.split(chunk_key, num_chains))
        chains, kept = programs.chunk(chains, chain_keys, parameters, size)
        pieces.append(placement.fetch(kept))
        bar.update(size)
        save(_Progress(progress.warmup_done, None, chains, parameters, pieces))
        _after_chunk(len(pieces))
    bar.close()
    return pieces, parameters


class _Progress(NamedTuple):
    """What a checkpoint holds: the warm-up state until warm-up ends, then the chains.

    ``warmup_done`` warm-up chunks are done; while warm-up runs ``warmup`` is its state (per
    chain) and ``chains`` is ``None``; afterwards ``chains`` is the chains' state (their
    traces for a given kernel, else the traces with blackjax's NUTS states),
    ``parameters`` the adapted parameters and ``pieces`` the kept draws of each sampling
    chunk so far.
    """

    warmup_done: int
    warmup: Any
    chains: Any
    parameters: Any
    pieces: list


def _warmup_plan(key, num_chains, num_warmup, num_chunks):
    """Per-chunk inputs of the warm-up: per-chain step keys, schedule rows, which steps run.

    Chunks are ``ceil(num_warmup / num_chunks)`` steps (the last padded with steps that do
    nothing) so that one compiled program runs them all; step ``i`` of a chain has key
    ``split(chain_key, num_warmup)[i]`` and schedule row ``i`` however the steps are chunked.
    Which steps run is ``None`` when no chunk is padded (the program then has no ``cond``).
    """
    length = -(-num_warmup // num_chunks) if num_warmup else 0
    count = -(-num_warmup // length) if num_warmup else 0
    steps = np.arange(count * length).reshape(count, length)
    active = steps < num_warmup
    steps = np.minimum(steps, max(num_warmup - 1, 0))
    keys = _step_keys(key, num_chains, num_warmup)
    stages = np.asarray(schedule(num_warmup))
    # Every input has a leading chain axis, as the mesh splits every argument along it.
    padded = not active.all()
    for chunk, on in zip(steps, active, strict=True):
        # A slice where the chunk's steps are consecutive (all but a padded last chunk): an
        # eager gather of the keys takes ~30 times as long.
        chunk_keys = keys[:, chunk[0] : chunk[-1] + 1] if on.all() else keys[:, chunk]
        yield (
            (
                chunk_keys,
                np.broadcast_to(stages[chunk], (num_chains, length, 2)),
                np.broadcast_to(on, (num_chains, length)) if padded else None,
            ),
            int(on.sum()),
        )


@functools.partial(jax.jit, static_argnums=(1, 2))
def _step_keys(key, num_chains, num_steps):
    """``[split(chain_key, num_steps) for chain_key in split(key, num_chains)]``."""
    return jax.vmap(lambda k: jax.random.split(k, num_steps))(jax.random.split(key, num_chains))


def _warm_up(
    programs, placement, progress, key, num_chains, num_warmup, num_chunks, progress_bar, save
):
    """Runs (or resumes) the warm-up chunk by chunk, saving after each; the adapted chains."""
    state, done = placement.place(progress.warmup), progress.warmup_done
    plan = list(_warmup_plan(key, num_chains, num_warmup, num_chunks))
    bar = tqdm(total=num_warmup, disable=not progress_bar, desc="warm-up")
    bar.update(sum(steps for _, steps in plan[:done]))
    for inputs, steps in plan[done:]:
        state = programs.warmup_chunk(state, *placement.place(inputs))
        # Waiting for the chunk to finish before the next is dispatched (the progress bar then
        # also counts steps done, not dispatched): a program dispatched while the previous one
        # still runs can slow it down. On 2 CPU cores it made a whole run of the 100-d
        # Gaussian of benchmarks/nuts.py 15% slower.
        jax.block_until_ready(state)
        done += 1
        bar.update(steps)
        save(_Progress(done, state, None, None, []))
        _after_warmup_chunk(done)
    bar.close()
    return programs.warmup_final(state)


def _observed_addresses(model, observations, key, args) -> tuple:
    """Where ``observations`` sit in the model's trace (a batched observation of a plate is
    below an index), found from the shapes alone and cached per model and shapes."""
    leaves, treedef = jax.tree.flatten((observations, args))
    # Python ints and bools stay concrete (they may be structural: a shape, a count); the
    # rest is replaced by its shape and dtype.
    signature = tuple(
        leaf
        if isinstance(leaf, int)
        else jax.ShapeDtypeStruct(jnp.shape(leaf), jnp.result_type(leaf))
        for leaf in leaves
    )
    try:
        return _located(model, treedef, signature, key.dtype)
    except TypeError:  # an unhashable argument: found afresh
        return _located.__wrapped__(model, treedef, signature, key.dtype)


def _observed_scores(model: GenerativeFunction, trace: Any, observed: tuple) -> Any:
    """The pointwise log-likelihood of ``trace``'s observations.

    A model holding a density estimate (``marginal``, ``normalize``) has no per-element
    densities there: each observed site's score is given instead. An observation with no
    score of its own is an error rather than a log-likelihood that leaves it out.
    """
    observations = select(*observed)
    try:
        scores = model.pointwise_scores(trace).filter(observations)
        why = "it is named by an index below the repeats of an enclosing plate"
    except NotImplementedError:
        scores = trace.site_scores.filter(observations)
        why = "it is scored inside a generative function whose density is an estimate"
        why += " (marginal or normalize)"
    scored = {_unindexed(path) for path in scores.leaf_paths()}
    for path in observed:
        if _unindexed(path) not in scored:
            raise AddressError(
                f"the observation at {{addr}} has no pointwise log-likelihood: {why}; pass "
                "log_likelihood=False",
                path,
            )
    return scores


def _unindexed(path: tuple) -> tuple:
    """``path`` without its index wildcards (a whole plate's repeats are one observation)."""
    return tuple(c for c in path if c is not Ellipsis)


@functools.lru_cache(maxsize=64)
def _located(model, treedef, signature, key_dtype) -> tuple:
    abstract = [i for i, leaf in enumerate(signature) if isinstance(leaf, jax.ShapeDtypeStruct)]

    def choices(key, *values):
        leaves = list(signature)
        for i, value in zip(abstract, values, strict=True):
            leaves[i] = value
        observations, args = jax.tree.unflatten(treedef, leaves)
        return model.generate(key, observations, args)[0].choices

    key = jax.ShapeDtypeStruct((), key_dtype)
    structure = jax.eval_shape(choices, key, *(signature[i] for i in abstract))
    observations, _ = jax.tree.unflatten(treedef, list(signature))
    return constrained_addresses(observations, structure)


def _check_kernel_leaves_observations(kernel: Kernel | None, observed: tuple) -> None:
    """Raises if ``kernel`` would move an observed choice (it would resample the data)."""
    if kernel is None or kernel.moves is None:
        return
    for path in observed:
        if path in kernel.moves:
            raise AddressError(
                "the kernel moves {addr}, which is observed: its steps would resample the "
                "data; leave the observed addresses out of its selection (e.g. "
                "select(...) & ~select(observed address))",
                path,
            )


class _Programs(NamedTuple):
    latent: Any
    warmup_init: Callable
    warmup_chunk: Callable
    warmup_final: Callable
    chunk: Callable
    whole: Callable  # warm-up and sampling in one program, for a run of one chunk


@functools.lru_cache(maxsize=32)
def _programs(
    model: GenerativeFunction,
    kernel: Kernel | None,
    observed: tuple,
    thinning: int,
    placement: ChainPlacement = ONE_DEVICE,
    sample_stats: tuple[str, ...] | None = None,
    log_likelihood: bool = True,
    dense_mass: bool = False,
) -> _Programs:
    """The jitted warm-up and sampling programs, built once per model/kernel/settings.

    Cached so that repeated runs (different data, keys or sizes) reuse the compiled code.
    With a mesh, each device runs its block of chains (``ChainPlacement.map``).
    """
    latent = ~select(*observed)
    adaptation = stepwise_window_adaptation(model, latent, is_mass_matrix_diagonal=not dense_mass)

    # After the warm-up a chain's state is its trace for a given kernel, else the
    # adaptation's state (the trace and blackjax's NUTS state), carried from step to step.
    def step(key, state, parameters):
        if kernel is not None:
            return kernel.step(key, state)
        return adaptation.sample(key, state, parameters)

    def kept_of(trace):
        scores = _observed_scores(model, trace, observed) if log_likelihood else None
        return trace.choices.filter(latent), scores

    # What a draw keeps: the choices and observed site scores of a given kernel's trace; of
    # NUTS only the position, mapped to choices and scores after the chunk's loop, all draws
    # at once (one batched model evaluation rather than one per step of the loop; with no
    # scores kept, no model evaluation: the position mapped to the constrained space).
    def snapshot(state):
        return kept_of(state) if kernel is not None else state.chain.position

    def kept(snapshots, state):
        if kernel is not None:
            return snapshots
        if not log_likelihood:
            space = Unconstrained(model, state.trace, latent)
            return jax.vmap(space.constrain)(snapshots), None
        return jax.vmap(lambda position: kept_of(adaptation.to_trace(state, position)))(snapshots)

    # The warm-up state is the trace for a given kernel (run unadapted), else window
    # adaptation's state. A warm-up step with ``active`` false leaves the state as it is.
    def warmup_init(trace):
        return _strongly_typed(trace if kernel is not None else adaptation.init(trace))

    def warmup_step(state, key, stage, active):
        """One chain's warm-up step; ``stage`` and ``active`` are the same for every chain."""

        def advance(state):
            if kernel is not None:
                return kernel.step(key, state)[0]
            return adaptation.step(key, stage, state)

        if active is None:  # no chunk of this run is padded
            return advance(state)
        return jax.lax.cond(active, advance, lambda state: state, state)

    # The chains share the schedule (and which steps are padding), so it enters the loop
    # unbatched: ``vmap`` over a batched schedule would turn window adaptation's branches on
    # the stage, and the padding's ``cond``, into selects that run every branch at every step
    # (together ~10% of a warm-up step). Every input still has a leading chain axis, for the
    # mesh; the schedule's copies are the same, so the first is taken.
    def warmup_chunk(state, keys, stages, active):
        def body(state, inputs):
            keys_now, stage, on = inputs
            return jax.vmap(warmup_step, in_axes=(0, 0, None, None))(
                state, keys_now, stage, on
            ), None

        shared = (stages[0], None if active is None else active[0])
        return jax.lax.scan(body, state, (jnp.swapaxes(keys, 0, 1), *shared))[0]

    def warmup_final(state):
        return _strongly_typed((state, None) if kernel is not None else adaptation.final(state))

    # The sample stats of a draw leave the sampling loop as one vector (one write per draw
    # rather than one per stat: ~7% of the time of a NUTS draw on eight schools); ``layout``
    # holds their names, shapes and dtypes, known once ``draw`` is traced.
    layout: dict[str, dict] = {}

    def draw(state, key, parameters):
        if thinning == 1:
            state, info = step(key, state, parameters)
        else:
            state, infos = jax.lax.scan(
                lambda s, k: step(k, s, parameters), state, jax.random.split(key, thinning)
            )
            info = jax.tree.map(lambda x: x[-1], infos)
        # Only the sample stats of the info are kept: NUTS's info also holds the momentum and
        # both ends of the trajectory, several times the size of the draw itself.
        stats = kept_stats(info_stats(info), sample_stats, adapted=kernel is None)
        layout["stats"] = {name: (jnp.shape(v), jnp.result_type(v)) for name, v in stats.items()}
        return state, (snapshot(state), pack_stats(stats))

    def chunk(state, key, parameters, length):
        state, (snapshots, stats) = jax.lax.scan(
            lambda s, k: draw(s, k, parameters), state, jax.random.split(key, length)
        )
        return state, (*kept(snapshots, state), unpack_stats(stats, layout["stats"]))

    def chunks(chains, keys, parameters, length):
        per_chain = jax.vmap(lambda s, k, p: chunk(s, k, p, length))
        return placement.map(per_chain)(chains, keys, parameters)

    run_warmup_init = placement.map(jax.vmap(warmup_init))
    run_warmup_chunk = placement.map(warmup_chunk)
    run_warmup_final = placement.map(jax.vmap(warmup_final))

    def whole(traces, warmup_key, sample_key, num_warmup, num_samples):
        """A run of one chunk from ``traces``, its keys and sizes as in a chunked run:
        ``(parameters, kept draws)``."""
        num_chains = jax.tree.leaves(traces)[0].shape[0]
        state = run_warmup_init(traces)
        if num_warmup:
            keys = _step_keys(warmup_key, num_chains, num_warmup)
            stages = jnp.broadcast_to(schedule(num_warmup), (num_chains, num_warmup, 2))
            state = run_warmup_chunk(state, keys, stages, None)
        chains, parameters = run_warmup_final(state)
        chain_keys = jax.random.split(jax.random.split(sample_key, 1)[0], num_chains)
        return parameters, chunks(chains, chain_keys, parameters, num_samples)[1]

    return _Programs(
        latent,
        jax.jit(run_warmup_init),
        jax.jit(run_warmup_chunk),
        jax.jit(run_warmup_final),
        jax.jit(chunks, static_argnums=3),
        jax.jit(whole, static_argnums=(3, 4)),
    )


def _strongly_typed(tree: Any) -> Any:
    """``tree`` without weakly typed leaves (e.g. from Python floats).

    A checkpoint stores NumPy arrays, which are never weakly typed, so a resumed run would
    otherwise call the chunk programs with other types than an uninterrupted one and compile
    them again.
    """

    def strong(leaf: Any) -> Any:
        leaf = jnp.asarray(leaf)
        return (
            jax.lax.convert_element_type(leaf, leaf.dtype) if jax.typeof(leaf).weak_type else leaf
        )

    return jax.tree.map(strong, tree)


def _after_chunk(done: int) -> None:
    """Called after each saved sampling chunk (a seam for interruption tests)."""


def _after_warmup_chunk(done: int) -> None:
    """Called after each saved warm-up chunk (a seam for interruption tests)."""


def _to_arviz(pieces, parameters, observations, num_chains, num_samples):
    choices, log_likelihood, stats = jax.tree.map(
        lambda *xs: np.concatenate([np.asarray(x) for x in xs], axis=1), *pieces
    )
    stats = {k: np.asarray(v) for k, v in stats.items()}
    if parameters is not None:
        stats["step_size"] = np.broadcast_to(
            np.asarray(parameters["step_size"])[:, None], (num_chains, num_samples)
        )
    groups = {"posterior": _by_name(choices), "sample_stats": stats}
    if log_likelihood is not None:
        groups["log_likelihood"] = _by_name(log_likelihood)
    data = from_dict(groups | {"observed_data": _by_name(observations)})
    data.posterior.attrs["ppl_addresses"] = _addresses_json(choices)
    data.observed_data.attrs["ppl_addresses"] = _addresses_json(observations)
    return data


def _addresses_json(cm: ChoiceMap) -> str:
    """Each variable's address, by name (JSON; an index axis is ``"..."``)."""
    return json.dumps(
        {_variable_name(p): list(p) for p in cm.leaf_paths()},
        default=lambda c: "..." if c is Ellipsis else str(c),
    )


def _by_name(cm: ChoiceMap) -> dict[str, np.ndarray]:
    return {
        _variable_name(path): np.asarray(value)
        for path, value in zip(cm.leaf_paths(), jax.tree.leaves(cm), strict=True)
    }


def summary(data: Any, **kwargs: Any) -> Any:
    """``arviz.summary`` of the posterior: means, sds, r-hat, bulk and tail ESS."""
    return arviz.summary(data, **kwargs)

"""Exact checks that ``regenerate`` weights make a correct Metropolis–Hastings kernel.

On small discrete models every latent configuration can be enumerated, so the posterior ``π``
and the transition matrix ``P`` of "regenerate(selection), accept with probability
min(1, exp(w))" are exact: the proposal probabilities are products of prior conditionals, and
the weight ``w`` of each (state, proposed state) pair is read from ``regenerate`` itself. The
kernel is correct iff ``π P = π``. Mutants with a wrong acceptance (ignoring ``w``; the joint
ratio without the proposal correction) must fail the same criterion. A Monte-Carlo run of
many chains (``jax.vmap`` + ``lax.scan``) is compared with ``π`` by a chi-square test at a
false-rejection level of 1e-4, and the same test must reject a mutant chain.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from ppl import categorical, flip, gen, select

KEY = jax.random.key(7)
TOLERANCE = 1e-5

# -- a static model: a -> b -> c, and y observed given (a, c) -----------------------------------
P_A = 0.35
B_LOGITS = np.array([[0.2, -0.4, 0.1], [-1.0, 0.3, 0.8]], np.float32)  # [a, b]
P_C = np.array([[0.25, 0.6, 0.8], [0.7, 0.3, 0.15]], np.float32)  # P(c = 1 | a, b)
Y_PROBS = np.array(
    [[[0.6, 0.3, 0.1], [0.2, 0.5, 0.3]], [[0.1, 0.3, 0.6], [0.45, 0.1, 0.45]]], np.float32
)  # [a, c, y]
Y_OBS = 2


@gen
def model():
    a = flip(P_A) @ "a"
    b = categorical(logits=jnp.asarray(B_LOGITS)[a]) @ "b"
    c = flip(jnp.asarray(P_C)[a, b]) @ "c"
    return categorical(probs=jnp.asarray(Y_PROBS)[a, c]) @ "y"


STATES = list(itertools.product(range(2), range(3), range(2)))  # (a, b, c)
NAMES = ("a", "b", "c")


def prior_conditionals(state) -> list[float]:
    """p(a), p(b | a), p(c | a, b) of one state, in NumPy (float64)."""
    a, b, c = state
    b_probs = np.exp(B_LOGITS[a].astype(np.float64))
    b_probs /= b_probs.sum()
    p_c = float(P_C[a, b])
    return [P_A if a else 1 - P_A, float(b_probs[b]), p_c if c else 1 - p_c]


def exact_posterior() -> np.ndarray:
    joint = np.array([np.prod(prior_conditionals(s)) * Y_PROBS[s[0], s[2], Y_OBS] for s in STATES])
    return joint / joint.sum()


def proposal_probability(state, new, chosen: set[str]) -> float:
    """q(new | state): the selected choices drawn in order from their prior conditionals."""
    if any(new[i] != state[i] for i, name in enumerate(NAMES) if name not in chosen):
        return 0.0
    conditionals = prior_conditionals(new)
    return float(np.prod([conditionals[i] for i, name in enumerate(NAMES) if name in chosen]))


def trace_of(state):
    a, b, c = state
    constraints = {"a": a, "b": b, "c": c, "y": Y_OBS}
    constraints = {k: jnp.asarray(v, jnp.int32) for k, v in constraints.items()}
    trace, _ = model.generate(KEY, constraints, ())
    return trace


def state_of(choices) -> tuple:
    return tuple(int(choices[name]) for name in NAMES)


def regenerate_outcomes(chosen: set[str], n_keys: int = 2048):
    """For every state, ``n_keys`` regenerate calls: (proposed states, w, joint-ratio w)."""
    selection = select(*sorted(chosen))
    traces = jax.tree.map(lambda *xs: jnp.stack(xs), *[trace_of(s) for s in STATES])

    def from_state(trace, key):
        def one(k):
            new, w = model.regenerate(k, trace, selection)
            return jnp.stack([new.choices[n] for n in NAMES]), w, new.score - trace.score

        return jax.vmap(one)(jax.random.split(key, n_keys))

    keys = jax.random.split(jax.random.fold_in(KEY, len(chosen)), len(STATES))
    return jax.jit(jax.vmap(from_state))(traces, keys)


def transition_matrices(chosen: set[str]) -> dict[str, np.ndarray]:
    """The exact MH matrix for the correct acceptance and for the mutants."""
    proposed, weights, joint_ratio = map(np.asarray, regenerate_outcomes(chosen))
    index = {s: i for i, s in enumerate(STATES)}
    n = len(STATES)
    log_w = {"correct": np.full((n, n), np.nan), "joint_ratio": np.full((n, n), np.nan)}
    counts = np.zeros((n, n))
    for i in range(n):
        for row, w, r in zip(proposed[i], weights[i], joint_ratio[i], strict=True):
            j = index[tuple(int(v) for v in row)]
            counts[i, j] += 1
            for name, value in (("correct", w), ("joint_ratio", r)):
                if np.isnan(log_w[name][i, j]):
                    log_w[name][i, j] = value
                else:  # w is a function of (old, new) only
                    assert abs(log_w[name][i, j] - value) < 1e-4, (STATES[i], STATES[j], name)
    q = np.array([[proposal_probability(s, t, chosen) for t in STATES] for s in STATES])
    # regenerate proposes from q: every reachable state was reached, and no other, with
    # frequencies that a chi-square test (Bonferroni over states) accepts.
    assert np.array_equal(counts > 0, q > 0), "regenerate reached states that q excludes"
    for i in range(n):
        reachable = q[i] > 0
        expected = q[i, reachable] * counts[i].sum()
        statistic = np.sum((counts[i, reachable] - expected) ** 2 / expected)
        df = max(int(reachable.sum()) - 1, 1)
        assert statistic < stats.chi2.isf(1e-4 / n, df), (STATES[i], statistic)
    matrices = {}
    for name, acceptance in (
        ("correct", np.minimum(1.0, np.exp(np.nan_to_num(log_w["correct"])))),
        ("ignore_weight", np.ones((n, n))),
        ("joint_ratio", np.minimum(1.0, np.exp(np.nan_to_num(log_w["joint_ratio"])))),
    ):
        matrix = q * acceptance
        np.fill_diagonal(matrix, 0.0)
        np.fill_diagonal(matrix, 1.0 - matrix.sum(axis=1))
        matrices[name] = matrix
    return matrices


def stationarity_error(pi: np.ndarray, matrix: np.ndarray) -> float:
    assert np.allclose(matrix.sum(axis=1), 1.0) and np.all(matrix >= -1e-12)
    return float(np.max(np.abs(pi @ matrix - pi)))


SELECTIONS = [{"a"}, {"b"}, {"c"}, {"a", "b"}, {"b", "c"}, {"a", "c"}, {"a", "b", "c"}]


def test_assess_matches_the_enumerated_joint():
    joint = np.array([np.prod(prior_conditionals(s)) * Y_PROBS[s[0], s[2], Y_OBS] for s in STATES])
    for state, expected in zip(STATES, joint, strict=True):
        np.testing.assert_allclose(float(trace_of(state).score), np.log(expected), rtol=1e-5)


@pytest.mark.parametrize("chosen", SELECTIONS, ids=lambda c: "+".join(sorted(c)))
def test_regenerate_mh_leaves_the_exact_posterior_stationary(chosen):
    pi = exact_posterior()
    matrices = transition_matrices(chosen)
    assert stationarity_error(pi, matrices["correct"]) < TOLERANCE
    # The mutants: the same criterion must fail.
    assert stationarity_error(pi, matrices["ignore_weight"]) > 100 * TOLERANCE
    if chosen == {"a", "b", "c"} or chosen == {"b"}:
        # The joint ratio omits q(old)/q(new); it is wrong whenever that ratio is not 1.
        assert stationarity_error(pi, matrices["joint_ratio"]) > 100 * TOLERANCE


# -- a model whose addresses depend on a choice (eager: Python control flow) -------------------
Q_THREE = np.array([0.2, 0.5, 0.3], np.float32)
P_TWO = 0.7
P_Y = np.array([[0.15, 0.8, 0.0], [0.6, 0.1, 0.45]], np.float32)  # P(y = 1 | a, b)


@gen
def branching():
    a = flip(0.4) @ "a"
    if bool(a):
        b = categorical(probs=jnp.asarray(Q_THREE)) @ ("b", "three")
    else:
        b = flip(P_TWO) @ ("b", "two")
    return flip(jnp.asarray(P_Y)[a, b]) @ "y"


BRANCH_STATES = [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)]


def _branch_prior(state) -> tuple[float, float]:
    a, b = state
    if a:
        return 0.4, float(Q_THREE[b])
    return 0.6, P_TWO if b else 1 - P_TWO


def _branch_trace(state):
    a, b = state
    address = ("b", "three") if a else ("b", "two")
    constraints = {"a": jnp.asarray(a, jnp.int32), address: jnp.asarray(b, jnp.int32)}
    constraints["y"] = jnp.asarray(1, jnp.int32)
    return branching.generate(KEY, constraints, ())[0]


def _branch_state(trace) -> tuple:
    a = int(trace.choices["a"])
    return a, int(trace.choices["b", "three" if a else "two"])


def test_regenerate_mh_is_exact_when_the_move_changes_the_addresses():
    """Resampling ``a`` moves ``b`` to another address, drawn fresh from its prior.

    Both the new ``b`` and the dropped old one are proposed from the prior (forward and
    reverse), so they cancel: w = log p(y | new) - log p(y | old).
    """
    joint = np.array([np.prod(_branch_prior(s)) * P_Y[s[0], s[1]] for s in BRANCH_STATES])
    pi = joint / joint.sum()
    n = len(BRANCH_STATES)
    q = np.zeros((n, n))
    for i, s in enumerate(BRANCH_STATES):
        for j, t in enumerate(BRANCH_STATES):
            if t[0] == s[0]:
                q[i, j] = _branch_prior(t)[0] * (s == t)
            else:
                q[i, j] = np.prod(_branch_prior(t))
    log_w = np.full((n, n), np.nan)
    for i, state in enumerate(BRANCH_STATES):
        trace = _branch_trace(state)
        missing = set(np.flatnonzero(q[i] > 0))
        for attempt in range(400):
            new, w = branching.regenerate(jax.random.fold_in(KEY, attempt), trace, select("a"))
            j = BRANCH_STATES.index(_branch_state(new))
            log_w[i, j] = float(w)
            missing.discard(j)
            if not missing:
                break
        assert not missing, (state, missing)
    matrix = q * np.minimum(1.0, np.exp(np.nan_to_num(log_w)))
    np.fill_diagonal(matrix, 0.0)
    np.fill_diagonal(matrix, 1.0 - matrix.sum(axis=1))
    expected_w = np.log(P_Y[[s[0] for s in BRANCH_STATES], [s[1] for s in BRANCH_STATES]])
    reached = ~np.isnan(log_w)
    np.testing.assert_allclose(
        log_w[reached], (expected_w[None, :] - expected_w[:, None])[reached], atol=1e-5
    )
    assert stationarity_error(pi, matrix) < TOLERANCE


# -- Monte Carlo: many chains, chi-square against the exact posterior ---------------------------
CHAINS = 6000
SWEEPS = 25
CYCLE = [select("a"), select("b"), select("c"), select("a", "b", "c")]


def run_chains(mutant: bool) -> np.ndarray:
    start = trace_of((0, 0, 0))

    def step(key, trace, selection):
        propose_key, accept_key = jax.random.split(key)
        new, w = model.regenerate(propose_key, trace, selection)
        if mutant:
            w = jnp.zeros_like(w)
        accept = jnp.log(jax.random.uniform(accept_key)) < w
        return jax.tree.map(lambda x, y: jnp.where(accept, x, y), new, trace)

    def chain(key):
        def sweep(trace, key):
            for k, selection in zip(jax.random.split(key, len(CYCLE)), CYCLE, strict=True):
                trace = step(k, trace, selection)
            return trace, None

        final, _ = jax.lax.scan(sweep, start, jax.random.split(key, SWEEPS))
        return jnp.stack([final.choices[n] for n in NAMES])

    keys = jax.random.split(jax.random.fold_in(KEY, 99), CHAINS)
    finals = np.asarray(jax.jit(jax.vmap(chain))(keys))
    index = {s: i for i, s in enumerate(STATES)}
    return np.bincount([index[tuple(int(v) for v in row)] for row in finals], minlength=12)


def chi_square(counts: np.ndarray, pi: np.ndarray) -> tuple[float, float]:
    expected = pi * counts.sum()
    assert expected.min() >= 5, "too few chains for the chi-square approximation"
    statistic = float(np.sum((counts - expected) ** 2 / expected))
    return statistic, float(stats.chi2.isf(1e-4, len(pi) - 1))


def test_many_mh_chains_reach_the_exact_posterior():
    pi = exact_posterior()
    # The chains start at one state; after SWEEPS sweeps the exact law of the final state is
    # within 1e-4 of pi (computed with the exact matrices), so the test is about stationarity.
    sweep = np.eye(len(STATES))
    for chosen in ({"a"}, {"b"}, {"c"}, {"a", "b", "c"}):
        sweep = sweep @ transition_matrices(chosen)["correct"]
    law = np.linalg.matrix_power(sweep, SWEEPS)[STATES.index((0, 0, 0))]
    assert np.max(np.abs(law - pi)) < 1e-4
    statistic, threshold = chi_square(run_chains(mutant=False), pi)
    assert statistic < threshold, (statistic, threshold)
    statistic, threshold = chi_square(run_chains(mutant=True), pi)
    assert statistic > threshold, "the chi-square test cannot tell a wrong kernel apart"

"""``enum``'s probabilities of a support: read from a Bernoulli's or categorical's parameters,
they are those of NumPyro's ``log_prob``, in the order of ``enum.values``, and exact where the
parameters are at the edge of their range."""

from __future__ import annotations

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ppl import bernoulli, categorical, flip
from ppl.adev import enum, expectation
from ppl.adev._primitive import Site

finite = st.floats(-6.0, 6.0, allow_nan=False)
unit = st.floats(0.01, 0.99, allow_nan=False)


def site(distribution, *args) -> Site:
    """A single unplated draw of ``distribution(*args)`` at address ``"c"``."""
    return Site(distribution, args, jnp.zeros(2, jnp.uint32), ("c",), 0)


def from_log_prob(s: Site, values: jax.Array) -> np.ndarray:
    return np.exp(np.asarray(jax.vmap(s.log_prob)(values)))


@settings(max_examples=20, deadline=None)
@given(
    p=unit,
    logit=finite,
    probs=st.lists(unit, min_size=2, max_size=5),
    logits=st.lists(finite, min_size=2, max_size=5),
)
def test_probabilities_are_those_of_log_prob(p, logit, probs, logits):
    probs = np.asarray(probs, np.float32) / np.sum(probs)
    cases = [
        site(flip, jnp.float32(p)),
        site(bernoulli, None, jnp.float32(logit)),
        site(categorical, jnp.asarray(probs)),
        site(categorical, None, jnp.asarray(logits, jnp.float32)),
    ]
    for s in cases:
        values = enum().values(s)
        np.testing.assert_allclose(
            enum().probabilities(s, values), from_log_prob(s, values), rtol=1e-5, atol=1e-6
        )


def test_a_batched_draw_takes_the_joint_probabilities():
    probs = jnp.array([0.2, 0.7])
    s = site(flip, probs)
    values = enum().values(s)  # [4, 2]
    expected = [0.8 * 0.3, 0.2 * 0.3, 0.8 * 0.7, 0.2 * 0.7]
    order = [tuple(v) for v in np.asarray(values)]
    table = dict(zip([(0, 0), (1, 0), (0, 1), (1, 1)], expected, strict=True))
    np.testing.assert_allclose(
        enum().probabilities(s, values), [table[v] for v in order], rtol=1e-5
    )


def test_gradient_is_exact_at_the_edge_of_the_range():
    @expectation
    def heads(key, p):
        return 3.0 * flip.enum().simulate(key, (p,)).retval

    key = jax.random.key(0)
    for p in (0.0, 1.0):
        value, grad = heads.value_and_grad(key, jnp.float32(p), argnums=0)
        assert float(value) == 3.0 * p
        assert float(grad) == 3.0


def test_enum_works_when_arviz_is_imported_before_numpyro():
    # arviz puts a lazy ``numpyro`` module in ``sys.modules`` (lazy_loader); importing
    # ``numpyro.distributions`` then runs numpyro's ``__init__``, which imports it too, and
    # the outer import leaves a second module object without its submodules as attributes
    # (``nd.discrete``): only the names it exports may be used.
    program = (
        "import json\n"
        "import arviz\n"
        "from inference import mcmc\n"  # imports numpyro.distributions after arviz
        "import jax\n"
        "from ppl import flip\n"
        "from ppl.adev import enum\n"
        "from ppl.adev._primitive import Site\n"
        "s = Site(flip, (0.3,), jax.numpy.zeros(2, jax.numpy.uint32), ('c',), 0)\n"
        "print(json.dumps(enum().probabilities(s, enum().branches(s)[0]).tolist()))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    np.testing.assert_allclose(json.loads(result.stdout), [0.7, 0.3], rtol=1e-6)

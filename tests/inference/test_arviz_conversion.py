"""``mcmc.run``'s conversion of draws to a DataTree gives ``arviz.from_dict``'s tree."""

import arviz
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from inference.mcmc._arviz import from_dict

names = st.sampled_from(["mu", "tau", "eta", "y", "x.0", "beta"])


@st.composite
def groups(draw):
    chains = draw(st.integers(1, 3))
    draws = draw(st.integers(chains, 4))  # (arviz warns of more chains than draws)

    def variables(sample_shape):
        chosen = draw(st.lists(names, min_size=1, max_size=3, unique=True))
        return {
            name: draw(
                hnp.arrays(
                    draw(st.sampled_from([np.float32, np.int32, np.bool_])),
                    sample_shape + draw(hnp.array_shapes(min_dims=0, max_dims=2, max_side=3)),
                )
            )
            for name in chosen
        }

    out = {"posterior": variables((chains, draws))}
    for group in ("sample_stats", "log_likelihood"):
        if draw(st.booleans()):
            out[group] = variables((chains, draws))
    if draw(st.booleans()):
        out["observed_data"] = variables(())
    return out


def without_creation_time(tree):
    for node in tree.subtree:
        node.attrs.pop("created_at", None)
    return tree


@settings(max_examples=40, deadline=None)
@given(groups())
def test_the_tree_is_arviz_from_dict_s(data):
    ours = without_creation_time(from_dict(data))
    expected = without_creation_time(arviz.from_dict(data))
    assert ours.identical(expected), (ours, expected)

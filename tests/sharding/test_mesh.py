"""Meshes, placement and argument errors, in the test process (one CPU device).

(That a one-device mesh gives the unsharded filter is the doctest of
``inference.sharding.bootstrap_filter``.)
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType

from inference import sharding
from ppl import gen, normal


@gen
def step(z, _):
    z = normal(0.9 * z, 1.0) @ "z"
    return z, normal(z, 0.5) @ "y"


def test_make_mesh_uses_every_device_on_auto_axes():
    mesh = sharding.make_mesh(axis_names=("particles",))
    assert mesh.shape == {"particles": jax.device_count()}
    assert mesh.axis_types == (AxisType.Auto,)
    assert sharding.make_mesh((1, 1), ("chains", "data")).shape == {"chains": 1, "data": 1}


def test_make_mesh_errors_say_what_to_do():
    with pytest.raises(ValueError, match="give axis_sizes for a mesh with the 2 axes"):
        sharding.make_mesh(axis_names=("chains", "data"))
    with pytest.raises(ValueError, match="differ in length"):
        sharding.make_mesh((1,), ("chains", "data"))
    with pytest.raises(ValueError, match="xla_force_host_platform_device_count"):
        sharding.make_mesh((jax.device_count() + 1,), ("chains",))


def test_placement_and_gather():
    mesh = sharding.make_mesh(axis_names=("chains",))
    x = jnp.arange(6.0).reshape(3, 2)
    placed = sharding.shard({"x": x}, mesh, "chains")
    assert placed["x"].sharding.spec == jax.sharding.PartitionSpec("chains")
    assert sharding.replicate(x, mesh).sharding.is_fully_replicated
    np.testing.assert_array_equal(sharding.gather(placed)["x"], x)
    with pytest.raises(ValueError, match=r"the mesh has axes \('chains',\), not 'particles'"):
        sharding.shard(x, mesh, "particles")


def test_wrong_mesh_axis_and_resampling_are_named():
    chains = sharding.make_mesh(axis_names=("chains",))
    with pytest.raises(ValueError, match="not 'particles'"):
        sharding.bootstrap_filter(
            jax.random.key(0), step, 0.0, {"y": jnp.ones(3)}, num_particles=8, mesh=chains
        )
    particles = sharding.make_mesh(axis_names=("particles",))
    with pytest.raises(TypeError, match=r"Islands\(scheme\)"):
        sharding.bootstrap_filter(
            jax.random.key(0),
            step,
            0.0,
            {"y": jnp.ones(3)},
            num_particles=8,
            mesh=particles,
            resampling="systematic",  # type: ignore[arg-type]
        )
    with pytest.raises(ValueError, match="not 'data'"):
        sharding.DataParallel(chains)
